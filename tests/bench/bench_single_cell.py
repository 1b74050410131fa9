#!/usr/bin/python3
"""Single-cell atlases: aetrain on sparse h5ad against the same counts densified and against a
PyTorch peer with a sparse first layer, and the quality of its codes against PCA.

    tests/bench/bench_single_cell.py --build build [--cells 20000] [--genes 5000]
        [--densities 0.03,0.10] [--repeats 2] [--torch] [--quality] [--work DIR]

It writes a synthetic atlas per density with tools/atlas_h5ad.py (negative-binomial counts of
known cell types, written by anndata as CSR; --dense copies the counts as a dense /X) and, for
each launch (1 rank x 2 threads, 2 ranks x 1 thread), interleaving the contenders `repeats`
times:
  h5ad     aetrain train on the CSR X (--size-factor 10000 --transform log1p --normalize standard,
           every gene: the first layer as wide as the genes);
  dense    the same counts stored dense, the same options;
  torch    (--torch) tests/bench/torch_sparse_ae.py, the same model, batch, transforms and
           standardization, torch.sparse.mm in the first layer, DDP over gloo.
It prints medians of the steady samples/s (the epochs after the first), their ratios, aetrain's
peak memory per rank and the bytes it read per epoch (rchar over the run / epochs).
--quality trains on 80% of the cells of a 3% atlas of 20 cell types (more than the code's 10
dimensions: a linear code cannot give each its own direction) with the highly variable genes
(--features var:highly_variable), a 10-wide code, and compares with `aetrain pca
--components 10` on the same transformed features: test MSE (normalized units, `aetrain
evaluate`) and 15-NN cell-type purity of the test cells' codes (numpy). The CPU and its vector
extensions come first: a figure holds for that CPU only.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys

import h5py
import numpy as np

from machine import aetrain_version, cpu, torch_blas

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
LAUNCHES = [(1, 2), (2, 1)]
TRANSFORMS = ["--size-factor", "10000", "--transform", "log1p", "--normalize", "standard"]
LAYERS = "256,64,10"
BATCH = 256


def env(threads, **extra):
    e = dict(os.environ, OMP_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
             OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_pml="ob1")
    e.update(extra)
    return e


def atlas(work, cells, genes, density, dense=True, types=8):
    base = os.path.join(work, f"atlas-{cells}x{genes}-{density:g}-{types}")
    if not os.path.exists(base + ".h5ad"):
        args = [PYTHON, os.path.join(ROOT, "tools", "atlas_h5ad.py"), base + ".h5ad", "--cells",
                str(cells), "--genes", str(genes), "--density", str(density), "--types",
                str(types)]
        if dense:
            args += ["--dense", base + "-dense.h5"]
        subprocess.run(args, check=True)
    return base


def aetrain(build, args, ranks, threads):
    cmd = ["mpirun", "-n", str(ranks), "--bind-to", "core" if threads == 1 else "none",
           os.path.join(build, "aetrain")] + args + ["--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(threads))
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stderr}")
    return p.stdout


def train(build, data, dataset, ranks, threads, work, epochs):
    metrics = os.path.join(work, "bench-metrics.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    aetrain(build, ["train", "--data", data, "--dataset", dataset, "--layers", LAYERS,
                    "--code-activation", "linear", "--batch-size", str(BATCH), "--epochs",
                    str(epochs), "--metrics", metrics, "--quiet", "--seed", "1"] + TRANSFORMS,
            ranks, threads)
    with open(metrics) as f:
        lines = [json.loads(line) for line in f]
    rates = [l["samples_per_s"] for l in lines if l["event"] == "epoch"][1:]
    end = lines[-1]
    return (statistics.median(rates), end["peak_memory_mib"]["max"],
            end["read_bytes"]["sum"] / epochs)


def torch_peer(data, ranks, threads, epochs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [PYTHON, os.path.join(ROOT, "tests", "bench", "torch_sparse_ae.py"), "--data", data,
           "--layers", LAYERS, "--batch-size", str(BATCH), "--epochs", str(epochs), "--threads",
           str(threads)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                              env=env(threads, RANK=str(r), WORLD_SIZE=str(ranks),
                                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
             for r in range(ranks)]
    out = [p.communicate()[0] for p in procs][0]
    rates = [json.loads(line)["samples_per_s"] for line in out.splitlines()][1:]
    return statistics.median(rates)


def split(base, fraction=0.8):
    """The atlas as train and test h5ad files (anndata), cut at `fraction` of the cells."""
    import anndata
    a = anndata.read_h5ad(base + ".h5ad")
    n = int(a.n_obs * fraction)
    a[:n].copy().write_h5ad(base + "-train.h5ad")
    a[n:].copy().write_h5ad(base + "-test.h5ad")
    return base + "-train.h5ad", base + "-test.h5ad"


def purity(codes, labels, k=15):
    """The mean share of each cell's k nearest neighbours (Euclidean, itself excluded) that are
    of its own type."""
    x = codes.astype(np.float64)
    sq = (x * x).sum(1)
    share = []
    for first in range(0, len(x), 1024):
        d = sq[first:first + 1024, None] + sq[None, :] - 2 * x[first:first + 1024] @ x.T
        for i in range(d.shape[0]):
            d[i, first + i] = np.inf
        near = np.argpartition(d, k, axis=1)[:, :k]
        share.append((labels[near] == labels[first:first + d.shape[0], None]).mean(1))
    return float(np.concatenate(share).mean())


def quality(build, base, work, epochs):
    import anndata
    train_file, test_file = split(base)
    common = ["--size-factor", "10000", "--transform", "log1p", "--features",
              "var:highly_variable", "--normalize", "standard"]
    model = os.path.join(work, "sc-model.h5")
    pca = os.path.join(work, "sc-pca10.h5")
    for path in (model, pca):
        if os.path.exists(path):
            os.remove(path)
    aetrain(build, ["train", "--data", train_file, "--dataset", "X", "--layers", "256,64,10",
                    "--code-activation", "linear", "--batch-size", "128", "--epochs", str(epochs),
                    "--lr", "0.001", "--checkpoint", model, "--seed", "1", "--quiet"] + common,
            2, 1)
    aetrain(build, ["pca", "--data", train_file, "--dataset", "X", "--components", "10",
                    "--out", pca] + common, 2, 1)
    labels = anndata.read_h5ad(test_file).obs["cell_type"].to_numpy()
    rows = []
    for name, path in (("aetrain 256-64-10", model), ("PCA(10)", pca)):
        mse = json.loads(aetrain(build, ["evaluate", "--model", path, "--data", test_file,
                                         "--dataset", "X"], 2, 1).strip().splitlines()[-1])
        out = os.path.join(work, "sc-codes.h5ad")
        if os.path.exists(out):
            os.remove(out)
        aetrain(build, ["encode", "--model", path, "--data", test_file, "--dataset", "X",
                        "--out", out], 2, 1)
        codes = anndata.read_h5ad(out).obsm["X_aetrain"]
        rows.append((name, mse["normalized_mse"], purity(codes, labels)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/var/tmp/aetrain-bench-single-cell")
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=5000)
    ap.add_argument("--densities", default="0.03,0.10")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--quality-cells", type=int, default=20000)
    ap.add_argument("--quality-epochs", type=int, default=30)
    ap.add_argument("--quality-types", type=int, default=20)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    print(f"CPU: {cpu()}")
    print(f"aetrain: {aetrain_version(a.build)}")
    if a.torch:
        print(f"peer: {torch_blas()}")
    print(f"model {a.genes}-{LAYERS}-... (mirrored), batch {BATCH}, "
          f"{' '.join(TRANSFORMS)}, {a.epochs} epochs, median of {a.repeats}")
    print("| non-zero | ranks x threads | h5ad samples/s | dense samples/s | h5ad / dense |"
          + (" torch sparse samples/s | aetrain / torch |" if a.torch else "")
          + " peak MiB/rank h5ad, dense | read MiB/epoch h5ad, dense |")
    print("|---|---|---|---|---|" + ("---|---|" if a.torch else "") + "---|---|")
    for density in (float(d) for d in a.densities.split(",")):
        base = atlas(a.work, a.cells, a.genes, density)
        for ranks, threads in LAUNCHES:
            got = {"h5ad": [], "dense": [], "torch": []}
            for _ in range(a.repeats):
                got["h5ad"].append(train(a.build, base + ".h5ad", "X", ranks, threads, a.work,
                                         a.epochs))
                got["dense"].append(train(a.build, base + "-dense.h5", "X", ranks, threads,
                                          a.work, a.epochs))
                if a.torch:
                    got["torch"].append(torch_peer(base + ".h5ad", ranks, threads, a.epochs))
            med = {k: statistics.median(r[0] for r in v) for k, v in got.items()
                   if k != "torch" and v}
            mem = {k: max(r[1] for r in v) for k, v in got.items() if k != "torch" and v}
            read = {k: statistics.median(r[2] for r in v) / 2**20 for k, v in got.items()
                    if k != "torch" and v}
            line = (f"| {density:.0%} | {ranks} x {threads} | {med['h5ad']:.0f} | "
                    f"{med['dense']:.0f} | {med['h5ad'] / med['dense']:.2f} |")
            if a.torch:
                t = statistics.median(got["torch"])
                line += f" {t:.0f} | {med['h5ad'] / t:.2f} |"
            line += (f" {mem['h5ad']:.0f}, {mem['dense']:.0f} | "
                     f"{read['h5ad']:.0f}, {read['dense']:.0f} |")
            print(line, flush=True)
    if a.quality:
        base = atlas(a.work, a.quality_cells, 2000, 0.03, dense=False, types=a.quality_types)
        print(f"\nquality: {a.quality_cells} cells x 2000 genes at 3%, {a.quality_types} types "
              f"(more than the code is wide); trained on "
              f"80%, measured on the other 20%; {a.quality_epochs} epochs")
        print("| model | test MSE (normalized) | 15-NN cell-type purity |")
        print("|---|---|---|")
        for name, mse, pur in quality(a.build, base, a.work, a.quality_epochs):
            print(f"| {name} | {mse:.4f} | {pur:.3f} |", flush=True)


if __name__ == "__main__":
    main()
