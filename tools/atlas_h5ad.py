#!/usr/bin/env python3
"""A synthetic single-cell atlas with known cell types, written as the tools of the field write
it: negative-binomial counts of CELLS cells x GENES genes (a fraction DENSITY non-zero), each
cell type with its own expression programme and each cell its own library size.

  atlas_h5ad.py OUT.h5ad --cells 20000 --genes 2000 --density 0.05 --types 8 [--tenx OUT_10x.h5]
                [--dense OUT_dense.h5] [--seed 0]

OUT.h5ad is written by anndata (CSR X of float32 counts, obs cell_type, var highly_variable:
the 20% of genes that vary most between types); --tenx also writes the 10x Genomics v3 layout
(/matrix CSC genes x cells, int32 data, int64 indices and indptr, barcodes, features) with
h5py, and --dense the same counts as a dense float32 /X in plain HDF5.
"""
import argparse

import h5py
import numpy as np
import scipy.sparse as sp


def programmes(genes, types, seed):
    """Each type's mean expression of each gene: a shared base, 30% of genes moved per type."""
    rng = np.random.default_rng([seed, 0])
    base = rng.gamma(0.6, 1.0, genes)
    moved = rng.random((types, genes)) < 0.3
    return base * np.exp(rng.normal(0.0, 1.2, (types, genes)) * moved)


def counts(cells, density, prog, rng):
    """Negative-binomial counts (dispersion 2) of `cells` cells of random types, the means
    scaled so that about `density` of them are non-zero."""
    kind = rng.integers(0, len(prog), cells)
    mu = prog[kind] * rng.lognormal(0.0, 0.3, cells)[:, None]
    r, lo, hi = 2.0, 1e-6, 1e3
    for _ in range(60):
        s = np.sqrt(lo * hi)
        if 1 - ((r / (r + s * mu)) ** r).mean() > density:
            hi = s
        else:
            lo = s
    mu *= np.sqrt(lo * hi)
    return sp.csr_matrix(rng.negative_binomial(r, r / (r + mu)).astype(np.float32)), kind


def main():
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("out")
    a.add_argument("--cells", type=int, default=20000)
    a.add_argument("--genes", type=int, default=2000)
    a.add_argument("--density", type=float, default=0.05)
    a.add_argument("--types", type=int, default=8)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--tenx")
    a.add_argument("--dense")
    args = a.parse_args()
    import anndata
    import pandas as pd

    # In pieces of cells, so that the dense intermediate stays small.
    prog = programmes(args.genes, args.types, args.seed)
    parts, kinds = [], []
    step = max(1, 4_000_000 // args.genes)
    for i, first in enumerate(range(0, args.cells, step)):
        x, kind = counts(min(step, args.cells - first), args.density, prog,
                         np.random.default_rng([args.seed, i + 1]))
        parts.append(x)
        kinds.append(kind)
    x = sp.vstack(parts).tocsr()
    x.sort_indices()
    kind = np.concatenate(kinds)
    names = [f"cell{i}" for i in range(args.cells)]
    genes = [f"gene{j}" for j in range(args.genes)]
    spread = np.asarray(x.power(2).mean(axis=0)).ravel() - np.asarray(x.mean(axis=0)).ravel() ** 2
    hv = np.zeros(args.genes, bool)
    hv[np.argsort(-spread)[: max(1, args.genes // 5)]] = True
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"type{k}" for k in kind])}, index=names)
    var = pd.DataFrame({"highly_variable": hv}, index=genes)
    anndata.AnnData(X=x, obs=obs, var=var).write_h5ad(args.out)
    if args.tenx:
        csc = x  # genes x cells compressed by cells: the arrays of x's CSR
        with h5py.File(args.tenx, "w") as f:
            m = f.create_group("matrix")
            m.create_dataset("data", data=csc.data.astype(np.int32))
            m.create_dataset("indices", data=csc.indices.astype(np.int64))
            m.create_dataset("indptr", data=csc.indptr.astype(np.int64))
            m.create_dataset("shape", data=np.array([args.genes, args.cells], np.int32))
            m.create_dataset("barcodes", data=np.array([n.encode() for n in names]))
            feat = m.create_group("features")
            feat.create_dataset("id", data=np.array([f"ENSG{j:011d}".encode() for j in range(args.genes)]))
            feat.create_dataset("name", data=np.array([g.encode() for g in genes]))
            feat.create_dataset("feature_type", data=np.array([b"Gene Expression"] * args.genes))
            feat.create_dataset("genome", data=np.array([b"synthetic"] * args.genes))
    if args.dense:
        with h5py.File(args.dense, "w") as f:
            f.create_dataset("X", data=x.toarray())


if __name__ == "__main__":
    main()
