"""Helpers for the tests that run the real aetrain binary under real mpirun."""
import json
import os
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

AETRAIN = os.environ.get("AETRAIN", "aetrain")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMP_NUM_THREADS="1")


def run(args, ranks=1, timeout=300):
    """Runs aetrain (under mpirun unless ranks == 0) and returns (code, stdout, stderr)."""
    cmd = [AETRAIN] + args
    if ranks:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--bind-to", "none",
               "--timeout", str(timeout)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout + 30)
    return p.returncode, p.stdout, p.stderr


def our_errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("aetrain: error:")]


def write(path, name="/train", rows=1000, cols=100, seed=0, dtype=np.float32):
    data = np.random.default_rng(seed).random((rows, cols)).astype(dtype)
    with h5py.File(path, "a") as f:
        f.create_dataset(name, data=data)
    return data


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def weights(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        return out




class BinaryTest(unittest.TestCase):
    """A test with its own temporary directory."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="aetrain-test-")

    def path(self, name):
        return os.path.join(self.dir, name)

    def assert_fails(self, args, code, needle, ranks=2):
        """The run exits with `code` and prints one error line (not one per rank) with `needle`."""
        rc, out, err = run(args, ranks)
        self.assertEqual(rc, code, err)
        lines = our_errors(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(needle, lines[0])
        return lines[0]
