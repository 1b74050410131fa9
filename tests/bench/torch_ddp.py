#!/usr/bin/python3
"""The peer aetrain is measured against: the same dense autoencoder trained with PyTorch's
DistributedDataParallel (gloo, CPU), written the way most users would write it.

Started by bench_train.py as P processes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set);
run alone it is one rank. Same arguments as `aetrain train` (--layers without the input).
Each rank reads a contiguous shard of N/P rows, shuffles it every epoch, and takes B/P rows
per step; the model mirrors the encoder, Glorot-uniform kernels and zero biases, Adam with
eps 1e-7, MSE over all elements. Prints one JSON line per epoch (rank 0):
{"epoch", "loss", "samples_per_s", "seconds"}.
"""
import argparse
import json
import os
import time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}


def autoencoder(dims, hidden, output):
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b)
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers += [lin, ACTIVATIONS[output if i == len(dims) - 2 else hidden]()]
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--dataset", default="/train")
    ap.add_argument("--layers", required=True)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--output-activation", default="sigmoid")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    with h5py.File(args.data, "r") as f:
        n, d = f[args.dataset].shape
        per = n // world
        x = torch.from_numpy(np.asarray(f[args.dataset][rank * per:(rank + 1) * per],
                                        dtype=np.float32))
    widths = [int(w) for w in args.layers.split(",")]
    dims = [d] + widths + widths[-2::-1] + [d]
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(autoencoder(dims, args.activation, args.output_activation))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-7)
    local = args.batch_size // world
    generator = torch.Generator().manual_seed(args.seed * 7919 + rank)
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(per, generator=generator)
        total = torch.zeros(2, dtype=torch.float64)
        dist.barrier()
        start = time.perf_counter()
        for s in range(0, per, local):
            xb = x[order[s:s + local]]
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(xb), xb)
            loss.backward()
            opt.step()
            total += torch.tensor([loss.item() * len(xb), len(xb)], dtype=torch.float64)
        dist.all_reduce(total)
        seconds = time.perf_counter() - start
        if rank == 0:
            print(json.dumps({"epoch": epoch, "loss": total[0].item() / total[1].item(),
                              "samples_per_s": total[1].item() / seconds, "seconds": seconds}),
                  flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
