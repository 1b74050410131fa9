#!/usr/bin/python3
"""evaluate: the loss, per-sample errors and reconstructions against numpy; its bad inputs.

    python3 tests/e2e/test_evaluate.py path/to/aetrain
"""
import json
import os
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import forward, run  # noqa: E402


class Evaluate(cli_support.TrainedModelTest):
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

    def test_bad_inputs(self):
        self.assert_fails(["evaluate", "--model", self.model, "--data", self.data,
                           "--per-sample", self.path("same.h5"), "--reconstruct",
                           self.path("same.h5")], 2, "each output needs a file of its own")
        self.assertFalse(os.path.exists(self.path("same.h5")))


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
