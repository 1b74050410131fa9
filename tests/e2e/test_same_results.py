#!/usr/bin/python3
"""Bit-identical results across changes of the code's shape: a fixed set of runs (train on 1, 2
and 3 ranks with and without --deterministic, in windows, with each recipe option, resumed;
encode, evaluate, pca, inspect) whose numbers are hashed and compared with the hashes recorded
in tests/e2e/same_results.json for this build.

    python3 tests/e2e/test_same_results.py path/to/aetrain            # compare (exit 77: no record)
    python3 tests/e2e/test_same_results.py path/to/aetrain --record   # record this build's hashes

Results depend on the kernels the build runs (the CPU's vector instructions, the GEMM backend),
the compiler and the MPI library: the record is keyed by `aetrain --version` (less the version
number, which a change may raise), and a build without a record is skipped, saying so.
What is hashed: every array of every checkpoint and output file (weights, moments,
statistics, codes, errors, reconstructions, PCA arrays), their numeric attributes, the stored
configuration less paths, and the step and epoch losses of the metrics.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402

RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "same_results.json")
SKIPPED = 77


def build_key(aetrain):
    """The lines of `aetrain --version` that decide the bits: compiler, MPI, HDF5, GEMM, CPU."""
    out = subprocess.run([aetrain, "--version"], capture_output=True, text=True,
                         env=cli_support.ENV, check=True).stdout
    return "\n".join(line for line in out.splitlines()[1:])


def file_hash(path, work):
    """sha256 over a file's arrays, numeric attributes and (path-free) string attributes."""
    h = hashlib.sha256()

    def add(name, obj):
        h.update(name.encode())
        for key in sorted(obj.attrs):
            value = obj.attrs[key]
            if isinstance(value, (bytes, str)):
                text = value.decode() if isinstance(value, bytes) else value
                if key in ("created_by", "model", "data_file"):
                    continue  # the version, and paths
                text = text.replace(work, "WORK")
                h.update(f"{key}={text}".encode())
            else:
                h.update(key.encode() + np.asarray(value).tobytes())
        if isinstance(obj, h5py.Dataset):
            value = obj[()]
            if value.dtype.names:  # a sources table: its paths relative to the work directory
                for row in value:
                    h.update(row["file"].decode().replace(work, "WORK").encode() +
                             row["dataset"] + np.int64(row["first_row"]).tobytes() +
                             np.int64(row["rows"]).tobytes())
            else:
                h.update(np.ascontiguousarray(value).tobytes())

    with h5py.File(path, "r") as f:
        add("/", f)
        f.visititems(add)
    return h.hexdigest()


def losses_hash(path):
    h = hashlib.sha256()
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            if event["event"] in ("step", "epoch"):
                h.update(json.dumps({k: event.get(k) for k in ("event", "epoch", "step", "loss",
                                                             "val_loss", "lr", "grad_norm")},
                                    sort_keys=True).encode())
    return h.hexdigest()


def run(args, ranks, work):
    rc, out, err = cli_support.run(args, ranks=ranks, timeout=300)
    if rc != 0:
        sys.exit(f"{' '.join(args)} on {ranks} rank(s) exited {rc}: {err}")
    return out


def results(work):
    """Runs every case in `work`; returns {case: hash}."""
    rng = np.random.default_rng(7)
    data = os.path.join(work, "data.h5")
    x = rng.random((700, 24), dtype=np.float32)
    with h5py.File(data, "w") as f:
        f["/train"] = x[:600]
        f["/test"] = x[600:]
        f["/counts"] = (x[:600] * 100).astype(np.int16)
    out = {}
    common = ["--data", data, "--batch-size", "32", "--seed", "3", "--quiet"]
    recipes = {
        "default": [],
        "windows": ["--window-rows", "192", "--data-block-rows", "50"],
        "cosine": ["--lr-schedule", "cosine", "--warmup-steps", "5", "--lr", "0.005"],
        "step": ["--lr-schedule", "step", "--lr-step-epochs", "1", "--lr-gamma", "0.5"],
        "decay_clip": ["--weight-decay", "0.01", "--clip-norm", "0.5"],
        "gaussian": ["--noise", "gaussian:0.1"],
        "mask": ["--noise", "mask:0.2", "--shuffle", "off"],
        "early_stop": ["--val-dataset", "/test", "--early-stop", "1", "--min-delta", "0.5"],
        "alpha": ["--alpha", "0.3", "--activation", "tanh"],  # a code as wide as the input
        "standard": ["--normalize", "standard", "--dataset", "/counts"],
        "minmax": ["--normalize", "minmax", "--dataset", "/counts", "--output-activation",
                   "sigmoid"],
    }
    for name, extra in recipes.items():
        for ranks in (1, 2, 3):
            for det in ([], ["--deterministic"]):
                if name not in ("default", "windows") and (ranks == 3 or det and ranks == 2):
                    continue  # every recipe on 1 and 2 ranks; 3 and --deterministic on two
                case = f"train {name} {ranks} ranks{' deterministic' if det else ''}"
                ck = os.path.join(work, re.sub(r"\W+", "_", case) + ".h5")
                m = ck + ".jsonl"
                layers = ["--layers", "24" if name == "alpha" else "12,4"]
                run(["train"] + common + layers + extra + det +
                    ["--epochs", "2", "--log-every", "1", "--checkpoint", ck, "--metrics", m],
                    ranks, work)
                out[case] = file_hash(ck, work)
                out[case + " losses"] = losses_hash(m)
                if os.path.exists(ck + ".best"):
                    out[case + " best"] = file_hash(ck + ".best", work)
    # Resumed mid-run: one epoch, then on to three, on other ranks.
    for ranks, later in ((2, 2), (1, 3)):
        for det in ([], ["--deterministic"]):
            case = f"resume {ranks} then {later} ranks{' deterministic' if det else ''}"
            ck = os.path.join(work, re.sub(r"\W+", "_", case) + ".h5")
            args = ["train"] + common + ["--layers", "12,4"] + det + ["--checkpoint", ck]
            run(args + ["--epochs", "1"], ranks, work)
            run(args + ["--epochs", "3", "--resume"], later, work)
            out[case] = file_hash(ck, work)
    model = os.path.join(work, "train_default_2_ranks.h5")
    std = os.path.join(work, "train_standard_2_ranks.h5")
    pca = os.path.join(work, "pca.h5")
    run(["pca", "--data", data, "--dataset", "/counts", "--components", "5", "--normalize",
         "standard", "--out", pca], 2, work)
    out["pca"] = file_hash(pca, work)
    for name, m, dataset in (("model", model, "/test"), ("standard", std, "/counts"),
                             ("pca", pca, "/counts")):
        for ranks in (1, 3):
            codes = os.path.join(work, f"codes_{name}_{ranks}.h5")
            run(["encode", "--model", m, "--data", data, "--dataset", dataset, "--out", codes,
                 "--block-rows", "70"], ranks, work)
            out[f"encode {name} {ranks} ranks"] = file_hash(codes, work)
            per, rec = (os.path.join(work, f"{k}_{name}_{ranks}.h5") for k in ("per", "rec"))
            result = run(["evaluate", "--model", m, "--data", data, "--dataset", dataset,
                          "--per-sample", per, "--reconstruct", rec, "--block-rows", "70"],
                         ranks, work)
            out[f"evaluate {name} {ranks} ranks"] = hashlib.sha256(result.encode()).hexdigest()
            out[f"evaluate {name} {ranks} ranks files"] = (file_hash(per, work) +
                                                           file_hash(rec, work))
    inspect = run(["inspect", std, "--json"], 0, work).replace(work, "WORK")
    inspect = re.sub(r'"created_by": "[^"]*"', "", inspect)
    out["inspect"] = hashlib.sha256(inspect.encode()).hexdigest()
    return out


def main():
    aetrain = os.path.abspath(sys.argv[1])
    record = "--record" in sys.argv[2:]
    cli_support.AETRAIN = aetrain
    key = build_key(aetrain)
    recorded = {}
    if os.path.exists(RECORD):
        with open(RECORD) as f:
            recorded = json.load(f)
    if not record and key not in recorded:
        print(f"skipped: no results are recorded for this build:\n{key}\n"
              f"(record them with: {sys.argv[0]} {sys.argv[1]} --record, on the code before a "
              f"change)")
        return SKIPPED
    with tempfile.TemporaryDirectory(prefix="aetrain-same-") as work:
        now = results(work)
    if record:
        recorded[key] = now
        with open(RECORD, "w") as f:
            json.dump(recorded, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"recorded {len(now)} results for this build")
        return 0
    differ = sorted(case for case in set(now) | set(recorded[key])
                    if now.get(case) != recorded[key].get(case))
    for case in differ:
        print(f"differs: {case}")
    print(f"{len(now) - len(differ)} of {len(now)} results as recorded")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
