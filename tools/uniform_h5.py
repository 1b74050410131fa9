#!/usr/bin/python3
"""Write uniform random rows (the model card's np.random.rand(N, D)) to an HDF5 dataset.

    python3 tools/uniform_h5.py OUT.h5 --rows 100000 --cols 100 [--seed 0] [--dataset /train]
                                       [--dtype float32|float64]

Rows are written in blocks, so N x D may exceed memory.
"""
import argparse
import os

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--cols", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="/train")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    block = max(1, (64 << 20) // (8 * args.cols))
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as h5:
        ds = h5.create_dataset(args.dataset, (args.rows, args.cols), dtype=args.dtype)
        for start in range(0, args.rows, block):
            stop = min(args.rows, start + block)
            ds[start:stop] = rng.random((stop - start, args.cols)).astype(args.dtype)
    os.replace(tmp, args.out)
    print(f"{args.out}: {args.dataset} {args.rows} x {args.cols} {args.dtype}, uniform [0, 1)")


if __name__ == "__main__":
    main()
