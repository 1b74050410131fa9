#!/usr/bin/python3
"""The real aetrain binary under real mpirun: exit codes, messages, h5py's view of checkpoints,
resuming, configuration files, float64 data.

    python3 tests/e2e/test_train.py path/to/aetrain
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cli_support import metrics, run, weights, write  # noqa: E402
import cli_support  # noqa: E402


class CommandLine(cli_support.BinaryTest):
    def setUp(self):
        super().setUp()
        self.data = self.path("data.h5")
        write(self.data)

    def test_model_card_example(self):
        """Input 100, hidden 50 relu, sigmoid output, Adam, MSE, batch 10: the loss falls."""
        ck, m = self.path("card.h5"), self.path("card.jsonl")
        rc, out, err = run(["train", "--data", self.data, "--layers", "50", "--epochs", "4",
                            "--checkpoint", ck, "--metrics", m], ranks=2)
        self.assertEqual(rc, 0, err)
        lines = metrics(m)
        self.assertEqual([l["event"] for l in lines],
                         ["start", "epoch", "epoch", "epoch", "epoch", "checkpoint", "end"])
        self.assertEqual(lines[0]["ranks"], 2)
        self.assertEqual(lines[0]["model"]["parameters"], 100 * 50 + 50 + 50 * 100 + 100)
        losses = [l["loss"] for l in lines if l["event"] == "epoch"]
        self.assertLess(losses[-1], losses[0])
        self.assertEqual(lines[-1]["step"], 400)  # 1000 rows / 10 per step, 4 epochs
        for phase in ("data", "forward", "backward", "allreduce", "update", "checkpoint"):
            self.assertLessEqual(lines[-1]["timers"][phase]["min"],
                                 lines[-1]["timers"][phase]["max"])
        self.assertIn("checkpoint: " + ck, out)

    def test_checkpoint_layout_seen_by_h5py(self):
        ck = self.path("layout.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "40,8", "--epochs", "1",
                          "--checkpoint", ck, "--code-activation", "linear", "--seed", "3"],
                         ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(ck, "r") as f:
            self.assertEqual(f.attrs["format"], "aetrain-checkpoint")
            self.assertEqual(f.attrs["format_version"], 5)
            self.assertTrue(f.attrs["created_by"].startswith("aetrain "))
            m = f["model"]
            self.assertEqual(m.attrs["input_dim"], 100)
            self.assertEqual(list(m.attrs["encoder_widths"]), [40, 8])
            self.assertEqual(m.attrs["activation"], "relu")
            self.assertEqual(m.attrs["code_activation"], "linear")
            self.assertEqual(m.attrs["output_activation"], "sigmoid")
            shapes = {"encoder/layer_0": (100, 40), "encoder/layer_1": (40, 8),
                      "decoder/layer_0": (8, 40), "decoder/layer_1": (40, 100)}
            for tree in ("model", "optimizer/m", "optimizer/v"):
                names = []
                f[tree].visit(names.append)
                expect = sorted(["encoder", "decoder"] + list(shapes) +
                                [g + "/" + d for g in shapes for d in ("kernel", "bias")])
                self.assertEqual(sorted(names), expect, tree)
                for g, (i, o) in shapes.items():
                    self.assertEqual(f[tree][g]["kernel"].shape, (i, o))
                    self.assertEqual(f[tree][g]["kernel"].dtype, np.float32)
                    self.assertEqual(f[tree][g]["bias"].shape, (o,))
            self.assertEqual(sorted(f.keys()), ["model", "optimizer", "train"])
            o = f["optimizer"]
            self.assertEqual(o.attrs["name"], "adam")
            self.assertAlmostEqual(o.attrs["learning_rate"], 1e-3)
            self.assertAlmostEqual(o.attrs["beta1"], 0.9)
            self.assertAlmostEqual(o.attrs["beta2"], 0.999)
            self.assertAlmostEqual(o.attrs["epsilon"], 1e-7)
            self.assertEqual(o.attrs["step"], 100)
            t = f["train"].attrs
            self.assertEqual((t["epoch"], t["step_in_epoch"], t["global_step"]), (1, 0, 100))
            self.assertEqual((t["seed"], t["global_batch"], t["world_size"]), (3, 10, 2))
            self.assertEqual((t["data_file"], t["dataset"]), (self.data, "/train"))
            self.assertIn("layers = [40, 8]", t["config"])
            # The data layout (all 1000 rows in one window) and the files trained on.
            self.assertEqual(t["window_rows"], 1000)
            self.assertGreaterEqual(t["block_rows"], 1)
            self.assertIn(f"window-rows = 1000", t["config"])
            sources = f["train/sources"][()]
            self.assertEqual(len(sources), 1)
            self.assertEqual((sources[0]["file"].decode(), sources[0]["dataset"].decode(),
                              sources[0]["first_row"], sources[0]["rows"]),
                             (self.data, "/train", 0, 1000))
            # y = x . kernel + bias reproduces the code from the stored weights
            x = h5py.File(self.data, "r")["/train"][:4]
            h = np.maximum(x @ f["model/encoder/layer_0/kernel"][()] +
                           f["model/encoder/layer_0/bias"][()], 0)
            self.assertEqual(h.shape, (4, 40))
        self.assertFalse(os.path.exists(ck + ".tmp"))

    def test_resume_at_epoch_boundary_is_bit_identical(self):
        whole, part = self.path("whole.h5"), self.path("part.h5")
        args = ["train", "--data", self.data, "--layers", "30,5", "--batch-size", "32"]
        rc, _, err = run(args + ["--epochs", "4", "--checkpoint", whole], ranks=2)
        self.assertEqual(rc, 0, err)
        rc, _, err = run(args + ["--epochs", "2", "--checkpoint", part], ranks=2)
        self.assertEqual(rc, 0, err)
        rc, out, err = run(args + ["--epochs", "4", "--checkpoint", part, "--resume"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertIn("resuming", out)
        a, b = weights(whole), weights(part)
        self.assertEqual(sorted(a), sorted(b))
        for name in a:
            self.assertTrue(np.array_equal(a[name], b[name]), name)
        with h5py.File(part, "r") as f:
            self.assertEqual(f["train"].attrs["global_step"], 4 * 32)  # ceil(1000 / 32) = 32
        rc, out, err = run(args + ["--epochs", "4", "--checkpoint", part, "--resume"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertIn("nothing to do", out)

    def test_one_two_and_four_ranks_agree(self):
        final = {}
        for ranks in (1, 2, 4):
            ck = self.path(f"p{ranks}.h5")
            rc, _, err = run(["train", "--data", self.data, "--layers", "50", "--epochs", "2",
                              "--batch-size", "20", "--checkpoint", ck], ranks=ranks)
            self.assertEqual(rc, 0, err)
            final[ranks] = weights(ck)
        for ranks in (2, 4):
            for name, w in final[1].items():
                if name.startswith("model/"):
                    np.testing.assert_allclose(final[ranks][name], w, rtol=1e-5, atol=1e-5,
                                               err_msg=f"{ranks} ranks, {name}")

    def test_config_file_with_flag_override(self):
        ck, toml = self.path("cfg.h5"), self.path("run.toml")
        with open(toml, "w") as f:
            f.write(f'data = "{self.data}"\nlayers = [20, 4]\nepochs = 5\n'
                    f'batch-size = 50\nshuffle = "off"\ncheckpoint = "{ck}"\n')
        rc, _, err = run(["train", "--config", toml, "--epochs", "2"], ranks=2)
        self.assertEqual(rc, 0, err)
        with h5py.File(ck, "r") as f:
            self.assertEqual(f["train"].attrs["epoch"], 2)
            self.assertEqual(f["train"].attrs["global_batch"], 50)
            self.assertEqual(list(f["model"].attrs["encoder_widths"]), [20, 4])
            self.assertIn('shuffle = "off"', f["train"].attrs["config"])

    def test_float64_data_and_validation(self):
        path, m = self.path("f64.h5"), self.path("f64.jsonl")
        write(path, "/x", rows=300, cols=16, dtype=np.float64)
        write(path, "/val", rows=50, cols=16, seed=1, dtype=np.float64)
        rc, _, err = run(["train", "--data", path, "--dataset", "/x", "--layers", "8",
                          "--val-dataset", "/val", "--epochs", "2", "--metrics", m], ranks=2)
        self.assertEqual(rc, 0, err)
        epochs = [l for l in metrics(m) if l["event"] == "epoch"]
        self.assertTrue(all(l["val_loss"] > 0 for l in epochs))

    def test_alpha_encode_loss(self):
        rc, _, err = run(["train", "--data", self.data, "--layers", "50,100", "--alpha", "0.5",
                          "--epochs", "1"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assert_fails(["train", "--data", self.data, "--layers", "50", "--alpha", "0.5"],
                          2, "code width")

    def test_step_lines(self):
        m = self.path("steps.jsonl")
        rc, out, err = run(["train", "--data", self.data, "--layers", "10", "--log-every", "25",
                            "--metrics", m, "--quiet"], ranks=2)
        self.assertEqual(rc, 0, err)
        steps = [l for l in metrics(m) if l["event"] == "step"]
        self.assertEqual([l["step"] for l in steps], [25, 50, 75, 100])
        self.assertEqual(out, "")  # --quiet
        rc, out, err = run(["train", "--data", self.data, "--layers", "10", "--log-every", "25"],
                           ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len([l for l in out.splitlines() if " step " in l]), 4)

    def test_checkpoint_cadence(self):
        ck, m = self.path("cadence.h5"), self.path("cadence.jsonl")
        rc, out, err = run(["train", "--data", self.data, "--layers", "10", "--checkpoint", ck,
                            "--checkpoint-every", "30", "--metrics", m], ranks=2)
        self.assertEqual(rc, 0, err)
        saved = [l["step"] for l in metrics(m) if l["event"] == "checkpoint"]
        self.assertEqual(saved, [30, 60, 90, 100])  # and one at the end
        self.assertIn("(step 60)", out)

    def test_every_model_and_optimizer_option_reaches_the_run(self):
        ck, m, val = self.path("opts.h5"), self.path("opts.jsonl"), self.path("val.h5")
        write(val, "/v", rows=40, cols=100, seed=9)
        rc, _, err = run(["train", "--data", self.data, "--layers", "20,6", "--activation", "tanh",
                          "--code-activation", "linear", "--output-activation", "linear",
                          "--lr", "0.01", "--beta1", "0.8", "--beta2", "0.99", "--epsilon",
                          "1e-6", "--seed", "7", "--threads", "2", "--val-data", val,
                          "--val-dataset", "/v", "--checkpoint", ck, "--metrics", m], ranks=1)
        self.assertEqual(rc, 0, err)
        with h5py.File(ck, "r") as f:
            a, o = f["model"].attrs, f["optimizer"].attrs
            self.assertEqual((a["activation"], a["code_activation"], a["output_activation"]),
                             ("tanh", "linear", "linear"))
            self.assertEqual((o["learning_rate"], o["beta1"], o["beta2"], o["epsilon"]),
                             (0.01, 0.8, 0.99, 1e-6))
            self.assertEqual(f["train"].attrs["seed"], 7)
        lines = metrics(m)
        self.assertEqual(lines[0]["threads"], 2)
        self.assertTrue(all("val_loss" in l for l in lines if l["event"] == "epoch"))

    def test_seed_decides_the_run(self):
        runs = {}
        for name, seed in (("a", 1), ("b", 1), ("c", 2)):
            ck = self.path(f"seed_{name}.h5")
            rc, _, err = run(["train", "--data", self.data, "--layers", "10", "--seed", str(seed),
                              "--checkpoint", ck], ranks=2)
            self.assertEqual(rc, 0, err)
            runs[name] = weights(ck)["model/encoder/layer_0/kernel"]
        self.assertTrue(np.array_equal(runs["a"], runs["b"]))
        self.assertFalse(np.allclose(runs["a"], runs["c"]))

    def test_bad_command_lines(self):
        self.assert_fails(["train", "--data", self.data, "--layers", "8", "--no-such"], 2,
                          "--no-such")
        self.assert_fails(["train", "--data", self.data, "--layers", "8", "--epochs", "0"], 2,
                          "--epochs")
        self.assert_fails(["train", "--data", self.data, "--layers", "8", "--batch-size", "x"], 2,
                          "--batch-size")
        self.assert_fails(["train", "--data", self.data], 2, "--layers")

    def test_bad_data(self):
        with open(self.path("text.h5"), "w") as f:
            f.write("not hdf5\n")
        write(self.path("ints.h5"), "/i", rows=10, cols=3, dtype=np.int32)
        self.assert_fails(["train", "--data", self.path("none.h5"), "--layers", "8"], 3,
                          "none.h5: no such file")
        self.assert_fails(["train", "--data", self.path("text.h5"), "--layers", "8"], 3,
                          "not an HDF5 file")
        self.assert_fails(["train", "--data", self.data, "--dataset", "/x", "--layers", "8"], 3,
                          "/x: no such dataset")
        self.assert_fails(["train", "--data", self.path("ints.h5"), "--dataset", "/i",
                           "--layers", "8"], 3, "32-bit integer")

    def test_existing_checkpoint_is_not_overwritten(self):
        ck, m = self.path("keep.h5"), self.path("keep.jsonl")
        rc, _, err = run(["train", "--data", self.data, "--layers", "8", "--checkpoint", ck,
                          "--metrics", m])
        self.assertEqual(rc, 0, err)
        with open(ck, "rb") as f, open(m, "rb") as g:
            before = f.read(), g.read()
        self.assert_fails(["train", "--data", self.data, "--layers", "8", "--checkpoint", ck,
                           "--metrics", m], 2, "--resume")
        with open(ck, "rb") as f, open(m, "rb") as g:
            self.assertEqual((f.read(), g.read()), before)  # nor its metrics

    def test_resume_with_another_architecture_is_refused(self):
        ck = self.path("arch.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "8", "--checkpoint", ck])
        self.assertEqual(rc, 0, err)
        before = cli_support.sha256(ck)
        # The command line disagrees with the file: a usage error naming the options, with the
        # values that work (never exit 4, which says the checkpoint itself is bad).
        self.assert_fails(["train", "--data", self.data, "--layers", "9", "--checkpoint", ck,
                           "--resume", "--epochs", "2"], 2,
                          ck + ": was trained with --layers 8; this run asks for --layers 9; "
                          "resuming needs the same values: pass --layers 8")
        self.assert_fails(["train", "--data", self.data, "--layers", "9", "--init-from", ck], 2,
                          ck + ": holds a model trained with --layers 8; this run asks for "
                          "--layers 9; --init-from needs the same values: pass --layers 8")
        # A model for rows of other columns is the file's mismatch with the data.
        write(self.path("wide.h5"), cols=101)
        self.assert_fails(["train", "--data", self.path("wide.h5"), "--layers", "8",
                           "--init-from", ck], 4, "holds a model for rows of 100 columns")
        self.assertEqual(cli_support.sha256(ck), before)

    def test_every_option_resumes_by_its_rule(self):
        """One check, from the option table: options that must match are refused together in
        one line (exit 2, the checkpoint untouched); --lr and --epochs change with a notice and
        take effect; paths, cadences and threads change freely."""
        ck = self.path("rules.h5")
        base = ["train", "--data", self.data, "--layers", "8", "--batch-size", "20",
                "--checkpoint", ck, "--quiet"]
        rc, _, err = run(base + ["--epochs", "1", "--lr", "0.002"], ranks=2)
        self.assertEqual(rc, 0, err)
        before = cli_support.sha256(ck)
        for option, value, stored in (("--beta1", "0.8", "0.9"), ("--beta2", "0.99", "0.999"),
                                      ("--epsilon", "1e-08", "1e-07"), ("--shuffle", "off", "on"),
                                      ("--seed", "3", "0"), ("--noise", "mask:0.1", "none")):
            self.assert_fails(base + ["--epochs", "2", "--lr", "0.002", "--resume", option,
                                      value], 2,
                              f"{ck}: was trained with {option} {stored}; this run asks for "
                              f"{option} {value}; resuming needs the same values: pass "
                              f"{option} {stored}")
        self.assert_fails(base + ["--epochs", "2", "--resume", "--beta1", "0.8", "--seed", "3"],
                          2, f"{ck}: was trained with --beta1 0.9, --seed 0; this run asks for "
                          "--beta1 0.8, --seed 3; resuming needs the same values: pass --beta1 "
                          "0.9 --seed 0")
        self.assertEqual(cli_support.sha256(ck), before)
        # The remedy it prints works.
        rc, out, err = run(base[:-1] + ["--epochs", "2", "--resume", "--lr", "0.001",
                                        "--threads", "1", "--log-every", "5"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"resuming {ck} with --epochs 2 (was 1), --lr 0.001 (was 0.002)", out)
        with h5py.File(ck, "r") as f:  # the new rate is the one stored from now on
            self.assertEqual(f["optimizer"].attrs["learning_rate"], 0.001)
            self.assertIn("lr = 0.001\n", f["train"].attrs["config"])

    def test_normalize_is_named_before_what_follows_from_it(self):
        # --normalize standard makes the output linear by default: resuming or starting from
        # such a file without it names --normalize (the cause), not the output activation.
        ck = self.path("std.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "8", "--normalize",
                          "standard", "--checkpoint", ck, "--quiet"], ranks=2)
        self.assertEqual(rc, 0, err)
        before = cli_support.sha256(ck)
        for args in (["--checkpoint", ck, "--resume", "--epochs", "2"], ["--init-from", ck]):
            line = self.assert_fails(["train", "--data", self.data, "--layers", "8"] + args, 2,
                                     "--normalize standard; this run asks for --normalize none;")
            self.assertNotIn("activation", line)
            self.assertIn("pass --normalize standard (the file's statistics are kept", line)
            rc, _, err = run(["train", "--data", self.data, "--layers", "8", "--normalize",
                              "standard", "--quiet"] + args, ranks=2)
            self.assertEqual(rc, 0, err)
        self.assertNotEqual(cli_support.sha256(ck), before)  # the remedy resumed it

    def test_init_from(self):
        src, dst = self.path("src.h5"), self.path("dst.h5")
        rc, _, err = run(["train", "--data", self.data, "--layers", "12", "--checkpoint", src,
                          "--epochs", "2"], ranks=2)
        self.assertEqual(rc, 0, err)
        rc, out, err = run(["train", "--data", self.data, "--layers", "12", "--init-from", src,
                            "--checkpoint", dst, "--lr", "1e-12"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertIn("starting from the weights of", out)
        a, b = weights(src), weights(dst)
        np.testing.assert_allclose(b["model/encoder/layer_0/kernel"],
                                   a["model/encoder/layer_0/kernel"], atol=1e-6)
        with h5py.File(dst, "r") as f:  # fresh optimizer and data cursor
            self.assertEqual(f["optimizer"].attrs["step"], 100)
            self.assertEqual(f["train"].attrs["epoch"], 1)

    def test_unwritable_checkpoint_directory(self):
        self.assert_fails(["train", "--data", self.data, "--layers", "8", "--checkpoint",
                           self.path("no/such/dir/c.h5")], 2, "does not exist")

    def test_mpirun_scripts(self):
        jobs = os.path.join(cli_support.ROOT, "jobs")
        toml = self.path("hybrid.toml")
        with open(toml, "w") as f:
            f.write(f'data = "{self.data}"\nlayers = [10]\ncheckpoint = "{self.path("h.h5")}"\n')
        env = dict(cli_support.ENV, AETRAIN=cli_support.AETRAIN)
        for ranks, threads in ((2, 1), (1, 2)):
            p = subprocess.run([os.path.join(jobs, "mpirun-hybrid.sh"), toml, "--checkpoint",
                                self.path(f"h{ranks}.h5")],
                               capture_output=True, text=True,
                               env=dict(env, RANKS=str(ranks), THREADS=str(threads)))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(f"aetrain: {ranks} rank(s) on 1 node(s), {threads} thread(s) per rank",
                          p.stdout)
            self.assertNotIn("warning", p.stderr)  # bound as many CPUs as threads
        hosts = self.path("hosts")
        with open(hosts, "w") as f:
            f.write("# one machine\nlocalhost slots=2\n")
        p = subprocess.run([os.path.join(jobs, "mpirun-cluster.sh"), toml], capture_output=True,
                           text=True, env=dict(env, HOSTFILE=hosts, PER_NODE="2"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("aetrain: 2 rank(s) on 1 node(s), 1 thread(s) per rank", p.stdout)

    def test_help(self):
        rc, out, _ = run(["train", "--help"], ranks=0)
        self.assertEqual(rc, 0)
        for option in ("--data", "--layers", "--batch-size", "--alpha", "--resume",
                       "--init-from", "--metrics", "--config", "--checkpoint-every"):
            self.assertIn(option, out)

    def test_version_names_what_it_is_built_from(self):
        # Checked against the libraries' own tools where they exist, so a wrong field fails.
        for ranks in (0, 2):
            rc, out, err = run(["--version"], ranks=ranks)
            self.assertEqual(rc, 0, err)
            self.assertEqual(out.count("aetrain 0."), 1, out)  # rank 0 alone prints
        lines = dict(l.split(":", 1) for l in out.splitlines()[1:])
        self.assertEqual(set(lines), {"compiler", "build", "MPI", "HDF5", "GEMM", "CPU"})
        cache = os.path.join(os.path.dirname(cli_support.AETRAIN), "CMakeCache.txt")
        if os.path.exists(cache):  # the build type and the sanitizers, as CMake was told
            with open(cache) as f:
                text = f.read()
            build_type = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", text, re.M).group(1)
            self.assertTrue(lines["build"].strip().startswith(build_type), lines["build"])
            sanitized = re.search(r"^AETRAIN_SANITIZE:BOOL=(ON|TRUE|1)$", text, re.M)
            self.assertEqual("Sanitizer" in lines["build"], bool(sanitized), lines["build"])
        ompi = subprocess.run(["ompi_info", "--parsable"],
                              capture_output=True, text=True).stdout
        version = re.search(r"ompi:version:full:(\S+)", ompi).group(1)
        self.assertIn("Open MPI v" + version, lines["MPI"])
        h5 = subprocess.run(["h5pcc", "-showconfig"], capture_output=True, text=True).stdout
        self.assertIn(re.search(r"HDF5 Version:\s*(\S+)", h5).group(1) + " (parallel)",
                      lines["HDF5"])
        self.assertRegex(lines["GEMM"], r"Eigen 3\.\d+\.\d+ packed kernel, compiled for ")
        if "BLIS" in lines["GEMM"]:  # the kernel AETRAIN_GEMM_KERNEL asks for, named
            for kernel, expected in (("blis", r"GEMM: +BLIS \S+ micro-kernel \(\w+, \d+x\d+ float\)"),
                                     ("eigen", r"GEMM: +Eigen .* \(BLIS \S+ is built in; its")):
                p = subprocess.run([cli_support.AETRAIN, "--version"], capture_output=True,
                                   text=True, env=dict(cli_support.ENV, AETRAIN_GEMM_KERNEL=kernel))
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertRegex(p.stdout, expected)
            p = subprocess.run([cli_support.AETRAIN, "--version"], capture_output=True, text=True,
                               env=dict(cli_support.ENV, AETRAIN_GEMM_KERNEL="fast"))
            self.assertEqual(p.returncode, 2)
            self.assertIn("AETRAIN_GEMM_KERNEL is 'fast': it must be blis or eigen", p.stderr)
        self.assertRegex(lines["compiler"], r"(GCC|Clang) \d+\.")


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
