#!/usr/bin/python3
"""--normalize, integer and half-precision data, range warnings and model-only files: the real
binary under real mpirun, checked against numpy.

    python3 tests/e2e/test_normalize.py path/to/aetrain
"""
import json
import os
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import (forward, normalization, normalize, our_errors, reseal, run,  # noqa: E402
                         weights)


def physical(rows, seed, shift=0.0):
    """Rows in physical units: a nonlinear 3-D manifold in 12 columns of scales 0.01 to 1000
    and offsets far from zero, plus one constant column (index 5), as float64."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, 3))
    mix = np.random.default_rng(99).standard_normal((3, 12))  # the same manifold for every file
    x = np.tanh(z @ mix) + 0.02 * rng.standard_normal((rows, 12))
    scales = np.logspace(-2, 3, 12)
    offsets = np.linspace(-5e3, 1e5, 12)
    x = x * scales + offsets + shift * scales
    x[:, 5] = 273.15
    return x


def warnings(stderr):
    return [l for l in stderr.splitlines() if l.startswith("aetrain: warning:")]


class Normalize(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.dir0 = cli_support.temp_dir()
        cls.data = os.path.join(cls.dir0, "physical.h5")
        cls.x = physical(1003, seed=1)  # 1003 rows: uneven over 2, 3 and 4 ranks
        cls.test_x = physical(400, seed=2, shift=0.7)  # shifted: its own statistics differ
        with h5py.File(cls.data, "w") as f:
            f["train"] = cls.x.astype(np.float32)
            f["train64"] = cls.x
            f["test"] = cls.test_x.astype(np.float32)
        # One standardized model that several tests use.
        cls.model = os.path.join(cls.dir0, "standard.h5")
        rc, out, err = run(["train", "--data", cls.data, "--layers", "16,3", "--activation",
                            "tanh", "--normalize", "standard", "--epochs", "4", "--batch-size",
                            "32", "--lr", "0.003", "--checkpoint", cls.model], ranks=2)
        assert rc == 0, err
        cls.train_out, cls.train_err = out, err

    def train(self, args, ranks=2, name="ck.h5"):
        ck = self.path(name)
        rc, out, err = run(["train"] + args + ["--checkpoint", ck], ranks=ranks)
        self.assertEqual(rc, 0, err)
        return ck, out, err

    # --- the statistics ----------------------------------------------------------------------

    def test_statistics_match_numpy_for_one_to_four_ranks(self):
        for dataset, x in (("/train", self.x.astype(np.float32).astype(np.float64)),
                           ("/train64", self.x)):
            mean, std = x.mean(axis=0), x.std(axis=0)
            lo, hi = x.min(axis=0), x.max(axis=0)
            for ranks in (1, 2, 3, 4):
                for kind in ("standard", "minmax"):
                    with self.subTest(dataset=dataset, ranks=ranks, kind=kind):
                        ck, _, err = self.train(
                            ["--data", self.data, "--dataset", dataset, "--layers", "2",
                             "--batch-size", "7", "--normalize", kind],
                            ranks=ranks, name=f"stats{dataset[1:]}{ranks}{kind}.h5")
                        with h5py.File(ck, "r") as f:
                            g = f["normalization"]
                            self.assertEqual(g.attrs["kind"], kind)
                            self.assertEqual(g.attrs["rows"], 1003)
                            self.assertEqual(g["offset"].dtype, np.float64)
                            offset, scale = g["offset"][()], g["scale"][()]
                        # The constant column: its value, unscaled; and one warning about it.
                        self.assertEqual((offset[5], scale[5]), (x[0, 5], 1.0))
                        self.assertEqual(len([w for w in warnings(err) if "1 of 12 columns is "
                                              "constant" in w]), 1, err)
                        keep = np.arange(12) != 5
                        if kind == "standard":
                            np.testing.assert_allclose(offset[keep], mean[keep], rtol=1e-13)
                            np.testing.assert_allclose(scale[keep], std[keep], rtol=1e-10)
                        else:
                            np.testing.assert_array_equal(offset[keep], lo[keep])
                            np.testing.assert_array_equal(scale[keep], (hi - lo)[keep])

    def test_pca_normalize_fits_the_standardized_columns(self):
        pca = self.path("pca.h5")
        rc, out, err = run(["pca", "--data", self.data, "--dataset", "/train64", "--normalize",
                            "standard", "--components", "3", "--out", pca, "--block-rows", "100"],
                           ranks=3)
        self.assertEqual(rc, 0, err)
        self.assertIn("normalized: standard", out)
        offset, scale = normalization(pca)
        keep = np.arange(12) != 5
        np.testing.assert_allclose(offset[keep], self.x.mean(axis=0)[keep], rtol=1e-13)
        np.testing.assert_allclose(scale[keep], self.x.std(axis=0)[keep], rtol=1e-10)
        z = (self.x - offset) / scale
        _, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        with h5py.File(pca, "r") as f:
            comps = f["pca/components"][()]
            np.testing.assert_allclose(f["pca/explained_variance"][()], s[:3] ** 2 / 1002,
                                       rtol=1e-9)
        for c in range(3):
            self.assertAlmostEqual(abs(comps[c] @ vt[c]), 1.0, places=9)
        # encode applies the PCA file's statistics to other data, not that data's own.
        codes = self.path("pca_codes.h5")
        rc, _, err = run(["encode", "--model", pca, "--data", self.data, "--dataset", "/test",
                          "--out", codes], ranks=2)
        self.assertEqual(rc, 0, err)
        zt = (self.test_x.astype(np.float32) - offset) / scale
        with h5py.File(codes, "r") as f:
            np.testing.assert_allclose(f["codes"][()], (zt - z.mean(axis=0)) @ comps.T,
                                       rtol=1e-4, atol=1e-4)

    # --- using a normalized model ------------------------------------------------------------

    def test_the_start_line_and_metrics_say_what_was_done(self):
        self.assertIn("output linear: the default with --normalize standard", self.train_out)
        self.assertIn("normalization standard, losses in normalized units", self.train_out)
        m = self.path("m.jsonl")
        self.train(["--data", self.data, "--layers", "4", "--normalize", "minmax", "--metrics", m])
        start = cli_support.metrics(m)[0]
        self.assertEqual(start["normalization"], {"kind": "minmax", "rows": 1003})
        self.assertEqual(start["loss_units"], "normalized")
        self.assertEqual(start["model"]["output_activation"], "sigmoid")  # [0, 1] fits a sigmoid
        # An explicit --output-activation wins over the default.
        ck, out, _ = self.train(["--data", self.data, "--layers", "4", "--normalize", "standard",
                                 "--output-activation", "tanh"], name="tanh.h5")
        self.assertNotIn("the default with", out)
        with h5py.File(ck, "r") as f:
            self.assertEqual(f["model"].attrs["output_activation"], "tanh")
            self.assertEqual(f.attrs["format_version"], 5)

    def test_encode_and_evaluate_apply_the_models_statistics(self):
        codes, per, rec = self.path("codes.h5"), self.path("per.h5"), self.path("rec.h5")
        rc, _, err = run(["encode", "--model", self.model, "--data", self.data, "--dataset",
                          "/test", "--out", codes, "--block-rows", "33"], ranks=3)
        self.assertEqual(rc, 0, err)
        x = self.test_x.astype(np.float32).astype(np.float64)
        z = normalize(self.model, x)
        self.assertGreater(np.abs(z.mean(axis=0)).max(), 0.3)  # the test file's own stats differ
        with h5py.File(codes, "r") as f:
            np.testing.assert_allclose(f["codes"][()], forward(self.model, z, encoder_only=True),
                                       rtol=1e-5, atol=1e-5)
        rc, out, err = run(["evaluate", "--model", self.model, "--data", self.data, "--dataset",
                            "/test", "--per-sample", per, "--reconstruct", rec,
                            "--block-rows", "50"], ranks=2)
        self.assertEqual(rc, 0, err)
        result = json.loads(out)
        offset, scale = normalization(self.model)
        y = forward(self.model, z)
        restored = y * scale + offset
        self.assertEqual(result["normalization"], "standard")
        self.assertEqual(result["rows"], 400)
        expect_norm = np.mean((y - z) ** 2)
        expect = np.mean((restored - x) ** 2)
        self.assertAlmostEqual(result["normalized_mse"], expect_norm, delta=1e-5 * expect_norm)
        self.assertAlmostEqual(result["mse"], expect, delta=1e-5 * expect)
        self.assertGreater(result["mse"] / result["normalized_mse"], 100)  # really other units
        with h5py.File(per, "r") as f:
            self.assertEqual(f["per_sample_mse"].attrs["units"], "normalized")
            np.testing.assert_allclose(f["per_sample_mse"][()], np.mean((y - z) ** 2, axis=1),
                                       rtol=1e-4)
        with h5py.File(rec, "r") as f:  # in the data's units, float32 like the data
            self.assertEqual(f["reconstruction"].dtype, np.float32)
            error = np.abs(f["reconstruction"][()] - restored)
            # float32 rounding of the value, plus the model's float32 arithmetic per column
            self.assertTrue(np.all(error <= 1.2e-7 * np.abs(restored) + 1e-4 * scale),
                            (error / (1.2e-7 * np.abs(restored) + 1e-4 * scale)).max())
        # Float64 data gets float64 reconstructions: a float32 copy of values near 1e5 with a
        # spread of 0.01 would lose their precision.
        rc, _, err = run(["evaluate", "--model", self.model, "--data", self.data, "--dataset",
                          "/train64", "--reconstruct", rec, "--overwrite"], ranks=2)
        self.assertEqual(rc, 0, err)
        restored = forward(self.model, normalize(self.model, self.x)) * scale + offset
        with h5py.File(rec, "r") as f:
            self.assertEqual(f["reconstruction"].dtype, np.float64)
            np.testing.assert_allclose((f["reconstruction"][()] - restored) / scale, 0,
                                       atol=1e-4)

    def test_inspect_shows_the_normalization(self):
        rc, text, err = run(["inspect", self.model], ranks=0)
        self.assertEqual(rc, 0, err)
        self.assertIn("normalization: standard, statistics of 1003 rows", text)
        rc, out, err = run(["inspect", self.model, "--json"], ranks=0)
        info = json.loads(out)["normalization"]
        offset, scale = normalization(self.model)
        self.assertEqual((info["kind"], info["rows"]), ("standard", 1003))
        self.assertEqual(info["offset"], list(offset))  # exact: shortest round-trip decimals
        self.assertEqual(info["scale"], list(scale))

    def test_a_linear_autoencoder_reaches_pca_in_physical_units(self):
        # Rank-4 data plus a little noise, mean far from zero, columns scaled 0.01 to 1000; a
        # 3-wide linear code at its optimum spans PCA's top 3 axes of the standardized columns.
        rng = np.random.default_rng(7)
        basis = rng.standard_normal((4, 10))
        x = (rng.standard_normal((512, 4)) * [3.0, 2.0, 1.0, 0.5]) @ basis
        x = (x + 0.05 * rng.standard_normal((512, 10))) * np.logspace(-2, 3, 10) + 1e4
        path = self.path("low_rank.h5")
        with h5py.File(path, "w") as f:
            f["x"] = x
        ck, _, _ = self.train(["--data", path, "--dataset", "/x", "--layers", "3",
                               "--activation", "linear", "--normalize", "standard",
                               "--batch-size", "512", "--epochs", "2000", "--lr", "0.01"],
                              name="linear.h5")
        pca = self.path("low_rank_pca.h5")
        rc, _, err = run(["pca", "--data", path, "--dataset", "/x", "--components", "3",
                          "--normalize", "standard", "--out", pca], ranks=2)
        self.assertEqual(rc, 0, err)
        mse = {}
        for name, model in (("ae", ck), ("pca", pca)):
            rc, out, err = run(["evaluate", "--model", model, "--data", path, "--dataset", "/x"],
                               ranks=2)
            self.assertEqual(rc, 0, err)
            mse[name] = json.loads(out)["normalized_mse"]
        self.assertGreater(mse["pca"], 1e-3)  # not a trivial fit
        self.assertGreaterEqual(mse["ae"], mse["pca"] * (1 - 1e-3))  # PCA is optimal
        self.assertLessEqual(mse["ae"], mse["pca"] * 1.01, mse)

    # --- data types --------------------------------------------------------------------------

    def test_integer_and_half_precision_data(self):
        rng = np.random.default_rng(3)
        path = self.path("types.h5")
        pixels = rng.integers(0, 256, (300, 16), dtype=np.uint8)
        pixels[:, 0] = 0  # never lit
        counts = rng.integers(-500, 30000, (300, 16), dtype=np.int16)
        half = rng.random((300, 16)).astype(np.float16)
        with h5py.File(path, "w") as f:
            f["pixels"], f["counts"], f["half"] = pixels, counts, half
        for dataset, kind in (("/pixels", "8-bit unsigned integer"), ("/counts", "16-bit integer")):
            self.assert_fails(["train", "--data", path, "--dataset", dataset, "--layers", "4"], 3,
                              f"holds {kind} values; integer data needs a normalization: "
                              "--normalize minmax")
        ck, _, _ = self.train(["--data", path, "--dataset", "/pixels", "--layers", "4",
                               "--normalize", "minmax"], name="pixels.h5")
        offset, scale = normalization(ck)
        np.testing.assert_array_equal(offset, pixels.min(axis=0))
        np.testing.assert_array_equal(scale[1:], np.ptp(pixels, axis=0)[1:].astype(np.float64))
        self.assertEqual(scale[0], 1.0)
        codes = self.path("pixel_codes.h5")
        rc, _, err = run(["encode", "--model", ck, "--data", path, "--dataset", "/pixels",
                          "--out", codes], ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(codes, "r") as f:
            np.testing.assert_allclose(f["codes"][()],
                                       forward(ck, normalize(ck, pixels), encoder_only=True),
                                       rtol=1e-5, atol=1e-6)
        ck, _, _ = self.train(["--data", path, "--dataset", "/counts", "--layers", "4",
                               "--normalize", "standard"], name="counts.h5")
        np.testing.assert_allclose(normalization(ck)[0], counts.mean(axis=0), rtol=1e-12)
        # float16 is read as float32 without a normalization: losses match a float32 copy.
        with h5py.File(path, "a") as f:
            f["half32"] = half.astype(np.float32)
        ends = []
        for dataset in ("/half", "/half32"):
            ck, _, _ = self.train(["--data", path, "--dataset", dataset, "--layers", "4"],
                                  name=f"{dataset[1:]}.h5")
            ends.append(weights(ck))
        for name, w in ends[1].items():
            np.testing.assert_array_equal(ends[0][name], w, name)

    # --- warnings ----------------------------------------------------------------------------

    def test_a_warning_when_the_output_cannot_reach_the_data(self):
        unit = self.path("unit.h5")
        cli_support.write(unit, rows=200, cols=12)  # [0, 1)
        cases = [  # (options, warned, text in the warning)
            (["--data", self.data], True, "a sigmoid output produces only [0, 1]"),
            (["--data", self.data, "--output-activation", "tanh"], True, "--normalize minmax"),
            (["--data", self.data, "--normalize", "standard", "--output-activation", "sigmoid"],
             True, "after --normalize standard, but a sigmoid output"),
            (["--data", self.data, "--normalize", "minmax"], False, ""),
            (["--data", self.data, "--normalize", "standard"], False, ""),
            (["--data", unit], False, ""),
            (["--data", unit, "--output-activation", "tanh"], False, ""),
        ]
        for i, (args, warned, needle) in enumerate(cases):
            with self.subTest(args=" ".join(args)):
                _, _, err = self.train(args + ["--layers", "4", "--epochs", "1"],
                                       name=f"warn{i}.h5")
                found = [w for w in warnings(err) if "cannot fit it" in w]
                self.assertEqual(len(found), 1 if warned else 0, err)
                if warned:
                    self.assertIn(needle, found[0])
                    self.assertIn("the training data spans [", found[0])

    # --- model files -------------------------------------------------------------------------

    def model_only(self, name, normalized=True):
        """A model built outside aetrain (float64 Keras-style [in, out] kernels), no training
        state: the documented /model group and, when `normalized`, /normalization."""
        rng = np.random.default_rng(11)
        path = self.path(name)
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "aetrain-checkpoint"
            f.attrs["format_version"] = 2
            m = f.create_group("model")
            m.attrs["input_dim"] = 12
            m.attrs["encoder_widths"] = np.array([6, 2], np.int64)
            m.attrs["activation"] = "tanh"
            m.attrs["code_activation"] = "linear"
            m.attrs["output_activation"] = "linear"
            for part, shapes in (("encoder", [(12, 6), (6, 2)]), ("decoder", [(2, 6), (6, 12)])):
                for i, (a, b) in enumerate(shapes):
                    g = m.create_group(f"{part}/layer_{i}")
                    g["kernel"] = rng.standard_normal((a, b)) / np.sqrt(a)
                    g["bias"] = 0.1 * rng.standard_normal(b)
            if normalized:
                n = f.create_group("normalization")
                n.attrs["kind"] = "standard"
                n.attrs["rows"] = 1003
                n["offset"] = self.x.mean(axis=0)
                n["scale"] = np.where(self.x.std(axis=0) > 0, self.x.std(axis=0), 1.0)
        return path

    def test_a_model_without_training_state_serves_every_command(self):
        model = self.model_only("keras.h5")
        x = self.test_x.astype(np.float32).astype(np.float64)
        z = normalize(model, x)
        rc, text, err = run(["inspect", model], ranks=0)
        self.assertEqual(rc, 0, err)
        self.assertIn("autoencoder model (no training state)", text)
        self.assertFalse(json.loads(run(["inspect", model, "--json"], ranks=0)[1])
                         ["training_state"])
        codes = self.path("keras_codes.h5")
        rc, _, err = run(["encode", "--model", model, "--data", self.data, "--dataset", "/test",
                          "--out", codes], ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(codes, "r") as f:
            np.testing.assert_allclose(f["codes"][()], forward(model, z, encoder_only=True),
                                       rtol=1e-5, atol=1e-5)
        rc, out, err = run(["evaluate", "--model", model, "--data", self.data, "--dataset",
                            "/test"], ranks=2)
        self.assertEqual(rc, 0, err)
        expect = np.mean((forward(model, z) - z) ** 2)
        self.assertAlmostEqual(json.loads(out)["normalized_mse"], expect, delta=1e-5 * expect)
        # --init-from takes its weights and its statistics (not those of the data it trains on).
        ck, out, _ = self.train(["--data", self.data, "--dataset", "/test", "--layers", "6,2",
                                 "--activation", "tanh", "--code-activation", "linear",
                                 "--normalize", "standard", "--epochs", "1",
                                 "--init-from", model], name="from_keras.h5")
        self.assertIn("and its normalization statistics", out)
        np.testing.assert_array_equal(normalization(ck)[0], normalization(model)[0])
        # --resume needs the training state and says what is missing.
        self.assert_fails(["train", "--data", self.data, "--layers", "6,2", "--activation",
                           "tanh", "--code-activation", "linear", "--normalize", "standard",
                           "--checkpoint", model, "--resume"], 4,
                          "no /optimizer and /train")
        # Without /normalization the model takes the data as stored.
        plain = self.model_only("plain.h5", normalized=False)
        rc, out, err = run(["evaluate", "--model", plain, "--data", self.data, "--dataset",
                            "/test"], ranks=2)
        self.assertEqual(rc, 0, err)
        expect = np.mean((forward(plain, x) - x) ** 2)
        self.assertAlmostEqual(json.loads(out)["mse"], expect, delta=1e-5 * expect)

    def test_resume_and_init_from_keep_the_files_statistics(self):
        args = ["--layers", "8,3", "--normalize", "standard", "--batch-size", "50"]
        whole, _, _ = self.train(["--data", self.data, "--epochs", "3"] + args, name="whole.h5")
        part, _, _ = self.train(["--data", self.data, "--epochs", "1"] + args, name="part.h5")
        rc, _, err = run(["train", "--data", self.data, "--epochs", "3", "--checkpoint", part,
                          "--resume"] + args, ranks=2)
        self.assertEqual(rc, 0, err)
        a, b = weights(whole), weights(part)
        for name in a:  # bit-identical, statistics included
            self.assertTrue(np.array_equal(a[name], b[name]), name)
        # Resuming on other data is refused (its data cursor means nothing there); starting from
        # the weights on other data keeps the file's statistics: it does not fit them again.
        self.assert_fails(["train", "--data", self.data, "--dataset", "/test", "--epochs", "4",
                           "--checkpoint", part, "--resume"] + args, 2,
                          "resuming needs the same files and rows")
        other, _, _ = self.train(["--data", self.data, "--dataset", "/test", "--epochs", "1",
                                  "--init-from", part] + args, name="other.h5")
        np.testing.assert_array_equal(normalization(other)[0], normalization(whole)[0])
        # The kind must match the file's, for --resume and for --init-from.
        self.assert_fails(["train", "--data", self.data, "--layers", "8,3", "--batch-size", "50",
                           "--output-activation", "linear", "--epochs", "5", "--checkpoint",
                           part, "--resume"], 2, "trained with --normalize standard")
        self.assert_fails(["train", "--data", self.data, "--layers", "8,3", "--output-activation",
                           "linear", "--normalize", "minmax", "--init-from", whole], 2,
                          "pass --normalize standard")

    def test_a_version_1_checkpoint_resumes(self):
        args = ["--data", self.data, "--layers", "8", "--output-activation", "linear"]
        old, _, _ = self.train(args + ["--epochs", "1"], name="v1.h5")
        with h5py.File(old, "a") as f:  # what aetrain wrote before format version 2
            f.attrs["format_version"] = 1
        reseal(old)
        whole, _, _ = self.train(args + ["--epochs", "2"], name="v2_whole.h5")
        rc, out, err = run(["train"] + args + ["--epochs", "2", "--checkpoint", old, "--resume"],
                           ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertIn("resuming", out)
        a, b = weights(whole), weights(old)
        for name in a:
            self.assertTrue(np.array_equal(a[name], b[name]), name)

    def test_bad_normalizations(self):
        self.assert_fails(["train", "--data", self.data, "--layers", "4", "--normalize",
                           "zscore"], 2, "--normalize")
        bad = self.path("bad_norm.h5")
        # A copy that another writer made (with the checksum block aetrain writes).
        with h5py.File(self.model, "r") as src, h5py.File(bad, "w", userblock_size=4096) as dst:
            for key in src:
                src.copy(key, dst)
            dst.attrs.update(src.attrs)
            dst["normalization/scale"][3] = -1.0
        with open(bad, "r+b") as f:
            f.write(b"aetrain crc32 ")
        reseal(bad)
        self.assert_fails(["encode", "--model", bad, "--data", self.data, "--out",
                           self.path("o.h5")], 4, "scale that is not positive")
        self.assertFalse(os.path.exists(self.path("o.h5")))


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
