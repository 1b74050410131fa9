#!/usr/bin/python3
"""Training and validation loss curves from an aetrain metrics file.

    jobs/plot_loss.py METRICS.jsonl OUT.png [--title TEXT]

Plots the mean training loss of every epoch, the validation loss when the run had validation
data, and the step losses when the run logged them (--log-every).
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("out")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    with open(args.metrics) as f:
        events = [json.loads(line) for line in f if line.strip()]
    epochs = [e for e in events if e["event"] == "epoch"]
    steps = [e for e in events if e["event"] == "step"]
    if not epochs:
        raise SystemExit(f"{args.metrics}: no epoch lines")
    per_epoch = epochs[-1]["step"] / epochs[-1]["epoch"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if steps:
        ax.plot([s["step"] / per_epoch for s in steps], [s["loss"] for s in steps],
                color="0.8", lw=0.8, label="step loss")
    ax.plot([e["epoch"] for e in epochs], [e["loss"] for e in epochs], "o-",
            label="training loss (epoch mean)")
    if all("val_loss" in e for e in epochs):
        ax.plot([e["epoch"] for e in epochs], [e["val_loss"] for e in epochs], "s-",
                label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(args.title or args.metrics)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"{args.out}: {len(epochs)} epochs, last training loss {epochs[-1]['loss']:.5f}"
          + (f", validation {epochs[-1]['val_loss']:.5f}" if "val_loss" in epochs[-1] else ""))


if __name__ == "__main__":
    main()
