#!/usr/bin/python3
"""Faults and bad input, with the real binary under real mpirun (2 ranks): a failing rank, a
killed rank, preemption by SIGUSR1 and SIGTERM, a writer killed mid-checkpoint, divergence,
replica drift, and every bad input we handle. Each checks the exit code, the one error line,
the time taken and the files left behind.

    python3 tests/e2e/test_train_faults.py path/to/aetrain
"""
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import ENV, metrics, our_errors, run, weights, write  # noqa: E402

# Ranks that die or abort here end the job as in production: mpirun's own SIGTERM, then SIGKILL
# a second later, to the ranks still running (the table's seconds include it).
del ENV["OMPI_MCA_odls_base_sigkill_timeout"]
# A refusal, where every rank returns the exit code itself, leaves no rank to signal: no wait.
REFUSAL = {"OMPI_MCA_odls_base_sigkill_timeout": "0"}

QUICK = 60  # seconds: a failure must end the job well within this
REPORT = []  # (what was tried, exit code, seconds, the error line), printed at the end


def start(args, ranks=2, **env):
    """aetrain under mpirun in the background."""
    cmd = cli_support.MPIRUN + ["-n", str(ranks), "--timeout", "300", cli_support.AETRAIN] + args
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(ENV, **env))


def wait_for(predicate, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def checkpoints_written(path):
    if not os.path.exists(path):
        return []
    return [l["step"] for l in metrics(path) if l["event"] == "checkpoint"]


def without_temp_dirs(text):
    return re.sub(r"\S*/aetrain-test-\w+/", "", text)


def report(label, rc, seconds, line):
    REPORT.append((without_temp_dirs(label), rc, seconds, without_temp_dirs(line)))


class Faults(cli_support.BinaryTest):
    @classmethod
    def tearDownClass(cls):
        """The table of faults and inputs tried, for the record (docs/faults.md)."""
        print("\n| fault or input | exit | seconds | message |\n|---|---|---|---|")
        for label, rc, seconds, line in sorted(REPORT):
            print(f"| {label} | {rc} | {seconds:.1f} | {line.replace('|', '/')[:140]} |")

    @classmethod
    def setUpClass(cls):
        cls.data = os.path.join(cli_support.temp_dir(), "data.h5")
        write(cls.data, rows=4000, cols=200, seed=1)
        # Long enough to interrupt after its first checkpoint (every 20 of its 1875 steps):
        # about 1.5 s on 2 ranks.
        cls.train = cls.training(15)
        cls.whole = None  # the uninterrupted run, made once for the preemption tests

    @classmethod
    def training(cls, epochs):
        return ["train", "--data", cls.data, "--layers", "128,16", "--batch-size", "32",
                "--epochs", str(epochs), "--quiet"]

    @staticmethod
    def bytes(path):
        with open(path, "rb") as f:
            return f.read()

    def assert_clean_failure(self, rc, err, code, needle, seconds, label=None):
        lines = our_errors(err)
        report(label or needle, rc, seconds, lines[0] if lines else "")
        self.assertEqual(rc, code, err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(needle, lines[0])
        self.assertNotIn("Segmentation fault", err)
        self.assertNotIn("core dumped", err)
        self.assertLess(seconds, QUICK)

    def timed(self, args, ranks=2, **env):
        t = time.monotonic()
        p = start(args, ranks, **env)
        out, err = p.communicate(timeout=300)
        return p.returncode, out, err, time.monotonic() - t

    # --- a rank fails, or dies ---------------------------------------------------------------

    def test_an_exception_on_one_rank_ends_the_job(self):
        rc, _, err, s = self.timed(self.train, AETRAIN_FAULT="throw@1:20")
        self.assert_clean_failure(rc, err, 1, "rank 1: injected failure", s,
                                  "an exception on rank 1 at step 20")

    def test_a_replicated_error_raised_on_one_rank_alone_is_loud(self):
        # fail_replicated() asserts that every rank throws alike; raised by one rank alone (a
        # bug), the other ranks never join it. main must say so and end the job, not hang.
        rc, _, err, s = self.timed(self.train, AETRAIN_FAULT="replicated-error@1:20")
        self.assert_clean_failure(rc, err, 1, "rank 1: injected replicated error", s,
                                  "a replicated error raised on rank 1 alone (a bug)")
        self.assertIn("internal error", err)
        self.assertGreater(s, 9)  # it waited for the others first

    def test_bad_rows_on_one_rank_are_reported_once_with_the_row(self):
        path = self.path("nan.h5")
        write(path, rows=100, cols=8)
        with h5py.File(path, "a") as f:
            f["/train"][57, 3] = np.nan  # in the second block of 50 rows: rank 1 reads it
        rc, _, err, s = self.timed(["train", "--data", path, "--layers", "4",
                                    "--data-block-rows", "50"])
        self.assert_clean_failure(rc, err, 3,
                                  "rank 1: " + path + ": /train: row 57, column 3 is NaN", s,
                                  "a NaN in a block rank 1 reads")

    def test_bad_rows_read_while_training_end_every_rank_alike(self):
        # Windows of 300 rows in blocks of 100, in order: the block of rows 700-799 is read by
        # rank 1 while the steps of the second window run. Its error rides in the step's own
        # collectives: every rank exits 3, one line, no MPI_Abort banner or ORTE message, and
        # the checkpoint written before stays.
        path, ck = self.path("late_nan.h5"), self.path("late_nan_ck.h5")
        write(path, rows=1000, cols=8)
        with h5py.File(path, "a") as f:
            f["/train"][757, 3] = np.nan
        args = ["train", "--data", path, "--layers", "4", "--batch-size", "50", "--shuffle",
                "off", "--window-rows", "300", "--data-block-rows", "100", "--checkpoint", ck,
                "--checkpoint-every", "2"]
        for ranks in (2, 3):
            if os.path.exists(ck):
                os.remove(ck)
            rc, _, err, s = self.timed(args, ranks=ranks)
            self.assert_clean_failure(rc, err, 3,
                                      "rank 1: " + path + ": /train: row 757, column 3 is NaN", s,
                                      f"a NaN read by rank 1 of {ranks} while training")
            for banner in ("MPI_ABORT", "ORTE_ERROR_LOG", "PRTE", "MPI_Abort"):
                self.assertNotIn(banner, err)
            with h5py.File(ck, "r") as f:  # the last checkpoint before the bad window
                self.assertLessEqual(f["train"].attrs["global_step"], 12)
        # An exception inside a step on one rank alone ends every rank alike too.
        rc, _, err, s = self.timed(self.train, AETRAIN_FAULT="throw@1:5")
        self.assert_clean_failure(rc, err, 1, "rank 1: injected failure", s)
        self.assertNotIn("MPI_ABORT", err)

    def test_a_killed_rank_ends_the_job_and_the_checkpoint_survives(self):
        ck, m = self.path("killed.h5"), self.path("killed.jsonl")
        t = time.monotonic()
        p = start(self.train + ["--checkpoint", ck, "--checkpoint-every", "20", "--metrics", m])
        self.assertTrue(wait_for(lambda: checkpoints_written(m)), "no checkpoint in time")
        ranks = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                               text=True).stdout.split()
        self.assertEqual(len(ranks), 2)
        os.kill(int(ranks[1]), signal.SIGKILL)
        p.communicate(timeout=QUICK)
        report("rank 1 killed by SIGKILL while training", p.returncode, time.monotonic() - t,
               "(killed: no error line; the checkpoint survives)")
        self.assertNotEqual(p.returncode, 0)
        self.assertLess(time.monotonic() - t, QUICK)
        rc, out, err = run(["inspect", ck, "--json"], ranks=0)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["train"]["global_step"] % 20, 0)
        rc, out, err = run(self.train + ["--checkpoint", ck, "--resume", "--metrics", m], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertTrue([l for l in metrics(m) if l["event"] == "start"][-1]["resumed"])
        with h5py.File(ck, "r") as f:
            self.assertEqual(f["train"].attrs["epoch"], 15)

    # --- preemption ----------------------------------------------------------------------------

    def preempt(self, how):
        if Faults.whole is None:
            Faults.whole = self.path("whole.h5")
            rc, _, err = run(self.train + ["--checkpoint", Faults.whole], ranks=2)
            self.assertEqual(rc, 0, err)
        part, m = self.path(f"part_{how}.h5"), self.path(f"part_{how}.jsonl")
        t = time.monotonic()
        p = start(self.train + ["--checkpoint", part, "--checkpoint-every", "20", "--metrics", m])
        self.assertTrue(wait_for(lambda: checkpoints_written(m)), "no checkpoint in time")
        if how == "usr1":  # what `#SBATCH --signal=B:USR1@T` sends and mpirun forwards
            p.send_signal(signal.SIGUSR1)
        else:  # SIGTERM where it reaches the ranks (srun sends it to every task)
            for pid in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                      text=True).stdout.split():
                os.kill(int(pid), signal.SIGTERM)
        _, err = p.communicate(timeout=QUICK)
        report(f"preemption by {how.upper()}", p.returncode, time.monotonic() - t,
               "(checkpoint written, no error line)")
        self.assertEqual(p.returncode, 75, err)
        self.assertLess(time.monotonic() - t, QUICK)
        self.assertEqual(our_errors(err), [])
        stopped_at = json.loads(run(["inspect", part, "--json"], ranks=0)[1])["train"]["global_step"]
        self.assertLess(stopped_at, 15 * 125)  # it did stop early
        rc, out, err = run(self.train + ["--checkpoint", part, "--resume"], ranks=2)
        self.assertEqual(rc, 0, err)
        a, b = weights(Faults.whole), weights(part)
        for name in a:
            if name.startswith(("model/", "optimizer/")):
                self.assertTrue(np.array_equal(a[name], b[name]), name)

    def test_sigusr1_checkpoints_exits_75_and_resumes_bit_identically(self):
        self.preempt("usr1")

    def test_sigterm_to_the_ranks_does_the_same(self):
        self.preempt("term")

    # --- checkpoints -----------------------------------------------------------------------

    def test_a_writer_killed_before_the_rename_leaves_the_previous_checkpoint(self):
        ck = self.path("torn.h5")
        rc, _, err, s = self.timed(self.train + ["--checkpoint", ck, "--checkpoint-every", "100"],
                                   AETRAIN_FAULT="checkpoint-before-rename@0:2")
        report("checkpoint writer killed before its rename", rc, s, "(rank 0 killed by SIGKILL)")
        self.assertNotEqual(rc, 0)
        self.assertLess(s, QUICK)
        self.assertTrue(os.path.exists(ck + ".tmp"))  # the new one, never renamed
        rc, out, err = run(["inspect", ck, "--json"], ranks=0)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["train"]["global_step"], 100)  # the first one, intact
        m = self.path("torn.jsonl")
        rc, out, err = run(self.training(2) + ["--checkpoint", ck, "--resume", "--metrics", m],
                           ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertEqual(metrics(m)[0]["global_step"], 100)  # it resumed the intact one
        self.assertFalse(os.path.exists(ck + ".tmp"))

    def test_keep_the_last_n(self):
        ck = self.path("keep.h5")
        args = ["train", "--data", self.data, "--layers", "8", "--batch-size", "400",
                "--epochs", "7", "--checkpoint", ck, "--checkpoint-every", "10", "--keep", "3"]
        rc, _, err = run(args, ranks=2)
        self.assertEqual(rc, 0, err)
        kept = sorted(f for f in os.listdir(self.dir) if f.startswith("keep.h5"))
        self.assertEqual(kept, ["keep.h5", "keep.h5.step50", "keep.h5.step60"])
        with h5py.File(self.path("keep.h5.step60"), "r") as f:
            self.assertEqual(f["train"].attrs["global_step"], 60)

    def test_bad_checkpoints_are_refused_not_replaced(self):
        good = self.path("good.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "8", "--checkpoint", good],
                         ranks=2)
        self.assertEqual(rc, 0, err)
        raw = self.bytes(good)
        cases = {"truncated.h5": raw[:len(raw) // 2], "garbage.h5": b"\0" * 4096,
                 "text.h5": b"not a checkpoint\n"}
        for name, content in cases.items():
            with open(self.path(name), "wb") as f:
                f.write(content)
        with h5py.File(self.path("foreign.h5"), "w") as f:
            f["x"] = np.zeros(3)
        with h5py.File(self.path("future.h5"), "w") as f:
            f.attrs["format"] = "aetrain-checkpoint"
            f.attrs["format_version"] = 99
        for name in list(cases) + ["foreign.h5", "future.h5"]:
            before = self.bytes(self.path(name))
            rc, _, err, s = self.timed(["train", "--data", self.data, "--layers", "8",
                                        "--checkpoint", self.path(name), "--resume", "--epochs",
                                        "2"], **REFUSAL)
            self.assert_clean_failure(rc, err, 4, name, s, f"--resume from {name}")
            self.assertEqual(self.bytes(self.path(name)), before)
        rc, _, err, s = self.timed(["train", "--data", self.data, "--layers", "8", "--init-from",
                                    self.path("future.h5")], **REFUSAL)
        self.assert_clean_failure(rc, err, 4, "newer", s, "--init-from future.h5")
        rc, _, err, s = self.timed(["encode", "--model", self.path("truncated.h5"), "--data",
                                    self.data, "--out", self.path("codes.h5")], **REFUSAL)
        self.assert_clean_failure(rc, err, 4, "truncated.h5", s, "encode --model truncated.h5")

    # --- divergence and drift --------------------------------------------------------------

    def test_a_nan_loss_stops_with_5_and_keeps_the_checkpoint(self):
        ck = self.path("diverge.h5")
        base = ["train", "--data", self.data, "--layers", "8", "--output-activation", "linear",
                "--checkpoint", ck]
        rc, _, err = run(base + ["--epochs", "1"], ranks=2)
        self.assertEqual(rc, 0, err)
        before = self.bytes(ck)
        rc, _, err, s = self.timed(base + ["--epochs", "3", "--resume", "--lr", "1e30"])
        self.assert_clean_failure(rc, err, 5, "training diverged", s, "a NaN loss (--lr 1e30)")
        self.assertIn("at step", our_errors(err)[0])
        self.assertEqual(self.bytes(ck), before)

    def test_a_nan_gradient_on_one_rank_stops_with_5(self):
        rc, _, err, s = self.timed(self.train + ["--checkpoint", self.path("nan_grad.h5")],
                                   AETRAIN_FAULT="nan-gradient@1:7")
        self.assert_clean_failure(rc, err, 5, "a gradient or weight is NaN or infinite at step 7", s,
                                  "a NaN gradient on rank 1")
        self.assertFalse(os.path.exists(self.path("nan_grad.h5")))

    def test_replica_drift_is_caught(self):
        rc, _, err, s = self.timed(self.train + ["--check-replicas", "5"],
                                   AETRAIN_FAULT="drift@1:3")
        self.assert_clean_failure(rc, err, 1, "rank 1: replicas differ at step 5", s,
                                  "replica drift on rank 1 (--check-replicas 5)")
        rc, _, err, s = self.timed(self.training(1) + ["--check-replicas", "5"])
        self.assertEqual(rc, 0, err)

    # --- outputs ---------------------------------------------------------------------------

    def test_a_killed_encode_leaves_no_output_under_its_name(self):
        model = self.path("enc_model.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "8", "--checkpoint", model])
        self.assertEqual(rc, 0, err)
        out = self.path("codes_new.h5")
        rc, _, err, s = self.timed(["encode", "--model", model, "--data", self.data, "--out", out,
                                    "--block-rows", "100"], AETRAIN_FAULT="encode-block@1:2")
        report("encode: rank 1 killed mid-output", rc, s, "(no output file left)")
        self.assertNotEqual(rc, 0)
        self.assertLess(s, QUICK)
        self.assertFalse(os.path.exists(out))
        existing = self.path("codes_old.h5")
        with h5py.File(existing, "w") as f:
            f["keep"] = np.arange(5)
        rc, _, err, s = self.timed(["encode", "--model", model, "--data", self.data, "--out",
                                    existing, "--block-rows", "100"],
                                   AETRAIN_FAULT="encode-block@0:3")
        self.assertNotEqual(rc, 0)
        with h5py.File(existing, "r") as f:
            self.assertNotIn("codes", f)
            self.assertEqual(list(f["keep"][()]), list(range(5)))

    # --- bad input -------------------------------------------------------------------------

    def test_every_bad_input(self):
        bad = self.path("bad.h5")
        with h5py.File(bad, "w") as f:
            f["zero"] = np.zeros((0, 5), np.float32)
            f["one_d"] = np.zeros(5, np.float32)
            f["three_d"] = np.zeros((2, 3, 4), np.float32)
            f["strings"] = np.array([[b"a", b"b"], [b"c", b"d"]])
            f["compound"] = np.zeros((3, 2), dtype=[("a", "f4"), ("b", "i4")])
            f["ints"] = np.arange(20, dtype=np.int16).reshape(4, 5)
            f["inf"] = np.ones((30, 5), np.float32)
            f["inf"][12, 0] = np.inf
            f.create_group("group")
        with open(self.path("notes.txt"), "w") as f:
            f.write("hello\n")
        raw = self.bytes(self.data)
        with open(self.path("truncated.h5"), "wb") as f:
            f.write(raw[:len(raw) // 3])
        model = self.path("bad_model.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "8", "--checkpoint", model])
        self.assertEqual(rc, 0, err)
        t = ["train", "--layers", "4", "--data"]
        cases = [
            (t + [self.path("missing.h5")], 3, "missing.h5: no such file"),
            (t + [self.path("notes.txt")], 3, "not an HDF5 file"),
            (t + [self.path("truncated.h5")], 3, "truncated.h5"),
            (t + [bad, "--dataset", "/nope"], 3, "/nope: no such dataset"),
            (t + [bad, "--dataset", "/group"], 3, "is a group"),
            (t + [bad, "--dataset", "/one_d"], 3, "has 1 dimensions"),
            (t + [bad, "--dataset", "/three_d"], 3, "has 3 dimensions"),
            (t + [bad, "--dataset", "/strings"], 3, "holds string values"),
            (t + [bad, "--dataset", "/compound"], 3, "holds compound values"),
            (t + [bad, "--dataset", "/ints"], 3,
             "holds 16-bit integer values; integer data needs a normalization"),
            (["encode", "--model", model, "--data", bad, "--dataset", "/ints", "--out",
              self.path("o.h5")], 3, "--normalize minmax"),
            (t + [self.data, "--normalize", "zscore"], 2, "--normalize"),
            (t + [bad, "--dataset", "/zero"], 3, "has no rows"),
            (t + [bad, "--dataset", "/inf"], 3, "row 12, column 0 is infinite"),
            (t + [self.data, "--alpha", "0.5"], 2, "code width"),
            (["train", "--data", self.data, "--layers", "9", "--init-from", model], 2,
             "holds a model trained with --layers 8; this run asks for --layers 9"),
            (["encode", "--model", model, "--data", self.data, "--out", self.path("o.h5"),
              "--out-dataset", ""], 2, "--out-dataset: '' names no dataset"),
            (t + [self.data, "--checkpoint", "/proc/aetrain/c.h5"], 2, "does not exist"),
            (t + [self.data, "--checkpoint", "/proc/c.h5"], 2, "cannot create files"),
            (["encode", "--model", model, "--data", self.data, "--out", "/proc/c.h5"], 2,
             "cannot create files"),
        ]
        for value in ("0", "-3", "x", "1e400"):
            cases += [(t + [self.data, "--epochs", value], 2, "--epochs"),
                      (t + [self.data, "--batch-size", value], 2, "--batch-size"),
                      (t + [self.data, "--lr", value], 2, "--lr"),
                      (["train", "--data", self.data, "--layers", value], 2, "--layers")]
        cases += [(t + [self.data, "--beta1", "1.5"], 2, "--beta1"),
                  (t + [self.data, "--threads", "0"], 2, "--threads"),
                  (["encode", "--model", model, "--data", self.data, "--out", self.path("o.h5"),
                    "--block-rows", "0"], 2, "--block-rows"),
                  (["pca", "--data", self.data, "--components", "-1", "--out", self.path("p.h5")],
                   2, "--components"),
                  (["pca", "--data", self.data, "--components", "2", "--normalize", "max",
                    "--out", self.path("p.h5")], 2, "--normalize")]
        def attempt(case):
            started = time.monotonic()
            rc, _, err = run(case[0], ranks=2, **REFUSAL)
            return rc, err, time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # they mostly wait
            results = list(pool.map(attempt, cases))
        for (args, code, needle), (rc, err, seconds) in zip(cases, results):
            with self.subTest(args=" ".join(args[1:]), code=code):
                self.assert_clean_failure(rc, err, code, needle, seconds, " ".join(args))
                if "row " not in needle:  # bad rows are one rank's; the rest every rank sees
                    self.assertNotIn("rank 0:", err)

    def test_fewer_rows_than_ranks_still_trains(self):
        path = self.path("tiny.h5")
        write(path, rows=3, cols=6)
        for batch in ("10", "2"):
            rc, _, err = run(["train", "--data", path, "--layers", "2", "--batch-size", batch,
                              "--checkpoint", self.path(f"tiny{batch}.h5")], ranks=4)
            self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
