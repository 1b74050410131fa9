#!/usr/bin/python3
"""Data at scale, with the real binary under real mpirun: many files (lists, globs, @lists, a
virtual dataset) against their concatenation, bit for bit; chunked, gzip-compressed and
contiguous copies of one dataset giving the same batches; each stored byte read once per epoch
for any number of ranks; memory within --data-memory for data ten times the ranks' budget;
exact resume in the middle of a window; and the bad inputs of the data path.

    python3 tests/e2e/test_train_data.py path/to/aetrain
"""
import json
import os
import re
import shutil
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import forward, metrics, run, weights  # noqa: E402

ROWS, COLS, PARTS = 2000, 32, 4  # PARTS files of ROWS / PARTS rows
TRAIN = ["--layers", "16,4", "--batch-size", "50", "--epochs", "2", "--seed", "1"]
WINDOWS = ["--window-rows", "600", "--data-block-rows", "100"]  # 12 steps a window


class Data(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.d = cli_support.temp_dir()
        cls.x = np.random.default_rng(5).random((ROWS, COLS)).astype(np.float32)
        p = lambda name: os.path.join(cls.d, name)
        with h5py.File(p("all.h5"), "w") as f:
            f["/train"] = cls.x
        with h5py.File(p("chunked.h5"), "w") as f:
            f.create_dataset("/train", data=cls.x, chunks=(100, COLS))
        with h5py.File(p("gzip.h5"), "w") as f:
            f.create_dataset("/train", data=cls.x, chunks=(100, COLS), compression="gzip")
        n = ROWS // PARTS
        cls.parts = [p(f"part{i}.h5") for i in range(PARTS)]
        for i, path in enumerate(cls.parts):
            with h5py.File(path, "w") as f:
                f["/train"] = cls.x[i * n:(i + 1) * n]
        with open(p("list.txt"), "w") as f:
            f.write("# the parts, one a line\n" + "\n".join(cls.parts) + "\n\n")
        layout = h5py.VirtualLayout(shape=(ROWS, COLS), dtype=np.float32)
        for i, path in enumerate(cls.parts):
            layout[i * n:(i + 1) * n] = h5py.VirtualSource(path, "/train", shape=(n, COLS))
        with h5py.File(p("virtual.h5"), "w") as f:
            f.create_virtual_dataset("/train", layout)
        cls.p = staticmethod(p)

    def train(self, data, extra=(), ranks=2, name="ck.h5"):
        ck, m = self.path(name), self.path(name + ".jsonl")
        for f in (ck, m):
            if os.path.exists(f):
                os.remove(f)
        rc, out, err = run(["train", "--data"] + data + TRAIN + list(extra) +
                           ["--checkpoint", ck, "--metrics", m], ranks=ranks)
        self.assertEqual(rc, 0, err)
        return ck, metrics(m)

    def assert_same_weights(self, a, b):
        wa, wb = weights(a), weights(b)
        self.assertEqual(sorted(wa), sorted(wb))
        for name in wa:
            self.assertTrue(np.array_equal(wa[name], wb[name]), name)

    # --- many files ---------------------------------------------------------------------------

    def test_many_files_train_as_their_concatenation(self):
        glob = os.path.join(self.d, "part*.h5")
        for extra in ([], WINDOWS):  # every row in memory, and windows of blocks
            one, m1 = self.train([self.p("all.h5")], extra, name="one.h5")
            self.assertEqual(m1[0]["data"]["in_memory"], not extra)
            for data in (self.parts, [glob], ["@" + self.p("list.txt")], [self.p("virtual.h5")]):
                many, m = self.train(data, extra, name="many.h5")
                self.assert_same_weights(one, many)
                self.assertEqual([e.get("loss") for e in m if e["event"] == "epoch"],
                                 [e.get("loss") for e in m1 if e["event"] == "epoch"])
        with h5py.File(many, "r") as f:  # the checkpoint records the files and their rows
            self.assertEqual(f["train/sources"][-1]["rows"], ROWS)  # the virtual dataset
        part, _ = self.train(self.parts, name="parts.h5")
        with h5py.File(part, "r") as f:
            sources = f["train/sources"][()]
        self.assertEqual([s["file"].decode() for s in sources], self.parts)
        self.assertEqual([int(s["first_row"]) for s in sources], [0, 500, 1000, 1500])
        self.assertEqual([int(s["rows"]) for s in sources], [500] * PARTS)
        rc, out, err = run(["inspect", part, "--json"])  # and inspect shows them
        self.assertEqual(rc, 0, err)
        self.assertEqual([(s["file"], s["first_row"], s["rows"])
                          for s in json.loads(out)["train"]["sources"]],
                         [(f, 500 * i, 500) for i, f in enumerate(self.parts)])
        rc, out, err = run(["inspect", part])
        self.assertEqual(rc, 0, err)
        self.assertIn(f"{self.parts[0]}:/train and 3 more files, 2000 rows", out)

    def test_encode_and_evaluate_many_files_as_their_concatenation(self):
        model, _ = self.train([self.p("all.h5")], name="model.h5")
        out1, out2 = self.path("codes1.h5"), self.path("codes2.h5")
        for data, out in (([self.p("all.h5")], out1), (self.parts, out2)):
            rc, _, err = run(["encode", "--model", model, "--data"] + data +
                             ["--out", out, "--block-rows", "70"], ranks=3)
            self.assertEqual(rc, 0, err)
        with h5py.File(out1, "r") as a, h5py.File(out2, "r") as b:
            self.assertTrue(np.array_equal(a["codes"][()], b["codes"][()]))
            np.testing.assert_allclose(b["codes"][()], forward(model, self.x, True),
                                       rtol=1e-5, atol=1e-6)
            table = b[b["codes"].attrs["sources"]][()]
            self.assertEqual([(s["file"].decode(), s["dataset"].decode(), int(s["first_row"]),
                               int(s["rows"])) for s in table],
                             [(f, "/train", 500 * i, 500) for i, f in enumerate(self.parts)])
        results = []
        for data in ([self.p("all.h5")], self.parts):
            per = self.path(f"per{len(results)}.h5")
            rc, out, err = run(["evaluate", "--model", model, "--data"] + data +
                               ["--per-sample", per], ranks=2)
            self.assertEqual(rc, 0, err)
            with h5py.File(per, "r") as f:
                results.append((json.loads(out)["mse"], f["per_sample_mse"][()]))
        self.assertEqual(results[0][0], results[1][0])
        self.assertTrue(np.array_equal(results[0][1], results[1][1]))

    # --- chunked and compressed data ----------------------------------------------------------

    def test_chunked_compressed_and_contiguous_give_the_same_batches(self):
        ref, mref = self.train([self.p("all.h5")], WINDOWS, name="contiguous.h5")
        for name in ("chunked.h5", "gzip.h5"):
            ck, m = self.train([self.p(name)], WINDOWS, name="c_" + name)
            self.assert_same_weights(ref, ck)
        # Left to choose, the block follows the chunks: whole chunks (of 100 rows), never split.
        _, m = self.train([self.p("gzip.h5")], [], name="auto.h5")
        self.assertEqual(m[0]["data"]["block_rows"] % 100, 0)

    def test_the_default_layout_does_not_follow_the_memory(self):
        # The same command on nodes with more or less memory (and on other rank counts) gives
        # the same layout, hence the same batches and weights; memory only refuses.
        runs = []
        for ranks, memory in ((2, []), (2, ["--data-memory", "8MiB"]),
                              (3, ["--data-memory", "64MiB"]), (1, ["--data-memory", "1GiB"])):
            ck, m = self.train([self.p("chunked.h5")], memory, ranks=ranks, name=f"m{ranks}.h5")
            runs.append((ck, (m[0]["data"]["block_rows"], m[0]["data"]["window_rows"])))
        self.assertEqual(len({layout for _, layout in runs}), 1, runs)
        self.assertEqual(runs[0][1][1], ROWS)
        for ck, _ in runs[1:]:
            wa, wb = weights(runs[0][0]), weights(ck)
            for name in wa:  # the same batches: equal up to the sums' order over ranks
                np.testing.assert_allclose(wb[name], wa[name], rtol=1e-4, atol=1e-5)
        # A budget too small names the least that works, and that remedy works.
        line = self.assert_fails(["train", "--data", self.p("chunked.h5")] + TRAIN +
                                 ["--data-memory", "2MiB"], 2,
                                 "every row of " + self.p("chunked.h5") + ":/train in one window")
        least = re.search(r"give --data-memory (\d+MiB)", line).group(1)
        self.train([self.p("chunked.h5")], ["--data-memory", least], name="least.h5")

    def test_each_stored_byte_is_read_once_per_epoch_for_any_rank_count(self):
        stored = {}
        for name in ("gzip.h5", "all.h5"):
            with h5py.File(self.p(name), "r") as f:
                stored[name] = f["/train"].id.get_storage_size()
        for name, size in stored.items():
            for ranks in (1, 2, 4):
                _, m = self.train([self.p(name)], WINDOWS, ranks=ranks, name=f"r{ranks}.h5")
                end = m[-1]
                self.assertFalse(m[0]["data"]["in_memory"])
                per_epoch = end["read_bytes"]["sum"] / 2
                # The stored bytes plus HDF5's metadata (a few KiB per rank); reading strided
                # rows of a chunked file, every rank would read it all: ranks times as much.
                self.assertGreater(per_epoch, 0.99 * size, (name, ranks))
                self.assertLess(per_epoch, 1.1 * size + 64e3 * ranks, (name, ranks))

    # --- memory -------------------------------------------------------------------------------

    @unittest.skipIf(os.environ.get("AETRAIN_TEST_SANITIZED"),
                     "AddressSanitizer's quarantine holds freed memory: measured in Release")
    def test_memory_stays_within_the_budget_for_data_ten_times_the_budget(self):
        # 8 MiB over 2 ranks against 80 MB of rows, and a quarter of those rows: what the data
        # adds to each rank stays within the budget and does not grow with the rows. (Blocks of
        # 250 rows: 100 kB; 3 MiB of the budget is the libraries'.)
        big = self.path("big.h5")
        rng = np.random.default_rng(9)
        with h5py.File(big, "w") as f:
            d = f.create_dataset("/train", (200000, 100), dtype=np.float32)
            for i in range(0, 200000, 50000):
                d[i:i + 50000] = rng.random((50000, 100), dtype=np.float32)
            f["/quarter"] = d[:50000]
        growth = {}
        for dataset in ("/train", "/quarter"):
            m = self.path("mem.jsonl")
            if os.path.exists(m):
                os.remove(m)
            args = ["train", "--data", big, "--dataset", dataset, "--layers", "16",
                    "--batch-size", "50", "--data-memory", "4MiB", "--data-block-rows", "250"]
            # The budget never chooses the windows: the default (every row) is refused, naming
            # the most window rows that fit, and that remedy runs within the budget.
            line = self.assert_fails(args, 2, "more than the 4.0 MiB of --data-memory")
            fit = re.search(r"--window-rows (\d+) \(the most that fit", line)
            self.assertIsNotNone(fit, line)
            rc, out, err = run(args + ["--window-rows", fit.group(1), "--metrics", m], ranks=2)
            self.assertEqual(rc, 0, err)
            self.assertIn("windows of at most", out)
            end = metrics(m)[-1]
            self.assertEqual(end["data_budget_mib"], 4)
            growth[dataset] = end["peak_memory_mib"]["max"] - end["memory_before_data_mib"]["min"]
            self.assertLessEqual(growth[dataset], 4.0, dataset)
        self.assertLess(abs(growth["/train"] - growth["/quarter"]), 1.0, growth)

    # --- resume -------------------------------------------------------------------------------

    def test_resume_in_the_middle_of_a_window(self):
        # Checkpoints every 7 steps (windows of 12 steps): step 7 is inside the first window.
        whole, _ = self.train(self.parts, WINDOWS + ["--checkpoint-every", "7", "--keep", "20"],
                              name="whole.h5")
        part = self.path("part.h5")
        shutil.copy(whole + ".step7", part)
        rc, out, err = run(["train", "--data"] + self.parts + TRAIN + WINDOWS +
                           ["--checkpoint", part, "--resume"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertIn("resuming", out)
        self.assert_same_weights(whole, part)  # bit for bit on the same ranks
        # On 3 ranks: the same batches (and the layout from the checkpoint, given or not).
        shutil.copy(whole + ".step7", part)
        rc, _, err = run(["train", "--data"] + self.parts + TRAIN +
                         ["--checkpoint", part, "--resume"], ranks=3)
        self.assertEqual(rc, 0, err)
        wa, wb = weights(whole), weights(part)
        for name in wa:
            np.testing.assert_allclose(wb[name], wa[name], rtol=1e-4, atol=1e-5, err_msg=name)
        # Another list of files, or another layout, is refused.
        shutil.copy(whole + ".step7", part)
        self.assert_fails(["train", "--data"] + self.parts[:3] + TRAIN +
                          ["--checkpoint", part, "--resume"], 2,
                          "resuming needs the same files and rows")
        self.assert_fails(["train", "--data"] + self.parts + TRAIN +
                          ["--window-rows", "800", "--checkpoint", part, "--resume"], 2,
                          "was trained with --window-rows 600")

    # --- bad input ----------------------------------------------------------------------------

    def test_bad_input(self):
        other, ints = self.path("other.h5"), self.path("ints.h5")
        with h5py.File(other, "w") as f:
            f["/train"] = np.zeros((10, COLS + 1), np.float32)
        with h5py.File(ints, "w") as f:
            f["/train"] = np.zeros((10, COLS), np.int32)
        text = self.path("text.h5")
        with open(text, "w") as f:
            f.write("not HDF5\n")
        missing = self.path("missing.h5")
        with open(self.path("bad_list.txt"), "w") as f:
            f.write(self.parts[0] + "\n" + missing + "\n")
        train = ["train", "--layers", "4", "--data"]
        cases = [
            (self.parts[:1] + [missing], 3, missing + ": no such file"),
            (self.parts[:1] + [text], 3, text + ": not an HDF5 file"),
            (self.parts[:1] + [other], 3,
             other + ": /train: has 33 columns; " + self.parts[0] + ": /train has 32"),
            ([self.path("nothing*.h5")], 3, "no file matches '" + self.path("nothing*.h5")),
            (["@" + self.path("no_list.txt")], 3, "cannot read this list of files"),
            (["@" + self.path("bad_list.txt")], 3, missing + ": no such file"),
        ]
        for data, code, needle in cases:
            self.assert_fails(train + data, code, needle)
        self.assert_fails(train + self.parts[:1] + [ints], 3,
                          ints + ": /train: holds 32-bit integer values")
        for data in ([missing], self.parts):  # encode and evaluate read the same way
            self.assert_fails(["encode", "--model", missing, "--data"] + data + ["--out",
                              self.path("x.h5")], 4, missing)
        # A budget that cannot hold one batch and one block names the least that works.
        self.assert_fails(train + [self.p("all.h5"), "--data-memory", "1MiB",
                                   "--batch-size", "50"], 2,
                          "more than the 1.0 MiB of --data-memory; give --data-memory")
        self.assert_fails(train + [self.p("all.h5"), "--data-memory", "1MiB", "--window-rows",
                                   "1000", "--data-block-rows", "100"], 2,
                          "--window-rows 1000 needs")
        self.assert_fails(train + [self.p("all.h5"), "--window-rows", "20",
                                   "--batch-size", "50"], 2,
                          "--window-rows 20 is too small")
        self.assert_fails(train + [self.p("all.h5"), "--data-memory", "lots"], 2,
                          "not a size such as 512MiB")


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
