#!/usr/bin/python3
"""The one output rule, with the real binary under real mpirun (2 ranks): no command writes over
a file it reads (however that file is spelled: an @list, a hard link, a symbolic link, ./x), over
another output of the same run, over a file of another kind, or over a file of its own kind
without --overwrite. Each refusal checks the exit code, the one error line and the sha256 of
every file that must not change; the happy paths check that --overwrite replaces and that a
rerun without it is refused.

    python3 tests/e2e/test_outputs.py path/to/aetrain
"""
import json
import os
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import metrics, our_errors, run, write, sha256  # noqa: E402


class Outputs(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = cli_support.temp_dir()
        cls.data = os.path.join(cls.shared, "data.h5")
        cls.x = write(cls.data, rows=120, cols=12, seed=3)
        cls.model = os.path.join(cls.shared, "model.h5")
        cls.pca = os.path.join(cls.shared, "pca.h5")
        for args in (["train", "--data", cls.data, "--layers", "4", "--checkpoint", cls.model,
                      "--quiet"],
                     ["pca", "--data", cls.data, "--components", "3", "--out", cls.pca]):
            rc, _, err = run(args, ranks=2)
            assert rc == 0, err

    def setUp(self):
        super().setUp()
        self.text = self.path("notes.txt")
        with open(self.text, "w") as f:
            f.write("my notes\n")
        self.lst = self.path("files.txt")
        with open(self.lst, "w") as f:
            f.write(self.data + "\n")

    def refused(self, args, needles, unchanged, code=2):
        """The run exits with `code`, prints one error line holding every needle, and leaves
        every file of `unchanged` byte for byte as it was (and creates no scratch file)."""
        before = {p: sha256(p) for p in unchanged}
        rc, _, err = run(args, ranks=2)
        self.assertEqual(rc, code, err)
        lines = our_errors(err)
        self.assertEqual(len(lines), 1, err)
        for needle in needles:
            self.assertIn(needle, lines[0])
        self.assertNotIn("rank 0:", lines[0])
        for path, digest in before.items():
            self.assertEqual(sha256(path), digest, path)
            self.assertFalse(os.path.exists(path + ".tmp"), path + ".tmp")
        return lines[0]

    def pca_args(self, out, *extra):
        return ["pca", "--data", self.data, "--components", "2", "--out", out, *extra]

    def train(self, *extra):
        return ["train", "--data", self.data, "--layers", "3", "--batch-size", "20", "--quiet",
                *extra]

    # --- never over a file the run reads -------------------------------------------------

    def test_pca_out_the_input_however_spelled(self):
        link, sym = self.path("hard.h5"), self.path("sym.h5")
        os.link(self.data, link)
        os.symlink(self.data, sym)
        here = os.path.relpath(self.data)
        cases = [
            (self.pca_args(self.data), [self.data + " (--out): this run reads it (--data)"]),
            (["pca", "--data", "@" + self.lst, "--components", "2", "--out", self.data],
             [self.data + " (--out): this run reads it (--data)"]),
            (self.pca_args(link), [link + " (--out): is the same file as " + self.data,
                              "which this run reads (--data)"]),
            (self.pca_args(sym), [sym + " (--out): is the same file as " + self.data]),
            (self.pca_args("./" + here),
             ["./" + here + " (--out): is the same file as " + self.data]),
            # the list itself is read too
            (["pca", "--data", "@" + self.lst, "--components", "2", "--out", self.lst],
             [self.lst + " (--out): this run reads it (--data)"]),
        ]
        for args, needles in cases:
            with self.subTest(out=args[-1]):
                line = self.refused(args, needles + ["choose another file"],
                                    [self.data, self.lst])
                self.assertIn("would destroy it", line)

    def test_train_outputs_on_its_inputs(self):
        val = self.path("val.h5")
        write(val, rows=30, cols=12, seed=5)
        init = self.path("init.h5")
        rc, _, err = run(self.train("--checkpoint", init), ranks=2)
        self.assertEqual(rc, 0, err)
        cases = [
            (self.train("--metrics", self.data), [self.data + " (--metrics): this run reads it"]),
            (self.train("--checkpoint", self.data),
             [self.data + " (--checkpoint): this run reads it (--data)"]),
            (self.train("--val-data", val, "--checkpoint", val),
             [val + " (--checkpoint): this run reads it (--val-data)"]),
            (self.train("--init-from", init, "--checkpoint", init),
             [init + " (--checkpoint): this run reads it (--init-from)"]),
        ]
        for args, needles in cases:
            with self.subTest(args=" ".join(args[1:])):
                self.refused(args, needles, [self.data, val, init])
        # the scratch file of a checkpoint is written too
        scratch_data = self.path("d.h5.tmp")
        write(scratch_data, rows=40, cols=12)
        self.refused(self.train("--data", scratch_data, "--checkpoint", self.path("d.h5")),
                     [scratch_data + " (--checkpoint's scratch file): this run reads it (--data)"],
                     [scratch_data])

    def test_encode_and_evaluate_outputs_on_their_inputs(self):
        other_ck = self.path("other_ck.h5")
        rc, _, err = run(self.train("--checkpoint", other_ck), ranks=2)
        self.assertEqual(rc, 0, err)
        enc = ["encode", "--model", self.model, "--data", self.data, "--out"]
        cases = [
            (enc + [self.data], [self.data + " (--out): this run reads it (--data)",
                                 "an HDF5 external link"]),
            (enc + [self.model], [self.model + " (--out): this run reads it (--model)"]),
            (enc + [other_ck], [other_ck + " (--out): is an aetrain training checkpoint; datasets "
                                           "go only into an HDF5 file that is no aetrain "
                                           "checkpoint or model"]),
            (enc + [self.pca], [self.pca + " (--out): is an aetrain PCA model"]),
            (enc + [self.text], [self.text + " (--out): is neither an HDF5 file nor aetrain "
                                             "metrics"]),
            (["evaluate", "--model", self.model, "--data", self.data, "--per-sample",
              self.data], [self.data + " (--per-sample): this run reads it (--data)"]),
            (["evaluate", "--model", self.model, "--data", self.data, "--reconstruct",
              self.model], [self.model + " (--reconstruct): this run reads it (--model)"]),
        ]
        for args, needles in cases:
            with self.subTest(args=" ".join(args[1:])):
                self.refused(args, needles, [self.data, self.model, other_ck, self.pca,
                                             self.text])

    def test_the_config_file_is_an_input(self):
        config = self.path("run.toml")
        with open(config, "w") as f:
            f.write(f'data = "{self.data}"\ncomponents = 2\nout = "{config}"\n')
        self.refused(["pca", "--config", config],
                     [config + " (--out): this run reads it (--config)"], [config, self.data])
        train_config = self.path("train.toml")
        with open(train_config, "w") as f:
            f.write(f'data = "{self.data}"\nlayers = [3]\n')
        self.refused(["train", "--config", train_config, "--metrics", train_config],
                     [train_config + " (--metrics): this run reads it (--config)"],
                     [train_config])
        self.refused(["train", "--config", train_config, "--checkpoint",
                      os.path.relpath(train_config)],
                     ["(--checkpoint): is the same file as " + train_config,
                      "this run reads (--config)"], [train_config])

    # --- never two outputs on one file ---------------------------------------------------

    def test_two_outputs_of_one_run(self):
        per = self.path("errors.h5")
        ev = ["evaluate", "--model", self.model, "--data", self.data]
        self.refused(ev + ["--per-sample", per, "--reconstruct", per],
                     [per + " (--reconstruct): is also the file of --per-sample",
                      "each output needs a file of its own"], [self.data, self.model])
        self.assertFalse(os.path.exists(per))
        spelled = os.path.join(self.dir, ".", "sub", "..", "errors.h5")
        os.mkdir(self.path("sub"))
        self.refused(ev + ["--per-sample", per, "--reconstruct", spelled],
                     [spelled + " (--reconstruct): is also the file of --per-sample (" + per + ")"],
                     [self.data])
        with h5py.File(per, "w") as f:  # existing: by inode
            f["keep"] = np.arange(4)
        link = self.path("errors_link.h5")
        os.link(per, link)
        self.refused(ev + ["--per-sample", per, "--reconstruct", link],
                     [link + " (--reconstruct): is also the file of --per-sample (" + per + ")"],
                     [per])
        ck = self.path("ck.h5")
        self.refused(self.train("--checkpoint", ck, "--metrics", ck),
                     [ck + " (--metrics): is also the file of --checkpoint"], [self.data])
        self.assertFalse(os.path.exists(ck))
        self.refused(self.train("--checkpoint", ck, "--early-stop", "2", "--val-dataset", "/train",
                                "--metrics", ck + ".best"),
                     [ck + ".best (--metrics): is also the file of --early-stop's best model"],
                     [self.data])

    # --- never over a file of another kind -----------------------------------------------

    def test_files_of_another_kind(self):
        h5 = self.path("other.h5")
        with h5py.File(h5, "w") as f:
            f["x"] = np.zeros(3)
        model_only = self.path("weights_only.h5")
        with h5py.File(self.model, "r") as src, h5py.File(model_only, "w") as f:
            f.attrs["format"] = "aetrain-checkpoint"
            f.attrs["format_version"] = 4
            src.copy("model", f)
        cases = [
            (self.pca_args(self.model),
             [self.model + " (--out): is an aetrain training checkpoint; only an aetrain PCA "
                           "model may be replaced"]),
            (self.pca_args(self.text), [self.text + " (--out): is neither an HDF5 file nor aetrain "
                                               "metrics; only an aetrain PCA model"]),
            (self.pca_args(h5), [h5 + " (--out): is an HDF5 file; only an aetrain PCA model"]),
            (self.pca_args(self.dir), [self.dir + " (--out): is a directory"]),
            (self.train("--metrics", self.text),
             [self.text + " (--metrics): is neither an HDF5 file nor aetrain metrics; only "
                          "aetrain metrics may be replaced there"]),
            (self.train("--metrics", h5), [h5 + " (--metrics): is an HDF5 file"]),
            (self.train("--checkpoint", self.pca),
             [self.pca + " (--checkpoint): is an aetrain PCA model; only an aetrain training "
                         "checkpoint may be replaced there"]),
            (self.train("--checkpoint", model_only),
             [model_only + " (--checkpoint): is an aetrain model without training state"]),
            (self.train("--checkpoint", h5, "--overwrite"), [h5 + " (--checkpoint): is an HDF5 "
                                                                  "file"]),
            (self.pca_args(self.path("no/such/dir/p.h5")), ["does not exist"]),
        ]
        for args, needles in cases:
            with self.subTest(args=" ".join(args[1:])):
                line = self.refused(args, needles, [self.model, self.text, h5, self.pca,
                                                    model_only])
                if "does not exist" not in needles[0]:
                    self.assertIn("not touching it", line)

    def test_keep_copies_and_best_of_another_kind(self):
        ck = self.path("run.h5")
        foreign = ck + ".step40"
        with open(foreign, "w") as f:
            f.write("not a checkpoint\n")
        self.refused(self.train("--checkpoint", ck, "--keep", "3"),
                     [foreign + " (--keep's copies): is neither an HDF5 file nor aetrain metrics; "
                                "only an aetrain training checkpoint"], [foreign])
        # --keep 1 does not touch them: the run goes on
        rc, _, err = run(self.train("--checkpoint", ck, "--epochs", "2"), ranks=2)
        self.assertEqual(rc, 0, err)
        # pruning removes only checkpoints: with --overwrite the foreign file is still refused
        self.refused(self.train("--checkpoint", ck, "--keep", "2", "--overwrite"),
                     [foreign + " (--keep's copies)"], [foreign, ck])

    # --- a file of its own kind: --overwrite, the same for every command -------------------

    def test_pca_replaces_only_with_overwrite(self):
        out = self.path("p.h5")
        rc, _, err = run(self.pca_args(out), ranks=2)
        self.assertEqual(rc, 0, err)
        line = self.refused(self.pca_args(out), [out + " (--out): an aetrain PCA model is already "
                                                  "there; pass --overwrite to replace it"],
                            [out, self.data])
        self.assertNotIn("--resume", line)
        before = sha256(out)
        rc, _, err = run(self.pca_args(out, "--overwrite", "--normalize", "standard"), ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertNotEqual(sha256(out), before)
        with h5py.File(out, "r") as f:
            self.assertEqual(f["normalization"].attrs["kind"], "standard")
        self.assertFalse(os.path.exists(out + ".tmp"))
        # an empty file holds nothing to lose
        empty = self.path("empty.h5")
        open(empty, "w").close()
        rc, _, err = run(self.pca_args(empty), ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(empty, "r") as f:
            self.assertEqual(f.attrs["format"], "aetrain-pca")

    def test_train_replaces_only_with_overwrite_and_resume_continues(self):
        ck, m = self.path("run.h5"), self.path("run.jsonl")
        first = self.train("--checkpoint", ck, "--metrics", m, "--checkpoint-every", "6",
                           "--keep", "2", "--epochs", "3")
        rc, _, err = run(first, ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(ck + ".step12"))
        old = [ck, m, ck + ".step12"]
        self.refused(first, [ck + " (--checkpoint): an aetrain training checkpoint is already "
                                  "there; pass --resume to continue that run, --overwrite to "
                                  "start a new run over it"], old)
        os.rename(ck, ck + ".away")  # with the checkpoint gone, its copy and metrics still stand
        self.refused(first, [ck + ".step12 (--keep's copies): an aetrain training checkpoint is "
                                  "already there"], old[1:])
        os.rename(ck + ".step12", ck + ".step12.away")
        self.refused(first, [m + " (--metrics): an aetrain metrics file is already there"], [m])
        os.rename(ck + ".away", ck)
        os.rename(ck + ".step12.away", ck + ".step12")
        self.refused(first + ["--resume", "--overwrite"],
                     ["--resume continues the run in --checkpoint and --overwrite starts a new "
                      "run over it"], old)
        # --resume continues: the checkpoint goes on, the metrics grow
        lines = len(metrics(m))
        rc, _, err = run(self.train("--checkpoint", ck, "--metrics", m, "--checkpoint-every", "6",
                                    "--keep", "2", "--epochs", "4", "--resume"), ranks=2)
        self.assertEqual(rc, 0, err)
        after = metrics(m)
        self.assertGreater(len(after), lines)
        self.assertEqual([l["resumed"] for l in after if l["event"] == "start"], [False, True])
        # --overwrite starts over: a new run's checkpoint, metrics and copies
        rc, _, err = run(self.train("--checkpoint", ck, "--metrics", m, "--checkpoint-every", "6",
                                    "--keep", "2", "--epochs", "1", "--seed", "9", "--overwrite"),
                         ranks=2)
        self.assertEqual(rc, 0, err)
        starts = [l for l in metrics(m) if l["event"] == "start"]
        self.assertEqual(len(starts), 1)
        self.assertFalse(starts[0]["resumed"])
        with h5py.File(ck, "r") as f:
            self.assertEqual(f["train"].attrs["global_step"], 6)
            self.assertEqual(f["train"].attrs["seed"], 9)
        copies = sorted(n for n in os.listdir(self.dir) if n.startswith("run.h5.step"))
        self.assertEqual(copies, [])  # the old run's are gone; this run kept none yet
        # a stream loses nothing
        rc, _, err = run(self.train("--metrics", os.devnull), ranks=2)
        self.assertEqual(rc, 0, err)

    def test_encode_replaces_a_dataset_only_with_overwrite(self):
        out = self.path("codes.h5")
        enc = ["encode", "--model", self.model, "--data", self.data, "--out", out]
        rc, _, err = run(enc, ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(out, "a") as f:
            f["codes"][0, 0] = 1234.0
            f["mine"] = np.arange(5)
        self.refused(enc, [out + ": /codes exists; pass --overwrite to replace it"],
                     [out, self.data, self.model])
        rc, _, err = run(enc + ["--overwrite"], ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(out, "r") as f:
            self.assertNotEqual(f["codes"][0, 0], 1234.0)
            self.assertEqual(list(f["mine"][()]), list(range(5)))
            self.assertEqual(sorted(f), ["codes", "codes_sources", "mine"])
        self.assertFalse(os.path.exists(out + ".tmp"))


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
