#!/usr/bin/python3
"""--deterministic: the real binary under real mpirun on 1, 2, 3 and 4 ranks (and 1 or 2 threads)
gives the same weights, Adam moments, step losses and validation losses bit for bit, with
shuffling, windows, a short last step, every activation, --alpha > 0 and every recipe option;
resuming mid-epoch on another number of ranks changes nothing; what it cannot promise it
refuses.

    python3 tests/e2e/test_train_deterministic.py path/to/aetrain
"""
import hashlib
import os
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import metrics, run  # noqa: E402

ROWS, COLS, BATCH, EPOCHS = 203, 16, 40, 3  # 6 steps an epoch, the last of 3 rows


def state_hash(path):
    """A hash of every weight and Adam moment in a checkpoint, and the Adam step."""
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith(("model/", "optimizer/")):
                h.update(name.encode())
                h.update(np.ascontiguousarray(obj[()]).tobytes())
        f.visititems(visit)
        h.update(str(dict(f["optimizer"].attrs)).encode())
    return h.hexdigest()


class Deterministic(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = cli_support.temp_dir()
        cls.data = os.path.join(cls.shared, "d.h5")
        cli_support.write(cls.data, rows=ROWS, cols=COLS, seed=11)
        cli_support.write(cls.data, name="/val", rows=30, cols=COLS, seed=12)

    def train(self, name, ranks, args, threads=1, extra=()):
        out, m = self.path(f"{name}.h5"), self.path(f"{name}.jsonl")
        cmd = ["train", "--data", self.data, "--batch-size", str(BATCH), "--epochs", str(EPOCHS),
               "--lr", "0.01", "--deterministic", "--threads", str(threads), "--log-every", "1",
               "--checkpoint", out, "--metrics", m, "--quiet"] + args + list(extra)
        rc, _, err = run(cmd, ranks)
        self.assertEqual(rc, 0, err)
        return out, [e["loss"] for e in metrics(m) if e["event"] == "step"]

    def assert_same_on_every_launch(self, args, launches=((1, 1), (2, 1), (3, 1), (4, 1), (1, 2))):
        reference = None
        for ranks, threads in launches:
            name = f"r{ranks}t{threads}"
            out, losses = self.train(name, ranks, args, threads)
            self.assertEqual(len(losses), EPOCHS * 6)
            # The validation loss too (early stopping decides on it).
            vals = [e.get("val_loss") for e in metrics(self.path(f"{name}.jsonl"))
                    if e["event"] == "epoch"]
            got = (state_hash(out), losses, vals)
            if reference is None:
                reference = got
            for g, r in zip(got, reference):
                self.assertEqual(g, r, f"{ranks} ranks x {threads} threads: {args}")
        return reference

    def test_relu_with_the_whole_recipe_in_windows(self):
        args = ["--layers", "12,5", "--lr-schedule", "cosine", "--warmup-steps", "4",
                "--weight-decay", "0.01", "--clip-norm", "0.05", "--noise", "gaussian:0.1",
                "--window-rows", "80", "--data-block-rows", "16", "--val-dataset", "/val"]
        self.assert_same_on_every_launch(args)

    def test_other_activations_alpha_and_masking(self):
        args = ["--layers", "16", "--activation", "tanh", "--code-activation", "sigmoid",
                "--output-activation", "linear", "--alpha", "0.3", "--noise", "mask:0.2",
                "--lr-schedule", "step", "--lr-gamma", "0.5"]
        self.assert_same_on_every_launch(args, ((1, 1), (2, 1), (3, 1), (4, 2)))

    def test_the_default_sum_is_not_bit_identical(self):
        # What --deterministic buys: without it, 1 and 3 ranks differ in the last bits (if this
        # ever passes, the test above no longer proves anything).
        hashes = set()
        for ranks in (1, 3):
            out = self.path(f"plain{ranks}.h5")
            rc, _, err = run(["train", "--data", self.data, "--layers", "12,5", "--batch-size",
                              str(BATCH), "--epochs", str(EPOCHS), "--lr", "0.01",
                              "--checkpoint", out, "--quiet"], ranks)
            self.assertEqual(rc, 0, err)
            hashes.add(state_hash(out))
        self.assertEqual(len(hashes), 2)

    def test_resume_mid_epoch_on_other_ranks(self):
        args = ["--layers", "12,5", "--noise", "gaussian:0.1", "--lr-schedule", "cosine"]
        whole, losses = self.train("whole", 2, args, extra=["--checkpoint-every", "4",
                                                            "--keep", "10"])
        with h5py.File(whole + ".step8", "r") as f:  # in the middle of the second epoch
            self.assertEqual((f["train"].attrs["epoch"], f["train"].attrs["step_in_epoch"]), (1, 2))
        for ranks in (1, 3, 4):
            part = self.path(f"part{ranks}.h5")
            with open(whole + ".step8", "rb") as src, open(part, "wb") as dst:
                dst.write(src.read())
            m = self.path(f"part{ranks}.jsonl")
            rc, _, err = run(["train", "--data", self.data, "--batch-size", str(BATCH),
                              "--epochs", str(EPOCHS), "--lr", "0.01", "--deterministic",
                              "--log-every", "1", "--checkpoint", part, "--resume",
                              "--metrics", m, "--quiet"] + args, ranks)
            self.assertEqual(rc, 0, err)
            self.assertEqual(state_hash(part), state_hash(whole), f"resumed on {ranks} ranks")
            resumed = [e["loss"] for e in metrics(m) if e["event"] == "step"]
            self.assertEqual(resumed, losses[8:], f"resumed on {ranks} ranks")

    def test_what_it_cannot_promise_it_refuses(self):
        # A batch of 10 is 4 blocks (of 3, 3, 3 and 1): 5 ranks cannot each own a whole one.
        self.assert_fails(["train", "--data", self.data, "--layers", "4", "--batch-size", "10",
                           "--deterministic"], 2,
                          "--deterministic cuts the batch of 10 rows into 4 sample blocks of 3, "
                          "each trained by one rank: 5 ranks need", ranks=5)
        # The remedy it prints is the one that works: a batch of 9 is 3 blocks of 3, so 4 ranks
        # are refused although a batch of 8 (4 blocks of 2) would do; it names the next size up
        # that does, and training with it works on those ranks.
        for batch, ranks, fix in ((9, 4, 10), (10, 5, 513), (600, 6, 641)):
            line = self.assert_fails(["train", "--data", self.data, "--layers", "4",
                                      "--batch-size", str(batch), "--deterministic"], 2,
                                     f"use --batch-size {fix} ", ranks=ranks)
            self.assertIn(f"{ranks} ranks need {ranks} blocks", line)
            rc, _, err = run(["train", "--data", self.data, "--layers", "4", "--batch-size",
                              str(fix), "--deterministic", "--quiet"], ranks)
            self.assertEqual(rc, 0, err)
        # Resuming without it (or adding it) changes the run: refused.
        ck = self.path("c.h5")
        base = ["train", "--data", self.data, "--layers", "4", "--batch-size", "40",
                "--checkpoint", ck]
        rc, _, err = run(base + ["--deterministic"], 2)
        self.assertEqual(rc, 0, err)
        self.assert_fails(base + ["--epochs", "2", "--resume"], 2,
                          "was trained with --deterministic on; this run asks for "
                          "--deterministic off")
        # A NaN gradient in one block of rank 1 (injected at its third step): every rank
        # stops with one line, the diverged code, and writes no checkpoint.
        nan_ck = self.path("nan.h5")
        self.assert_fails(["train", "--data", self.data, "--layers", "4", "--batch-size", "40",
                           "--deterministic", "--checkpoint", nan_ck], 5,
                          "training diverged: a gradient is NaN or infinite at step 3", ranks=3,
                          AETRAIN_FAULT="nan-gradient@1:3")
        self.assertFalse(os.path.exists(nan_ck))

    def test_values_in_physical_units(self):
        # Values near 1e7 with a linear output (gradients near 1e14): the grids follow the
        # gradients' own scale, so there is no window to leave and the runs agree bit for bit.
        big = self.path("big.h5")
        rng = np.random.default_rng(3)
        with h5py.File(big, "w") as f:
            f["/train"] = rng.uniform(1e6, 3e7, (64, 8)).astype(np.float32)
        hashes = set()
        for ranks in (1, 3):
            out = self.path(f"big{ranks}.h5")
            rc, _, err = run(["train", "--data", big, "--layers", "4", "--batch-size", "16",
                              "--output-activation", "linear", "--deterministic", "--epochs", "2",
                              "--checkpoint", out, "--quiet"], ranks)
            self.assertEqual(rc, 0, err)
            hashes.add(state_hash(out))
        self.assertEqual(len(hashes), 1)

if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
