#!/usr/bin/python3
"""encode: codes that equal a plain forward pass on 1-4 ranks, outputs kept unless
--overwrite, codes into another file, the plotting scripts of jobs/; its bad inputs.

    python3 tests/e2e/test_encode.py path/to/aetrain
"""
import os
import subprocess
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import forward, run, write  # noqa: E402


class Encode(cli_support.TrainedModelTest):
    def test_codes_equal_a_plain_forward_pass_for_one_to_four_ranks(self):
        expect = forward(self.model, self.x, encoder_only=True)
        for ranks in (1, 2, 3, 4):
            out = self.path(f"codes{ranks}.h5")
            rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out", out,
                              "--block-rows", "17"], ranks=ranks)
            self.assertEqual(rc, 0, err)
            codes, attrs = self.codes(out)
            self.assertEqual(codes.shape, (203, 5))
            self.assertEqual(codes.dtype, np.float32)
            np.testing.assert_allclose(codes, expect, rtol=1e-5, atol=1e-6, err_msg=f"{ranks}")
            self.assertEqual(attrs["model"], self.model)
            self.assertEqual(attrs["model_kind"], "autoencoder")
            self.assertEqual(attrs["model_global_step"], 39)  # 3 epochs of ceil(203 / 16)
            self.assertEqual((attrs["data_file"], attrs["dataset"]), (self.data, "/train"))
            self.assertFalse(os.path.exists(out + ".tmp"))

    def test_fewer_rows_than_ranks_and_uneven_splits(self):
        for dataset, rows in (("/small", 3), ("/ten", 10)):
            for ranks in (3, 4):
                out = self.path(f"codes{dataset[1:]}{ranks}.h5")
                rc, _, err = run(["encode", "--model", self.model, "--data", self.data,
                                  "--dataset", dataset, "--out", out], ranks=ranks)
                self.assertEqual(rc, 0, err)
                np.testing.assert_allclose(self.codes(out)[0],
                                           forward(self.model, self.x[:rows], True),
                                           rtol=1e-5, atol=1e-6)

    def test_existing_output_is_kept_unless_overwrite(self):
        out = self.path("keep.h5")
        rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out", out])
        self.assertEqual(rc, 0, err)
        with h5py.File(out, "a") as f:
            f["/codes"][0, 0] = 1234.0  # mark it
            f["/other"] = np.arange(3)
        self.assert_fails(["encode", "--model", self.model, "--data", self.data, "--out", out],
                          2, "--overwrite")
        self.assertEqual(self.codes(out)[0][0, 0], 1234.0)
        rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out", out,
                          "--overwrite"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertNotEqual(self.codes(out)[0][0, 0], 1234.0)
        with h5py.File(out, "r") as f:
            # nothing else touched; the codes' table of sources replaced with them
            self.assertEqual(sorted(f.keys()), ["codes", "codes_sources", "other"])
            self.assertEqual(f["codes"].attrs["sources"], "/codes_sources")
            self.assertEqual(len(f["codes_sources"]), 1)

    def test_codes_into_another_file_than_the_input(self):
        # The input file itself is refused (tests/e2e/test_outputs.py); a dataset in a group of
        # another existing file is fine.
        out = self.path("derived.h5")
        with h5py.File(out, "w") as f:
            f["other"] = np.arange(3)
        rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out", out,
                          "--out-dataset", "/derived/codes"], ranks=2)
        self.assertEqual(rc, 0, err)
        np.testing.assert_allclose(self.codes(out, "/derived/codes")[0],
                                   forward(self.model, self.x, True), rtol=1e-5, atol=1e-6)

    def test_pictures(self):
        jobs = os.path.join(cli_support.ROOT, "jobs")
        metrics, codes = self.path("m.jsonl"), self.path("codes.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "8,2", "--epochs", "3",
                          "--val-dataset", "/train", "--log-every", "5", "--metrics", metrics,
                          "--checkpoint", self.path("pic.h5")], ranks=2)
        self.assertEqual(rc, 0, err)
        rc, _, err = run(["encode", "--model", self.path("pic.h5"), "--data", self.data,
                          "--out", codes], ranks=2)
        self.assertEqual(rc, 0, err)
        rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--out", codes,
                          "--out-dataset", "/wide"], ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(self.data, "a") as f:
            if "labels" not in f:
                f["labels"] = np.arange(203) % 4
        loss_png, codes_png = self.path("loss.png"), self.path("codes.png")
        for cmd in ([os.path.join(jobs, "plot_loss.py"), metrics, loss_png],
                    [os.path.join(jobs, "plot_codes.py"), codes_png, "--labels",
                     self.data + ":/labels", codes + ":/codes=two wide",
                     codes + ":/wide=five wide, projected"]):
            p = subprocess.run(cmd, capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
        for png in (loss_png, codes_png):
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_bad_inputs(self):
        self.assert_fails(["encode", "--model", self.path("none.h5"), "--data", self.data,
                           "--out", self.path("o.h5")], 4, "no such file")
        other = self.path("other.h5")
        write(other, rows=20, cols=7)
        self.assert_fails(["encode", "--model", self.model, "--data", other, "--out",
                           self.path("o.h5")], 4, "24 columns")
        self.assert_fails(["encode", "--model", self.model, "--data", self.data, "--out",
                           self.path("no/dir/o.h5")], 2, "does not exist")
        self.assertFalse(os.path.exists(self.path("o.h5")))


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
