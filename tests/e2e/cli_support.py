"""Helpers for the tests that run the real aetrain binary under real mpirun."""
import hashlib
import json
import os
import subprocess
import tempfile
import unittest
import zlib

import h5py
import numpy as np

# The repository this suite belongs to (tests/e2e/ is two levels down).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

AETRAIN = os.environ.get("AETRAIN", "aetrain")
# Loopback-only TCP: Open MPI 5 otherwise prints a line per pair of ranks on hosts with IPv6
# addresses, which can land inside ours (jobs/one-machine.sh says more).
# pml ob1: the one Open MPI picks on a machine without Mellanox devices anyway (UCX's takes over
# only with those), named so that no process spends a quarter of a second probing the others.
# odls_base_sigkill_timeout 0: Open MPI 4.1's mpirun otherwise sleeps 2 s (SIGTERM, 1 s, SIGKILL,
# 1 s) after any rank exits with an error, even when every rank has already exited; Open MPI 5's
# launcher has no such wait and ignores the name. test_train_faults.py keeps mpirun's default.
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMP_NUM_THREADS="1", OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_pml="ob1",
           OMPI_MCA_odls_base_sigkill_timeout="0")
# More ranks than cores, in the form Open MPI 4.1 and 5 both take (5 deprecates --oversubscribe).
MPIRUN = ["mpirun", "--map-by", ":OVERSUBSCRIBE", "--bind-to", "none"]


def run(args, ranks=1, timeout=300, cwd=None, **env):
    """Runs aetrain (under mpirun unless ranks == 0) in `cwd` (this directory if None), with
    `env` added to the environment, and returns (code, stdout, stderr)."""
    cmd = [AETRAIN] + args
    if ranks:
        cmd = MPIRUN + ["-n", str(ranks), "--timeout", str(timeout)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(ENV, **env),
                       timeout=timeout + 30, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def our_errors(stderr):
    # Open MPI 5's launcher (PRRTE 3.0) ends its MPI_ABORT notice with a NUL byte, which can
    # land at the start of our line.
    return [line for line in stderr.replace("\0", "").splitlines()
            if line.startswith("aetrain: error:")]


def write(path, name="/train", rows=1000, cols=100, seed=0, dtype=np.float32):
    data = np.random.default_rng(seed).random((rows, cols)).astype(dtype)
    with h5py.File(path, "a") as f:
        f.create_dataset(name, data=data)
    return data


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def reseal(path):
    """Rewrites a checkpoint's checksum block as aetrain writes it, after a test changed the file
    on purpose, as another version of aetrain or a user with the same rights would have: its
    first 4096 bytes are "aetrain crc32 XXXXXXXX\\n", then "data OFFSET BYTES\\n" for each run of
    chunks it skips, then zeros; the CRC-32 is of those bytes after the first line, then of the
    file after them outside the runs."""
    with open(path, "r+b") as f:
        data = f.read()
        assert data.startswith(b"aetrain crc32 "), path
        block = data[:4096]
        head = len(b"aetrain crc32 ") + 9
        runs = [tuple(map(int, line.split()[1:])) for line in
                block[head:].rstrip(b"\0").decode().splitlines()]
        crc = zlib.crc32(block[head:])
        at = 4096
        for offset, size in runs + [(len(data), 0)]:
            crc = zlib.crc32(data[at:offset], crc)
            at = offset + size
        f.seek(0)
        f.write(b"aetrain crc32 %08x\n" % crc)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def weights(path):
    """Every array of numbers in a file (tables such as /train/sources left out)."""
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) and obj.dtype.names is None else None)
        return out




ACT = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
       "tanh": np.tanh, "linear": lambda z: z}


def load(path):
    """The model in a checkpoint or PCA file, as numpy: (layers, attrs)."""
    with h5py.File(path, "r") as f:
        m = f["model"]
        layers = []
        for part in ("encoder", "decoder"):
            for i in range(len(m[part])):
                g = m[part][f"layer_{i}"]
                layers.append((g["kernel"][()].astype(np.float64), g["bias"][()].astype(np.float64)))
        return layers, dict(m.attrs)


def forward(path, x, encoder_only=False):
    """A plain re-implementation of the model: y = act(x . kernel + bias), layer by layer, on x
    as the model takes it (normalize() it first for a model with /normalization)."""
    layers, a = load(path)
    n_enc = len(a["encoder_widths"])
    h = x.astype(np.float64)
    for i, (kernel, bias) in enumerate(layers):
        if encoder_only and i == n_enc:
            break
        act = (a["output_activation"] if i == len(layers) - 1
               else a["code_activation"] if i == n_enc - 1 else a["activation"])
        h = ACT[act](h @ kernel + bias)
    return h


def normalization(path):
    """(offset, scale) of a model file's /normalization, or None."""
    with h5py.File(path, "r") as f:
        if "normalization" not in f:
            return None
        g = f["normalization"]
        return g["offset"][()], g["scale"][()]


def normalize(path, x):
    """x as the model in `path` takes it: (x - offset) / scale, in float64."""
    stats = normalization(path)
    x = x.astype(np.float64)
    return x if stats is None else (x - stats[0]) / stats[1]


def temp_dir():
    """A new temporary directory (a test's own, or a test class's shared one)."""
    return tempfile.mkdtemp(prefix="aetrain-test-")


class BinaryTest(unittest.TestCase):
    """A test with its own temporary directory."""

    def setUp(self):
        self.dir = temp_dir()

    def path(self, name):
        return os.path.join(self.dir, name)

    def assert_fails(self, args, code, needle, ranks=2, cwd=None, **env):
        """The run exits with `code` and prints one error line (not one per rank) with `needle`."""
        rc, out, err = run(args, ranks, cwd=cwd, **env)
        self.assertEqual(rc, code, err)
        lines = our_errors(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(needle, lines[0])
        return lines[0]


class TrainedModelTest(BinaryTest):
    """A test with a small model trained once for the class: `model` trained on `data` (203 rows
    x 24 columns in /train, its first 3 and 10 rows in /small and /ten, `x` the rows)."""

    @classmethod
    def setUpClass(cls):
        cls.dir0 = temp_dir()
        cls.data = os.path.join(cls.dir0, "data.h5")
        cls.x = write(cls.data, rows=203, cols=24, seed=3)
        with h5py.File(cls.data, "a") as f:
            f["/small"] = cls.x[:3]
            f["/ten"] = cls.x[:10]
        cls.model = os.path.join(cls.dir0, "model.h5")
        rc, _, err = run(["train", "--data", cls.data, "--layers", "16,5", "--activation", "tanh",
                          "--epochs", "3", "--batch-size", "16", "--checkpoint", cls.model],
                         ranks=2)
        assert rc == 0, err

    def codes(self, path, name="/codes"):
        """A dataset of codes (or any rows) and its attributes."""
        with h5py.File(path, "r") as f:
            return f[name][()], dict(f[name].attrs)
