#!/usr/bin/python3
"""2-D scatter of codes coloured by label, one panel per codes file.

    jobs/plot_codes.py OUT.png --labels FILE.h5:/test_labels CODES.h5[:/codes][=TITLE] ...

Codes wider than 2 are projected on their first two principal components. With Fashion-MNIST's
10 labels the legend names the classes.
"""
import argparse

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def read(spec, default):
    """FILE.h5[:/dataset] as an array."""
    path, _, name = spec.partition(":")
    with h5py.File(path, "r") as f:
        return f[name or default][()]


def project(codes):
    """The codes' coordinates on their first two principal components."""
    x = codes.astype(np.float64)
    if x.shape[1] <= 2:
        return x
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("codes", nargs="+", help="CODES.h5[:/codes][=TITLE]")
    ap.add_argument("--labels", required=True, help="FILE.h5:/dataset of integer labels")
    args = ap.parse_args()
    labels = read(args.labels, "/labels").astype(int)
    classes = np.unique(labels)
    names = FASHION if len(classes) == 10 and classes.max() == 9 else [str(c) for c in classes]
    fig, axes = plt.subplots(1, len(args.codes), figsize=(6 * len(args.codes), 5.5), squeeze=False)
    for ax, spec in zip(axes[0], args.codes):
        source, _, title = spec.partition("=")
        codes = read(source, "/codes")
        if len(codes) != len(labels):
            raise SystemExit(f"{source}: {len(codes)} codes but {len(labels)} labels")
        xy = project(codes)
        for c in classes:
            at = labels == c
            ax.scatter(xy[at, 0], xy[at, 1], s=2, alpha=0.6, label=names[list(classes).index(c)])
        ax.set_title(title or source)
        ax.set_xlabel("PC 1" if codes.shape[1] > 2 else "code 1")
        ax.set_ylabel("PC 2" if codes.shape[1] > 2 else "code 2")
    axes[0][-1].legend(markerscale=5, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"{args.out}: {len(labels)} points, {len(args.codes)} panel(s)")


if __name__ == "__main__":
    main()
