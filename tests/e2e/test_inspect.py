#!/usr/bin/python3
"""inspect: every kind of model file, as text and JSON; its bad inputs.

    python3 tests/e2e/test_inspect.py path/to/aetrain
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import run  # noqa: E402


class Inspect(cli_support.TrainedModelTest):
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

    def test_bad_inputs(self):
        self.assert_fails(["inspect", self.path("none.h5")], 4, "no such file", ranks=1)


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
