#!/usr/bin/python3
"""The training recipe (learning-rate schedules, AdamW, gradient clipping, early stopping,
denoising): the real binary under real mpirun against PyTorch doing the same steps from the same
weights on the same batches (and the same noise, drawn here from the definition in
docs/training.md), and its bad inputs.

    python3 tests/e2e/test_train_recipe.py path/to/aetrain
"""
import math
import os
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import load, metrics, run  # noqa: E402

try:
    import torch
except ImportError:  # Debian 13's root in CI has no torch: the reference tests say so and skip
    torch = None

ROWS, COLS, CODE, BATCH, EPOCHS = 96, 12, 5, 16, 4
STEPS_PER_EPOCH = ROWS // BATCH
TOTAL = EPOCHS * STEPS_PER_EPOCH
LR, EPS = 0.01, 1e-8


def schedule(t, kind="constant", warmup=0, min_lr=0.0, step_epochs=1, gamma=0.1):
    """The rate of step t (from 1), as the README and `aetrain train --help` define it."""
    if t <= warmup:
        return LR * t / warmup
    if kind == "cosine":
        return min_lr + (LR - min_lr) * (1 + math.cos(math.pi * (t - warmup) / (TOTAL - warmup))) / 2
    if kind == "step":
        return LR * gamma ** (((t - 1) // STEPS_PER_EPOCH) // step_epochs)
    return LR


M64 = (1 << 64) - 1


class SplitMix64:
    """include/aetrain/rng.hpp's generator, written again from its paper."""
    def __init__(self, state):
        self.state = state & M64

    def next(self):
        self.state = (self.state + 0x9e3779b97f4a7c15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
        return z ^ (z >> 31)


def stream_seed(seed, a, b):
    g = SplitMix64(seed)
    h = SplitMix64(g.next() ^ ((a * 0xd1b54a32d192ed03) & M64))
    return SplitMix64(h.next() ^ ((b * 0xaef17502108ef2d9) & M64)).next()


def corrupt_row(kind, amount, seed, epoch, row, x):
    """--noise on data row `row` (values x) in `epoch`, as docs/training.md defines it: a generator
    started at (seed, epoch, row); mask: one uniform per value, zero below P; gaussian: a pair of
    Box-Muller normals per pair of values, added times SIGMA in double, rounded to float."""
    g = SplitMix64(stream_seed(seed ^ 0x6e6f697365, epoch, row))
    y = np.array(x, dtype=np.float32)
    for j in range(len(x)):
        if kind == "mask":
            y[j] = 0.0 if (g.next() >> 11) * 2.0 ** -53 < amount else x[j]
        elif j % 2 == 0:
            u1 = ((g.next() >> 11) + 1) * 2.0 ** -53
            u2 = (g.next() >> 11) * 2.0 ** -53
            r, angle = math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2
            y[j] = np.float32(float(x[j]) + amount * (r * math.cos(angle)))
            if j + 1 < len(x):
                y[j + 1] = np.float32(float(x[j + 1]) + amount * (r * math.sin(angle)))
    return y


def torch_steps(init, data, rate, weight_decay=0.0, clip=0.0, noise=None):
    """PyTorch from the weights in `init`: AdamW with the kernels in a decaying parameter group
    and the biases in one without, LambdaLR with `rate`, clip_grad_norm_, the input corrupted by
    `noise` (kind, amount) and the target clean; rows in order (--shuffle off), seed 0. Returns
    the step losses, gradient norms and the final layers."""
    torch.manual_seed(0)
    layers, _ = load(init)
    linears = []
    for kernel, bias in layers:
        lin = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(kernel.T, dtype=torch.float32))
            lin.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        linears.append(lin)
    kernels = [lin.weight for lin in linears]
    biases = [lin.bias for lin in linears]
    opt = torch.optim.AdamW([{"params": kernels, "weight_decay": weight_decay},
                             {"params": biases, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=EPS)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: rate(i + 1) / LR)
    x_all = torch.tensor(data)
    losses, norms, rates = [], [], []
    for t in range(1, TOTAL + 1):
        first = ((t - 1) % STEPS_PER_EPOCH) * BATCH
        x = x_all[first:first + BATCH]
        x_in = x
        if noise:
            epoch = (t - 1) // STEPS_PER_EPOCH
            x_in = torch.tensor(np.stack([corrupt_row(*noise, 0, epoch, first + i, data[first + i])
                                          for i in range(BATCH)]))
        opt.zero_grad()
        y = torch.sigmoid(linears[1](torch.relu(linears[0](x_in))))
        loss = torch.nn.functional.mse_loss(y, x)
        loss.backward()
        params = kernels + biases
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if clip > 0 else \
            torch.norm(torch.stack([p.grad.norm() for p in params]))
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(loss.item())
        norms.append(float(norm))
    final = [(lin.weight.detach().numpy().T, lin.bias.detach().numpy()) for lin in linears]
    return losses, norms, rates, final


@unittest.skipIf(torch is None, "needs python3-torch (installed by tools/install-deps.sh)")
class AgainstTorch(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = cli_support.temp_dir()
        cls.data_path = os.path.join(cls.shared, "d.h5")
        cls.data = cli_support.write(cls.data_path, rows=ROWS, cols=COLS, seed=3)
        cls.init = os.path.join(cls.shared, "init.h5")
        rc, _, err = run(["train", "--data", cls.data_path, "--layers", str(CODE), "--epochs", "1",
                          "--batch-size", str(BATCH), "--checkpoint", cls.init, "--quiet"])
        assert rc == 0, err

    def train(self, args, ranks=1):
        out = self.path(f"out{ranks}.h5")
        m = self.path(f"m{ranks}.jsonl")
        rc, _, err = run(["train", "--data", self.data_path, "--layers", str(CODE),
                          "--batch-size", str(BATCH), "--epochs", str(EPOCHS), "--shuffle", "off",
                          "--lr", str(LR), "--epsilon", str(EPS), "--init-from", self.init,
                          "--log-every", "1", "--metrics", m, "--checkpoint", out, "--quiet"]
                         + args, ranks)
        self.assertEqual(rc, 0, err)
        steps = [e for e in metrics(m) if e["event"] == "step"]
        self.assertEqual(len(steps), TOTAL)
        return steps, load(out)[0]

    def compare(self, args, rate, weight_decay=0.0, clip=0.0, noise=None):
        losses, norms, rates, final = torch_steps(self.init, self.data, rate, weight_decay, clip,
                                                  noise)
        for ranks in (1, 2):
            steps, layers = self.train(args, ranks)
            for s, loss, norm, lr in zip(steps, losses, norms, rates):
                self.assertAlmostEqual(s["lr"], lr, delta=1e-12, msg=f"step {s['step']}")
                self.assertAlmostEqual(s["loss"], loss, delta=1e-5 * loss, msg=f"step {s['step']}")
                self.assertAlmostEqual(s["grad_norm"], norm, delta=1e-5 * norm,
                                       msg=f"step {s['step']}")
            for (k, b), (tk, tb) in zip(layers, final):
                self.assertLess(np.abs(k - tk).max(), 1e-5, f"{ranks} ranks")
                self.assertLess(np.abs(b - tb).max(), 1e-5, f"{ranks} ranks")
        return norms

    def test_cosine_with_warmup(self):
        rate = lambda t: schedule(t, "cosine", warmup=5, min_lr=0.001)  # noqa: E731
        self.compare(["--lr-schedule", "cosine", "--warmup-steps", "5", "--min-lr", "0.001"], rate)

    def test_step_schedule(self):
        rate = lambda t: schedule(t, "step", step_epochs=2, gamma=0.5)  # noqa: E731
        self.compare(["--lr-schedule", "step", "--lr-step-epochs", "2", "--lr-gamma", "0.5"], rate)

    def test_adamw_decays_kernels_not_biases(self):
        # Decayed biases would drift by about 24 x lr x 0.5 x |b| from torch's: the starting
        # biases are large enough for that to exceed the tolerance many times over.
        self.assertGreater(max(np.abs(b).max() for _, b in load(self.init)[0]), 1e-3)
        self.compare(["--weight-decay", "0.5"], schedule, weight_decay=0.5)

    def test_clipping_in_some_steps_and_not_others(self):
        norms = torch_steps(self.init, self.data, schedule)[1]
        clip = float(np.median(norms))
        clipped = self.compare(["--clip-norm", repr(clip)], schedule, clip=clip)
        self.assertTrue(any(n > clip for n in clipped) and any(n < clip for n in clipped), clipped)

    def test_gaussian_noise(self):
        self.compare(["--noise", "gaussian:0.2"], schedule, noise=("gaussian", 0.2))

    def test_mask_noise(self):
        self.compare(["--noise", "mask:0.3"], schedule, noise=("mask", 0.3))


class Denoising(cli_support.BinaryTest):
    """--noise with shuffling and windows (rows read in blocks, exchanged between the ranks)."""
    @classmethod
    def setUpClass(cls):
        cls.shared = cli_support.temp_dir()
        cls.data = os.path.join(cls.shared, "d.h5")
        cli_support.write(cls.data, rows=ROWS, cols=COLS, seed=8)
        cli_support.write(cls.data, name="/val", rows=40, cols=COLS, seed=9)

    def train(self, ranks, noise, *extra):
        out, m = self.path(f"n{ranks}_{noise}.h5"), self.path(f"n{ranks}_{noise}.jsonl")
        args = ["train", "--data", self.data, "--layers", str(CODE), "--batch-size", str(BATCH),
                "--epochs", str(EPOCHS), "--lr", "0.01", "--window-rows", "40",
                "--data-block-rows", "8", "--seed", "6", "--noise", noise, "--log-every", "1",
                "--val-dataset", "/val", "--checkpoint", out, "--metrics", m, "--quiet"]
        rc, _, err = run(args + list(extra), ranks)
        self.assertEqual(rc, 0, err)
        return out, metrics(m)

    def test_the_same_losses_on_1_2_3_ranks(self):
        clean = [e["loss"] for e in self.train(1, "none")[1] if e["event"] == "step"]
        for noise in ("gaussian:0.2", "mask:0.3"):
            runs = {p: self.train(p, noise) for p in (1, 2, 3)}
            one = [e["loss"] for e in runs[1][1] if e["event"] == "step"]
            self.assertGreater(max(abs(a - b) / b for a, b in zip(one, clean)), 1e-2)  # noise is on
            for p in (2, 3):
                steps = [e["loss"] for e in runs[p][1] if e["event"] == "step"]
                self.assertEqual(len(steps), len(one))
                for t, (a, b) in enumerate(zip(steps, one), 1):
                    self.assertAlmostEqual(a, b, delta=1e-5 * b, msg=f"{noise} P={p} step {t}")
                for (k, b), (k1, b1) in zip(load(runs[p][0])[0], load(runs[1][0])[0]):
                    self.assertLess(np.abs(k - k1).max(), 1e-5, f"{noise} P={p}")
                    self.assertLess(np.abs(b - b1).max(), 1e-5, f"{noise} P={p}")

    def test_resume_mid_epoch_is_bit_identical(self):
        # A checkpoint every 5 steps, all kept; resume from the first in the middle of an epoch
        # after the first (7 steps an epoch: windows of 40, 40 and 16 rows).
        whole, _ = self.train(2, "gaussian:0.2", "--checkpoint-every", "5", "--keep", "10")
        part = self.path("part.h5")
        with open(whole + ".step10", "rb") as src, open(part, "wb") as dst:
            dst.write(src.read())
        with h5py.File(part, "r") as f:
            self.assertEqual((f["train"].attrs["epoch"], f["train"].attrs["step_in_epoch"]), (1, 3))
        rc, _, err = run(["train", "--data", self.data, "--layers", str(CODE), "--batch-size",
                          str(BATCH), "--epochs", str(EPOCHS), "--lr", "0.01", "--window-rows",
                          "40", "--data-block-rows", "8", "--seed", "6", "--noise",
                          "gaussian:0.2", "--val-dataset", "/val", "--checkpoint", part,
                          "--resume", "--quiet"], 2)
        self.assertEqual(rc, 0, err)
        a, b = cli_support.weights(whole), cli_support.weights(part)
        for name in a:
            if name.startswith(("model/", "optimizer/")):
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    def test_validation_and_encode_see_clean_rows(self):
        out, events = self.train(2, "mask:0.5")
        with h5py.File(self.data, "r") as f:
            val = f["/val"][()]
        # The last epoch's val_loss is the clean rows' loss under the final weights.
        y = cli_support.forward(out, val)
        last = [e for e in events if e["event"] == "epoch"][-1]
        self.assertAlmostEqual(last["val_loss"], float(np.mean((y - val) ** 2)),
                               delta=1e-5 * last["val_loss"])
        codes = self.path("codes.h5")
        rc, _, err = run(["encode", "--model", out, "--data", self.data, "--dataset", "/val",
                          "--out", codes], 2)
        self.assertEqual(rc, 0, err)
        with h5py.File(codes, "r") as f:
            got = f["/codes"][()]
        np.testing.assert_allclose(got, cli_support.forward(out, val, encoder_only=True),
                                   rtol=1e-5, atol=1e-6)


class EarlyStop(cli_support.BinaryTest):
    def test_stops_at_the_right_epoch_and_keeps_the_best_model(self):
        # Training rows near 0.9, validation rows near 0.1: the better the model fits the
        # training rows, the worse its val_loss, which rises from the first epoch on.
        data = self.path("d.h5")
        rng = np.random.default_rng(5)
        with h5py.File(data, "w") as f:
            f["/train"] = 0.85 + 0.1 * rng.random((256, COLS), dtype=np.float32)
            f["/val"] = 0.05 + 0.1 * rng.random((64, COLS), dtype=np.float32)
        args = ["train", "--data", data, "--layers", "5", "--batch-size", "16", "--lr", "0.01",
                "--epochs", "20", "--val-dataset", "/val", "--early-stop", "3",
                "--min-delta", "0.0001", "--seed", "4"]
        ck, m = self.path("ck.h5"), self.path("m.jsonl")
        # A checkpoint at every epoch's last step (16 steps of 16 rows), all kept.
        rc, out, err = run(args + ["--checkpoint", ck, "--metrics", m, "--checkpoint-every",
                                   "16", "--keep", "30"], ranks=2)
        self.assertEqual(rc, 0, err)
        epochs = [e for e in metrics(m) if e["event"] == "epoch"]
        vals = [e["val_loss"] for e in epochs]
        best = int(np.argmin(vals)) + 1
        # Stopped after the third epoch without an improvement of 1e-4 on the best.
        self.assertEqual(len(epochs), best + 3, vals)
        self.assertTrue(all(v >= min(vals) - 1e-4 for v in vals[best:]), vals)
        # Each epoch's checkpoint holds the count after that epoch (what --resume continues).
        best_so_far, since = math.inf, 0
        for epoch, v in enumerate(vals, 1):
            if v < best_so_far - 1e-4:
                best_so_far, since = v, 0
            else:
                since += 1
            path = ck if epoch == len(vals) else f"{ck}.step{16 * epoch}"
            with h5py.File(path, "r") as f:
                self.assertEqual(f["train"].attrs["epochs_since_best"], since, epoch)
                self.assertAlmostEqual(f["train"].attrs["best_val_loss"], best_so_far,
                                       delta=1e-12, msg=epoch)
        self.assertIn(f"early stop after epoch {best + 3}: val_loss has not improved by 0.0001 "
                      f"for 3 epochs; the best was epoch {best}", out)
        # The best file holds the weights after `best` epochs: those of a run of that length.
        ref = self.path("ref.h5")
        rc, _, err = run(["train", "--data", data, "--layers", "5", "--batch-size", "16",
                          "--lr", "0.01", "--epochs", str(best), "--seed", "4", "--checkpoint",
                          ref, "--quiet"], ranks=2)
        self.assertEqual(rc, 0, err)
        kept, again = cli_support.weights(ck + ".best"), cli_support.weights(ref)
        for name, array in again.items():
            if name.startswith("model/"):
                np.testing.assert_array_equal(kept[name], array, err_msg=name)
        # Resuming an early-stopped run does nothing and says so.
        before = cli_support.weights(ck)
        rc, out, err = run(args + ["--checkpoint", ck, "--resume"], ranks=2)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"this run stopped early after epoch {best + 3} (the best was epoch "
                      f"{best}", out)
        after = cli_support.weights(ck)
        for name, array in before.items():
            np.testing.assert_array_equal(after[name], array, err_msg=name)
        # A new run refuses to replace the best model of another.
        os.remove(ck)
        line = self.assert_fails(args + ["--checkpoint", ck], 2,
                                 "(--early-stop's best model): an aetrain training checkpoint is "
                                 "already there")
        self.assertIn("--overwrite", line)


class BadRecipes(cli_support.BinaryTest):
    def test_bad_values_one_line_exit_2(self):
        data = self.path("d.h5")
        cli_support.write(data, rows=ROWS, cols=COLS)
        base = ["train", "--data", data, "--layers", "4", "--batch-size", "16", "--epochs", "2"]
        for args, needle in [
            (["--warmup-steps", "-1"], "--warmup-steps: must be at least 0, got -1"),
            (["--warmup-steps", "x"], "--warmup-steps: 'x' is not an integer"),
            (["--weight-decay", "-0.1"], "--weight-decay: must be in [0, inf), got -0.1"),
            (["--clip-norm", "big"], "--clip-norm: 'big' is not a number"),
            (["--lr-schedule", "linear"], "--lr-schedule: linear not in {constant,cosine,step}"),
            (["--lr-gamma", "0"], "--lr-gamma: must be in (0, inf), got 0"),
            (["--lr-step-epochs", "0"], "--lr-step-epochs: must be at least 1, got 0"),
            (["--warmup-steps", "12"], "--warmup-steps 12 is not shorter than the run: its 2 "
                                       "epochs are 12 steps of 16 rows"),
            (["--lr-schedule", "cosine", "--min-lr", "0.1"],
             "--min-lr 0.1 is above --lr 0.001: the cosine schedule runs down from --lr"),
            (["--early-stop", "2", "--checkpoint", self.path("c.h5")],
             "--early-stop watches val_loss: give validation data"),
            (["--early-stop", "2", "--val-dataset", "/train"],
             "--early-stop keeps the best model as CHECKPOINT.best: give --checkpoint"),
            (["--min-delta", "-1"], "--min-delta: must be in [0, inf), got -1"),
            (["--early-stop", "-2"], "--early-stop: must be at least 0, got -2"),
            (["--noise", "gauss:0.1"], "--noise: 'gauss:0.1' is not none, gaussian:SIGMA or mask:P"),
            (["--noise", "mask:1"], "--noise: 'mask:1': P must be in (0, 1)"),
            (["--noise", "gaussian:-0.1"], "--noise: 'gaussian:-0.1': SIGMA must be above 0"),
            (["--noise", "mask:lots"], "--noise: 'mask:lots': 'lots' is not a number"),
        ]:
            with self.subTest(args=args):
                self.assert_fails(base + args, 2, needle)

    def test_resume_with_another_recipe_is_refused(self):
        data, ck = self.path("d.h5"), self.path("c.h5")
        cli_support.write(data, rows=ROWS, cols=COLS)
        base = ["train", "--data", data, "--layers", "4", "--batch-size", "16", "--checkpoint", ck]
        recipe = ["--lr-schedule", "cosine", "--noise", "mask:0.2", "--clip-norm", "1"]
        rc, _, err = run(base + ["--epochs", "1"] + recipe, 2)
        self.assertEqual(rc, 0, err)
        with open(ck, "rb") as f:
            before = f.read()
        self.assert_fails(base + ["--epochs", "2", "--resume", "--noise", "mask:0.2"], 2,
                          f"{ck}: was trained with --lr-schedule cosine, --clip-norm 1; this run "
                          "asks for --lr-schedule constant, --clip-norm 0; resuming needs the "
                          "same values: pass --lr-schedule cosine --clip-norm 1")
        with open(ck, "rb") as f:
            self.assertEqual(f.read(), before)
        rc, _, err = run(base + ["--epochs", "2", "--resume"] + recipe, 2)
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
