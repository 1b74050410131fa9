#!/usr/bin/python3
"""The single-cell peer: the same dense autoencoder trained with PyTorch DDP (gloo, CPU) on an
AnnData CSR matrix, with a sparse first layer (torch.sparse.mm), written the way a user who
cares about sparsity would write it.

Started by bench_single_cell.py as P processes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
alone it is one rank. Each rank reads its contiguous shard of cells from the h5ad's X (CSR,
with h5py, into scipy), applies the transforms aetrain applies (each cell to --size-factor
counts, log1p) and standardizes every gene with the statistics of all cells, folded into the
first layer so that the input stays sparse: ((x - m) / s) W = (x / s) W - (m / s) W. The
reconstruction is compared with the dense standardized batch. Adam (eps 1e-7), Glorot-uniform
kernels, zero biases, relu hidden layers, linear code and output. Prints one JSON line per
epoch (rank 0): {"epoch", "loss", "samples_per_s", "seconds"}.
"""
import argparse
import json
import os
import time

import h5py
import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


def read_csr(path, dataset, first, last):
    with h5py.File(path, "r") as f:
        g = f[dataset]
        cols = int(g.attrs["shape"][1])
        ptr = g["indptr"][first:last + 1].astype(np.int64)
        data = g["data"][ptr[0]:ptr[-1]].astype(np.float32)
        idx = g["indices"][ptr[0]:ptr[-1]].astype(np.int64)
    return sp.csr_matrix((data, idx, ptr - ptr[0]), shape=(last - first, cols))


class SparseInput(nn.Module):
    """The first layer on sparse rows already divided by the scale: x W^T + b - (m/s) W^T."""

    def __init__(self, cols, width, shift):
        super().__init__()
        self.linear = nn.Linear(cols, width)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("shift", shift)  # m / s

    def forward(self, x):
        w = self.linear.weight
        return torch.sparse.mm(x, w.t()) + self.linear.bias - self.shift @ w.t()


class Model(nn.Module):
    def __init__(self, cols, layers, shift):
        super().__init__()
        dims = [cols] + layers + layers[-2::-1] + [cols]
        self.first = SparseInput(cols, dims[1], shift)
        rest = []
        for i, (a, b) in enumerate(zip(dims[1:-1], dims[2:])):
            lin = nn.Linear(a, b)
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            rest.append(lin)
        self.rest = nn.ModuleList(rest)
        self.code_index = len(layers) - 1  # the code layer's output is linear

    def forward(self, x):
        h = self.first(x)
        h = h if self.code_index == 0 else torch.relu(h)
        for i, lin in enumerate(self.rest):
            h = lin(h)
            last = i == len(self.rest) - 1
            if not last and i + 1 != self.code_index:
                h = torch.relu(h)
        return h


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--dataset", default="X")
    ap.add_argument("--layers", required=True)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size-factor", type=float, default=1e4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    with h5py.File(a.data, "r") as f:
        rows, cols = (int(v) for v in f[a.dataset].attrs["shape"])
    first, last = rank * rows // world, (rank + 1) * rows // world
    x = read_csr(a.data, a.dataset, first, last)
    # The transforms, then the statistics of every cell (summed over the ranks).
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale_rows = np.where(totals > 0, a.size_factor / np.maximum(totals, 1e-30), 0.0)
    x = sp.diags(scale_rows.astype(np.float32)) @ x
    x.data = np.log1p(x.data)
    sums = torch.tensor(np.stack([np.asarray(x.sum(axis=0)).ravel(),
                                  np.asarray(x.multiply(x).sum(axis=0)).ravel(),
                                  np.full(cols, x.shape[0], np.float64)]), dtype=torch.float64)
    if world > 1:
        dist.all_reduce(sums)
    mean = sums[0] / sums[2]
    std = torch.sqrt(torch.clamp(sums[1] / sums[2] - mean ** 2, min=0))
    std = torch.where(std > 0, std, torch.ones_like(std))
    inv = (1.0 / std).numpy().astype(np.float32)
    xs = (x @ sp.diags(inv)).tocsr().astype(np.float32)  # x / s, still sparse
    shift = (mean / std).float()
    torch.manual_seed(a.seed)
    model = Model(cols, [int(v) for v in a.layers.split(",")], shift)
    if world > 1:
        model = DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, eps=1e-7)
    local_batch = a.batch_size // world
    steps = xs.shape[0] // local_batch
    rng = np.random.default_rng(a.seed + rank)
    for epoch in range(a.epochs):
        order = rng.permutation(xs.shape[0])
        start, total = time.perf_counter(), 0.0
        for s in range(steps):
            rows_b = np.sort(order[s * local_batch:(s + 1) * local_batch])
            b = xs[rows_b].tocoo()
            xb = torch.sparse_coo_tensor(np.vstack([b.row, b.col]), b.data, b.shape)
            target = torch.from_numpy(b.toarray()) - shift  # the standardized batch, dense
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((model(xb) - target) ** 2)
            loss.backward()
            opt.step()
            total += float(loss)
        seconds = time.perf_counter() - start
        if rank == 0:
            print(json.dumps({"epoch": epoch + 1, "loss": total / max(steps, 1),
                              "samples_per_s": steps * a.batch_size / seconds,
                              "seconds": seconds}), flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
