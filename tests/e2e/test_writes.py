#!/usr/bin/python3
"""Writes that fail, with the real binary under real mpirun: a full disk (a small tmpfs, mounted
and unmounted here; root only) while writing a checkpoint, metrics, codes, reconstructions or a
PCA model ends with exit 6 and one line naming the file and "No space left on device", with the
previous file intact (sha256) and nothing half-written left; kill -9 at every step of a write
leaves the previous file intact and a state that loads and resumes.

    python3 tests/e2e/test_writes.py path/to/aetrain
"""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import ENV, metrics, our_errors, run, write, sha256  # noqa: E402

FULL = "No space left on device"


class Writes(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = cli_support.temp_dir()
        cls.data = os.path.join(cls.shared, "data.h5")
        write(cls.data, rows=2000, cols=100, seed=2)
        cls.model = os.path.join(cls.shared, "model.h5")
        rc, _, err = run(cls.training(1) + ["--checkpoint", cls.model], ranks=2)
        assert rc == 0, err

    @classmethod
    def training(cls, epochs):
        # A checkpoint of 64 x 100 weights and biases, three times: about 160 KB.
        return ["train", "--data", cls.data, "--layers", "64", "--batch-size", "50", "--epochs",
                str(epochs), "--quiet"]

    # --- a small disk -------------------------------------------------------------------------

    def disk(self, size="1m"):
        """A tmpfs of `size` at a new directory, unmounted when the test ends."""
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs (a disk that fills up) needs root")
        self.disks = getattr(self, "disks", 0) + 1
        where = self.path(f"disk{self.disks}")
        os.mkdir(where)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where],
                              capture_output=True, text=True)
        if done.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", where], check=False)
        return where

    @staticmethod
    def fill(where, leave=0):
        """Fills the file system at `where`, then gives `leave` bytes back."""
        path = os.path.join(where, "fill")
        chunk = b"\1" * 4096
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        os.close(fd)
        return path

    def assert_write_failed(self, rc, err, path, what):
        self.assertEqual(rc, 6, err)
        lines = our_errors(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(f"{path}: cannot write {what}", lines[0])
        self.assertIn(FULL, lines[0])
        for crash in ("Segmentation fault", "signal 11", "core dumped"):
            self.assertNotIn(crash, err)
        return lines[0]

    def checkpoint_on_a_full_disk(self):
        """A small disk with a checkpoint on it, then filled: (its directory, the checkpoint,
        its sha256)."""
        where = self.disk()
        ck = os.path.join(where, "run.h5")
        rc, _, err = run(self.training(1) + ["--checkpoint", ck], ranks=2)
        self.assertEqual(rc, 0, err)
        before = sha256(ck)
        self.fill(where)
        return where, ck, before

    def test_checkpoint_on_a_full_disk_1_and_2_ranks(self):
        where, ck, before = self.checkpoint_on_a_full_disk()
        for ranks in (1, 2):
            with self.subTest(ranks=ranks):
                rc, _, err = run(self.training(3) + ["--checkpoint", ck, "--resume"], ranks=ranks)
                line = self.assert_write_failed(rc, err, ck, "the checkpoint")
                self.assertIn("(the previous checkpoint is kept)", line)
                self.assertEqual(sha256(ck), before)
                self.assertEqual(sorted(os.listdir(where)), ["fill", "run.h5"])
        os.remove(os.path.join(where, "fill"))  # space again: the run goes on from it
        rc, _, err = run(self.training(3) + ["--checkpoint", ck, "--resume"], ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(ck, "r") as f:
            self.assertEqual(f["train"].attrs["epoch"], 3)

    def test_best_model_on_a_full_disk(self):
        where = self.disk()
        ck = os.path.join(where, "run.h5")
        # Room for one checkpoint (the space its write reserves: its size and about 100 KB for
        # its metadata), not for two.
        self.fill(where, leave=os.path.getsize(self.model) + (100 << 10))
        rc, _, err = run(self.training(3) + ["--checkpoint", ck, "--val-dataset", "/train",
                                             "--early-stop", "2"], ranks=2)
        # epoch 1's best model fits; epoch 2's does not beside it
        line = self.assert_write_failed(rc, err, ck + ".best", "the best model")
        self.assertIn("(the previous best model is kept)", line)
        self.assertEqual(sorted(os.listdir(where)), ["fill", "run.h5.best"])
        with h5py.File(ck + ".best", "r") as f:
            self.assertEqual(f["train"].attrs["epoch"], 1)

    def test_metrics_on_a_full_disk(self):
        where = self.disk()
        m = os.path.join(where, "run.jsonl")
        self.fill(where, leave=8192)
        rc, _, err = run(self.training(5) + ["--metrics", m, "--log-every", "1"], ranks=2)
        line = self.assert_write_failed(rc, err, m, "the metrics")
        self.assertIn("(the lines written before are kept)", line)
        lines = metrics(m)  # every line whole
        self.assertGreater(len(lines), 10)
        self.assertEqual(lines[0]["event"], "start")

    def test_encode_on_a_nearly_full_disk_2_ranks(self):
        # 2000 x 64 codes: 512 KB. Each fill leaves less than that; the last ones nothing.
        for leave in (400 << 10, 100 << 10, 8192, 0):
            with self.subTest(leave=leave):
                where = self.disk()
                self.fill(where, leave=leave)
                out = os.path.join(where, "codes.h5")
                rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out",
                                  out], ranks=2)
                self.assert_write_failed(rc, err, out, "the codes (/codes)")
                self.assertEqual(os.listdir(where), ["fill"])

    def test_encode_into_an_existing_file_on_a_full_disk(self):
        where = self.disk()
        out = os.path.join(where, "codes.h5")
        with h5py.File(out, "w") as f:
            f["mine"] = np.arange(10)
        before = sha256(out)
        self.fill(where, leave=100 << 10)
        rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out", out],
                         ranks=2)
        self.assert_write_failed(rc, err, out, "the codes (/codes)")
        self.assertEqual(sha256(out), before)
        self.assertEqual(sorted(os.listdir(where)), ["codes.h5", "fill"])

    def test_encode_where_space_cannot_be_reserved(self):
        # A file system without fallocate: HDF5 itself meets the full disk, mid-write. Every
        # handle is closed on every rank before MPI ends: no crash, however the writes fail.
        for attempt in range(4):
            with self.subTest(attempt=attempt):
                where = self.disk()
                self.fill(where, leave=(64 << 10) * attempt)
                out = os.path.join(where, "codes.h5")
                rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out",
                                  out], ranks=2, AETRAIN_FAULT="reserve-unsupported")
                self.assert_write_failed(rc, err, out, "the codes (/codes)")
                self.assertEqual(os.listdir(where), ["fill"])

    def test_evaluate_on_a_full_disk(self):
        where = self.disk()
        self.fill(where, leave=100 << 10)
        rec = os.path.join(where, "rec.h5")
        rc, out, err = run(["evaluate", "--model", self.model, "--data", self.data,
                            "--reconstruct", rec], ranks=2)
        self.assert_write_failed(rc, err, rec, "the reconstructions (/reconstruction)")
        self.assertEqual(os.listdir(where), ["fill"])

    def test_pca_on_a_full_disk(self):
        where = self.disk()
        pca = os.path.join(where, "pca.h5")
        args = ["pca", "--data", self.data, "--components", "50", "--out", pca]
        rc, _, err = run(args, ranks=2)
        self.assertEqual(rc, 0, err)
        before = sha256(pca)
        self.fill(where)
        rc, _, err = run(args + ["--overwrite", "--normalize", "standard"], ranks=2)
        line = self.assert_write_failed(rc, err, pca, "the PCA model")
        self.assertIn("(the previous PCA model is kept)", line)
        self.assertEqual(sha256(pca), before)
        self.assertEqual(sorted(os.listdir(where)), ["fill", "pca.h5"])

    def test_a_stop_signal_whose_checkpoint_cannot_be_written_ends_with_6(self):
        where, ck, before = self.checkpoint_on_a_full_disk()
        m = self.path("run.jsonl")  # on a disk with room, to see the run under way
        cmd = cli_support.MPIRUN + ["-n", "2", "--timeout", "300", cli_support.AETRAIN] + \
            self.training(500) + ["--checkpoint", ck, "--resume", "--metrics", m]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=ENV)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                os.path.exists(m) and any(l["event"] == "epoch" for l in metrics(m))):
            time.sleep(0.05)
        p.send_signal(signal.SIGUSR1)
        _, err = p.communicate(timeout=120)
        line = self.assert_write_failed(p.returncode, err, ck, "the checkpoint")
        self.assertIn("(the previous checkpoint is kept)", line)
        self.assertEqual(sha256(ck), before)

    # --- kill -9 at every step of a write ------------------------------------------------------

    def killed(self, args, point, ranks=2):
        rc, _, err = run(args, ranks=ranks, AETRAIN_FAULT=point)
        self.assertNotEqual(rc, 0, err)
        self.assertNotIn("Segmentation fault", err)

    def test_kill_at_each_step_of_a_checkpoint_write(self):
        for point in ("checkpoint-tmp-created", "checkpoint-mid-write",
                      "checkpoint-before-rename", "checkpoint-after-rename"):
            with self.subTest(point=point):
                ck = self.path(point + ".h5")
                rc, _, err = run(self.training(1) + ["--checkpoint", ck], ranks=2)
                self.assertEqual(rc, 0, err)
                before = sha256(ck)
                # 40 steps an epoch: the second epoch's end writes the next checkpoint
                self.killed(self.training(2) + ["--checkpoint", ck, "--resume"], point + "@0")
                with h5py.File(ck, "r") as f:
                    step = f["train"].attrs["global_step"]
                if point == "checkpoint-after-rename":
                    self.assertEqual(step, 80)  # the new one is complete and in place
                else:
                    self.assertEqual(sha256(ck), before)
                    self.assertEqual(step, 40)
                rc, _, err = run(self.training(3) + ["--checkpoint", ck, "--resume"], ranks=2)
                self.assertEqual(rc, 0, err)
                self.assertFalse(os.path.exists(ck + ".tmp"))
                with h5py.File(ck, "r") as f:
                    self.assertEqual(f["train"].attrs["global_step"], 120)

    def test_kill_at_each_step_of_a_pca_model_write(self):
        for point in ("pca-model-tmp-created", "pca-model-mid-write", "pca-model-before-rename",
                      "pca-model-after-rename"):
            with self.subTest(point=point):
                out = self.path(point + ".h5")
                args = ["pca", "--data", self.data, "--components", "5", "--out", out]
                rc, _, err = run(args, ranks=2)
                self.assertEqual(rc, 0, err)
                before = sha256(out)
                self.killed(args + ["--overwrite", "--normalize", "minmax"], point + "@0")
                with h5py.File(out, "r") as f:
                    kind = f["normalization"].attrs["kind"] if "normalization" in f else None
                if point == "pca-model-after-rename":
                    self.assertEqual(kind, "minmax")
                else:
                    self.assertEqual(sha256(out), before)
                rc, out_text, err = run(["inspect", out, "--json"], ranks=0)
                self.assertEqual(rc, 0, err)
                self.assertEqual(json.loads(out_text)["kind"], "pca")

    def test_kill_at_each_step_of_a_row_write(self):
        enc = ["encode", "--model", self.model, "--data", self.data, "--block-rows", "100"]
        for point in ("rows-mid-write@1:3", "rows-before-commit@0"):
            with self.subTest(point=point):
                # A new file: nothing under its name.
                out = self.path("new_" + point.split("@")[0] + ".h5")
                self.killed(enc + ["--out", out], point)
                self.assertFalse(os.path.exists(out))
                # An existing file: its codes from before stay as they were, the file loads, and
                # the next run replaces its leftovers.
                out = self.path("old_" + point.split("@")[0] + ".h5")
                rc, _, err = run(enc + ["--out", out], ranks=2)
                self.assertEqual(rc, 0, err)
                with h5py.File(out, "a") as f:
                    f["codes"][0, 0] = 1234.0
                    codes = f["codes"][()].tobytes()
                self.killed(enc + ["--out", out, "--overwrite"], point)
                with h5py.File(out, "r") as f:
                    self.assertEqual(hashlib.sha256(f["codes"][()].tobytes()).hexdigest(),
                                     hashlib.sha256(codes).hexdigest())
                rc, _, err = run(enc + ["--out", out, "--overwrite"], ranks=2)
                self.assertEqual(rc, 0, err)
                with h5py.File(out, "r") as f:
                    self.assertNotEqual(f["codes"][0, 0], 1234.0)
                    self.assertEqual(sorted(f), ["codes", "codes_sources"])


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
