#!/usr/bin/python3
"""Convert Fashion-MNIST's IDX files to one HDF5 file that aetrain reads.

    python3 tools/fmnist_to_h5.py OUT.h5 [--src /usr/share/datasets/fashion-mnist]

Writes /train (60000 x 784) and /test (10000 x 784) as float32 pixels / 255, one image per row,
and /train_labels, /test_labels (uint8). The IDX files come with Debian's dataset-fashion-mnist.
"""
import argparse
import gzip
import os
import struct
import sys

import h5py
import numpy as np

SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path):
    """An IDX file (gzipped or not) of unsigned bytes as a numpy array of its shape."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        sys.exit(f"{path}: too short for an IDX file")
    zero, kind, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or kind != 0x08:
        sys.exit(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    values = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(dims)):
        sys.exit(f"{path}: holds {values.size} values, its header says {dims}")
    return values.reshape(dims)


def find(src, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(src, name)):
            return os.path.join(src, name)
    sys.exit(f"{src}: no {stem}[.gz] (install Debian's dataset-fashion-mnist)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as h5:
        for split, prefix in SPLITS.items():
            images = read_idx(find(args.src, f"{prefix}-images-idx3-ubyte"))
            labels = read_idx(find(args.src, f"{prefix}-labels-idx1-ubyte"))
            if images.shape[0] != labels.shape[0]:
                sys.exit(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
            x = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255)
            h5.create_dataset(split, data=x)
            h5.create_dataset(split + "_labels", data=labels)
            print(f"{args.out}: /{split} {x.shape[0]} x {x.shape[1]} float32, "
                  f"/{split}_labels {labels.shape[0]} uint8")
        h5.attrs["source"] = "Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017), pixels / 255"
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
