#!/usr/bin/python3
"""pca: the components and variances against numpy on 1 and 3 ranks, the PCA model served to
encode and evaluate; its bad inputs.

    python3 tests/e2e/test_pca.py path/to/aetrain
"""
import json
import os
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import run  # noqa: E402


class Pca(cli_support.TrainedModelTest):
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

    def test_bad_inputs(self):
        self.assert_fails(["pca", "--data", self.data, "--components", "25", "--out",
                           self.path("p.h5")], 2, "--components 25")
        self.assertFalse(os.path.exists(self.path("p.h5")))
        pca = self.path("resume_pca.h5")
        rc, _, err = run(["pca", "--data", self.data, "--components", "3", "--out", pca])
        self.assertEqual(rc, 0, err)
        self.assert_fails(["train", "--data", self.data, "--layers", "3", "--activation",
                           "linear", "--output-activation", "linear", "--checkpoint", pca,
                           "--resume", "--epochs", "2"], 4, "use --init-from")


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
