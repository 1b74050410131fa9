#!/usr/bin/python3
"""Write a synthetic dataset in physical units with mixed scales, the kind instruments record.

    python3 tools/physical_h5.py OUT.h5 [--train 20000] [--test 5000] [--seed 0]

Every row is one state of a system driven by 4 hidden factors, seen through 40 sensors in four
groups: temperatures in kelvin (about 290 +- 15), pressures in pascal (about 1e5 +- 3e3), trace
concentrations in mol/mol (about 4e-4 +- 1e-4) and flow speeds in m/s (-20 to 30). Each sensor
reads a smooth nonlinear function of the factors plus 1% noise, so the rows lie near a curved
4-dimensional surface that a linear method (PCA) can only approximate. Writes float64 datasets
/train and /test, with per-column attributes `units` and `names` on both.
"""
import argparse
import os

import h5py
import numpy as np

GROUPS = [  # name, units, offsets, scales
    ("temperature", "K", (270.0, 310.0), (5.0, 20.0)),
    ("pressure", "Pa", (0.98e5, 1.02e5), (500.0, 3000.0)),
    ("concentration", "mol/mol", (3e-4, 5e-4), (2e-5, 1e-4)),
    ("speed", "m/s", (-5.0, 5.0), (2.0, 25.0)),
]


def sensors(seed):
    """Each sensor's response (weights, phase) and its offset and scale."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((40, 4))
    phases = rng.uniform(0, 2 * np.pi, 40)
    offsets = np.concatenate([rng.uniform(*g[2], 10) for g in GROUPS])
    scales = np.concatenate([rng.uniform(*g[3], 10) for g in GROUPS])
    return weights, phases, offsets, scales


def rows(n, seed, model):
    weights, phases, offsets, scales = model
    rng = np.random.default_rng(seed)
    factors = rng.uniform(-1.5, 1.5, (n, 4))
    signal = np.sin(factors @ weights.T + phases)  # smooth, nonlinear, in [-1, 1]
    noisy = signal + 0.01 * rng.standard_normal(signal.shape)
    return offsets + scales * noisy


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--test", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = sensors(args.seed)
    names = [f"{g[0]}_{i}" for g in GROUPS for i in range(10)]
    units = [g[1] for g in GROUPS for _ in range(10)]
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        for name, n, seed in (("train", args.train, args.seed + 1), ("test", args.test, args.seed + 2)):
            d = f.create_dataset(name, data=rows(n, seed, model))
            d.attrs["names"] = names
            d.attrs["units"] = units
    os.replace(tmp, args.out)
    x = rows(1000, args.seed + 1, model)
    print(f"{args.out}: /train {args.train} x 40, /test {args.test} x 40 float64 in K, Pa, "
          f"mol/mol and m/s; values from {x.min():.3g} to {x.max():.3g}, column spreads from "
          f"{x.std(axis=0).min():.2g} to {x.std(axis=0).max():.2g}")


if __name__ == "__main__":
    main()
