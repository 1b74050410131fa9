#!/usr/bin/python3
"""encode, evaluate, pca and inspect: the real binary under real mpirun, checked against numpy.

    python3 tests/e2e/test_commands.py path/to/aetrain
"""
import json
import os
import subprocess
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import forward, run, write  # noqa: E402


class Commands(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.dir0 = cli_support.temp_dir()
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
        with h5py.File(path, "r") as f:
            return f[name][()], dict(f[name].attrs)

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

    def test_evaluate_matches_per_sample_errors_and_numpy(self):
        per, rec = self.path("per.h5"), self.path("rec.h5")
        rc, out, err = run(["evaluate", "--model", self.model, "--data", self.data,
                            "--per-sample", per, "--reconstruct", rec, "--block-rows", "50"],
                           ranks=3)
        self.assertEqual(rc, 0, err)
        result = json.loads(out.strip())
        self.assertEqual(sorted(result), ["mse", "normalization", "normalized_mse", "rows"])
        self.assertEqual(result["normalization"], "none")
        self.assertEqual(result["rows"], 203)
        y = forward(self.model, self.x)
        expect = np.mean((y - self.x.astype(np.float64)) ** 2)
        self.assertAlmostEqual(result["mse"], expect, delta=1e-6 * expect)
        self.assertAlmostEqual(result["normalized_mse"], result["mse"], delta=1e-6 * expect)
        with h5py.File(per, "r") as f:
            errors = f["/per_sample_mse"][()]
            self.assertEqual(f["/per_sample_mse"].attrs["units"], "data")
        self.assertEqual(errors.shape, (203,))
        self.assertAlmostEqual(float(np.mean(errors.astype(np.float64))), result["mse"],
                               delta=1e-6 * expect)
        np.testing.assert_allclose(errors, np.mean((y - self.x) ** 2, axis=1), rtol=1e-4)
        with h5py.File(rec, "r") as f:
            np.testing.assert_allclose(f["/reconstruction"][()], y, rtol=1e-5, atol=1e-6)

    def test_pca_matches_numpy_and_serves_as_a_model(self):
        for ranks in (1, 3):
            pca = self.path(f"pca{ranks}.h5")
            rc, out, err = run(["pca", "--data", self.data, "--components", "4", "--out", pca,
                                "--block-rows", "20"], ranks=ranks)
            self.assertEqual(rc, 0, err)
            self.assertIn("explain", out)
        x = self.x.astype(np.float64)
        centred = x - x.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        with h5py.File(self.path("pca1.h5"), "r") as a, h5py.File(self.path("pca3.h5"), "r") as b:
            self.assertEqual(a.attrs["format"], "aetrain-pca")
            comps = a["pca/components"][()]
            self.assertEqual(comps.shape, (4, 24))
            for c in range(4):
                self.assertAlmostEqual(abs(comps[c] @ vt[c]), 1.0, places=9)
            np.testing.assert_allclose(a["pca/explained_variance"][()], s[:4] ** 2 / 202,
                                       rtol=1e-9)
            np.testing.assert_allclose(a["pca/mean"][()], x.mean(axis=0), atol=1e-12)
            np.testing.assert_allclose(b["pca/components"][()], comps, atol=1e-9)
        pca = self.path("pca1.h5")
        codes_out = self.path("pca_codes.h5")
        rc, _, err = run(["encode", "--model", pca, "--data", self.data, "--out", codes_out],
                         ranks=2)
        self.assertEqual(rc, 0, err)
        np.testing.assert_allclose(self.codes(codes_out)[0], centred @ comps.T, atol=1e-5)
        self.assertEqual(self.codes(codes_out)[1]["model_kind"], "pca")
        rc, out, err = run(["evaluate", "--model", pca, "--data", self.data], ranks=2)
        self.assertEqual(rc, 0, err)
        expect = np.mean((centred - centred @ comps.T @ comps) ** 2)
        self.assertAlmostEqual(json.loads(out)["mse"], expect, delta=1e-5 * expect)

    def test_inspect_every_kind_of_file(self):
        resumed, init = self.path("resumed.h5"), self.path("init.h5")
        args = ["train", "--data", self.data, "--layers", "16,5", "--activation", "tanh",
                "--batch-size", "16"]
        rc, _, err = run(args + ["--epochs", "1", "--checkpoint", resumed], ranks=2)
        self.assertEqual(rc, 0, err)
        rc, _, err = run(args + ["--epochs", "2", "--checkpoint", resumed, "--resume"], ranks=2)
        self.assertEqual(rc, 0, err)
        rc, _, err = run(args + ["--epochs", "1", "--checkpoint", init, "--init-from", self.model],
                         ranks=2)
        self.assertEqual(rc, 0, err)
        pca = self.path("inspect_pca.h5")
        rc, _, err = run(["pca", "--data", self.data, "--components", "2", "--out", pca])
        self.assertEqual(rc, 0, err)
        expect = {self.model: (3, 39), resumed: (2, 26), init: (1, 13)}
        for path, (epoch, step) in expect.items():
            rc, out, err = run(["inspect", path, "--json"], ranks=0)
            self.assertEqual(rc, 0, err)
            info = json.loads(out)
            self.assertEqual(info["kind"], "autoencoder")
            self.assertEqual(info["model"]["encoder_widths"], [16, 5])
            self.assertEqual(info["model"]["parameters"], 24 * 16 + 16 + 16 * 5 + 5 + 5 * 16 + 16 +
                             16 * 24 + 24)
            self.assertEqual((info["train"]["epoch"], info["train"]["global_step"]), (epoch, step))
            self.assertEqual(info["optimizer"]["step"], step)
            self.assertEqual(info["train"]["data_file"], self.data)
            rc, text, err = run(["inspect", path], ranks=0)
            self.assertEqual(rc, 0, err)
            self.assertIn("24-16-5 (tanh, code tanh, output sigmoid)", text)
            self.assertIn(f"global step {step}", text)
        self.assertIn("init-from", json.loads(run(["inspect", init, "--json"], 0)[1])["train"]["config"])
        info = json.loads(run(["inspect", pca, "--json"], ranks=0)[1])
        self.assertEqual((info["kind"], info["pca"]["components"], info["pca"]["rows"]),
                         ("pca", 2, 203))
        self.assertNotIn("train", info)

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
        self.assert_fails(["inspect", self.path("none.h5")], 4, "no such file", ranks=1)
        self.assert_fails(["encode", "--model", self.path("none.h5"), "--data", self.data,
                           "--out", self.path("o.h5")], 4, "no such file")
        other = self.path("other.h5")
        write(other, rows=20, cols=7)
        self.assert_fails(["encode", "--model", self.model, "--data", other, "--out",
                           self.path("o.h5")], 4, "24 columns")
        self.assert_fails(["pca", "--data", self.data, "--components", "25", "--out",
                           self.path("p.h5")], 2, "--components 25")
        self.assert_fails(["encode", "--model", self.model, "--data", self.data, "--out",
                           self.path("no/dir/o.h5")], 2, "does not exist")
        self.assert_fails(["evaluate", "--model", self.model, "--data", self.data,
                           "--per-sample", self.path("same.h5"), "--reconstruct",
                           self.path("same.h5")], 2, "each output needs a file of its own")
        pca = self.path("resume_pca.h5")
        rc, _, err = run(["pca", "--data", self.data, "--components", "3", "--out", pca])
        self.assertEqual(rc, 0, err)
        self.assert_fails(["train", "--data", self.data, "--layers", "3", "--activation",
                           "linear", "--output-activation", "linear", "--checkpoint", pca,
                           "--resume", "--epochs", "2"], 4, "use --init-from")
        self.assertFalse(os.path.exists(self.path("o.h5")))


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
