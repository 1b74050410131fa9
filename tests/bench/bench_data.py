#!/usr/bin/python3
"""The data path at scale, measured side by side in one run (a benchmark, not a test).

    tests/bench/bench_data.py --build build [--repeats 3] [--big-gib 4] [--work DIR] [--cold]

1. Fashion-MNIST 784-512-128-32, batch 256, 2 ranks x 1 thread, 4 epochs, the runs of each
   repeat interleaved: every row in memory (today's rate), then in windows of a quarter of the
   rows (--window-rows), stored contiguous, chunked and gzip-compressed (h5py's own chunks), and
   split over 8 files. Prints the steady samples/s (median of the epochs after the first, median
   of the repeats), its ratio to the in-memory rate, the data timer's share of the step, peak
   memory per rank (and before the data started), windows per epoch, and the bytes read per
   epoch over all ranks against the bytes stored.
2. Bytes read per epoch over all ranks for 1, 2 and 4 ranks on the gzip file, in windows.
3. A synthetic dataset of --big-gib GiB (256 float32 columns) trained for one epoch on 2 ranks
   in windows of an eighth of its rows, and in one window: the rate, memory and bytes read. With --cold (root) the
   page cache is dropped first, so the rows come from the disk.
It prints the CPU and its vector extensions first: a figure holds for that CPU only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from machine import aetrain_version, cpu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
FMNIST = ["--layers", "512,128,32", "--batch-size", "256"]


def env(threads=1):
    return dict(os.environ, OMP_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
                OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_tcp_if_include="lo")


def train(build, data, args, work, ranks=2, dataset="/train"):
    """One run; its start and end metrics and the per-epoch rates after the first."""
    metrics = os.path.join(work, "m.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    bind = "core" if ranks <= os.cpu_count() else "none"
    cmd = ["mpirun", "-n", str(ranks), "--bind-to", bind, "--map-by", ":OVERSUBSCRIBE",
           os.path.join(build, "aetrain"), "train", "--data"] + data + \
          ["--dataset", dataset, "--metrics", metrics, "--quiet"] + args
    subprocess.run(cmd, check=True, env=env())
    with open(metrics) as f:
        lines = [json.loads(line) for line in f]
    epochs = [l for l in lines if l["event"] == "epoch"]
    return lines[0], lines[-1], [e["samples_per_s"] for e in epochs[1:]] or \
        [epochs[0]["samples_per_s"]]


def data_share(end):
    """The data timer's share of a step, the slowest rank's."""
    t = end["timers"]
    step = sum(t[p]["max"] for p in ("data", "forward", "backward", "allreduce", "update"))
    return t["data"]["max"] / step


def storage(path, dataset="/train"):
    with h5py.File(path, "r") as f:
        return f[dataset].id.get_storage_size()


def fashion_mnist(build, work, repeats):
    src = os.path.join(work, "fmnist.h5")
    if not os.path.exists(src):
        subprocess.run([PYTHON, os.path.join(ROOT, "tools", "fmnist_to_h5.py"), src], check=True,
                       stdout=subprocess.DEVNULL)
    with h5py.File(src, "r") as f:
        x = f["/train"][()]
    gz = os.path.join(work, "fmnist-gzip.h5")
    with h5py.File(gz, "w") as f:
        f.create_dataset("/train", data=x, chunks=True, compression="gzip")
        chunks = f["/train"].chunks
    parts = [os.path.join(work, f"fmnist-{i}.h5") for i in range(8)]
    for i, p in enumerate(parts):
        with h5py.File(p, "w") as f:
            f["/train"] = x[i * 7500:(i + 1) * 7500]
    quarter = ["--window-rows", str(len(x) // 4)]
    cases = [("every row in memory", [src], []),
             ("contiguous, a quarter", [src], quarter),
             (f"chunked {chunks} + gzip, a quarter", [gz], quarter),
             ("8 files, a quarter", parts, quarter)]
    runs = {name: [] for name, _, _ in cases}
    for _ in range(repeats):
        for name, data, extra in cases:
            runs[name].append(train(build, data, FMNIST + ["--epochs", "4"] + extra, work))
    base = statistics.median(statistics.median(r[2]) for r in runs[cases[0][0]])
    print(f"\nFashion-MNIST 784-512-128-32, batch 256, 2 ranks x 1 thread, 4 epochs; "
          f"{x.nbytes / 2**20:.0f} MiB of float32 rows; medians of {repeats}")
    print("| data | budget MiB/rank | windows/epoch | samples/s | of in-memory | data timer | "
          "peak MiB/rank (before data) | read MB/epoch (stored MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, data, _ in cases:
        r = runs[name]
        rate = statistics.median(statistics.median(x[2]) for x in r)
        start, end = r[-1][0], r[-1][1]
        stored = sum(storage(p) for p in data)
        read = statistics.median(x[1]["read_bytes"]["sum"] for x in r) / 4
        print(f"| {name} | {start['data']['memory_budget_mib']:.0f} | "
              f"{start['data']['windows_per_epoch']} | {rate:,.0f} | {rate / base:.1%} | "
              f"{statistics.median(data_share(x[1]) for x in r):.1%} | "
              f"{end['peak_memory_mib']['max']:.0f} ({end['memory_before_data_mib']['max']:.0f}) | "
              f"{read / 1e6:.1f} ({stored / 1e6:.1f}) |", flush=True)
    return gz, x.nbytes


def bytes_per_rank_count(build, work, gz, nbytes):
    stored = storage(gz)
    print(f"\nBytes read per epoch over all ranks, {os.path.basename(gz)} "
          f"({stored / 1e6:.1f} MB stored), windows of 15,000 rows, 2 epochs")
    print("| ranks | read MB/epoch | of stored |")
    print("|---|---|---|")
    for ranks in (1, 2, 4):
        _, end, _ = train(build, [gz], FMNIST + ["--epochs", "2", "--window-rows", "15000"],
                          work, ranks=ranks)
        read = end["read_bytes"]["sum"] / 2
        print(f"| {ranks} | {read / 1e6:.1f} | {read / stored:.3f} |", flush=True)


def big(build, work, gib, cold):
    path = os.path.join(work, "big.h5")
    cols = 256
    rows = int(gib * 2**30) // (4 * cols)
    if not os.path.exists(path) or storage(path) != rows * cols * 4:
        rng = np.random.default_rng(1)
        with h5py.File(path, "w") as f:
            d = f.create_dataset("/train", (rows, cols), dtype=np.float32)
            for i in range(0, rows, 1 << 18):
                n = min(1 << 18, rows - i)
                d[i:i + n] = rng.random((n, cols), dtype=np.float32)
    model = ["--layers", "64,16", "--batch-size", "256", "--epochs", "1"]
    print(f"\nSynthetic {rows:,} x {cols} float32 ({gib} GiB, "
          f"{'cold: page cache dropped' if cold else 'page cache warm'}), 256-64-16, batch 256, "
          f"2 ranks x 1 thread, one epoch; windows of an eighth of the rows, and every row in "
          f"one window")
    print("| data | windows/epoch | samples/s | data timer | peak MiB/rank (before data) | "
          "read GiB |")
    print("|---|---|---|---|---|---|")
    for window in (str(rows // 8), str(rows)):
        if cold:  # each run reads from the disk
            subprocess.run(["sync"], check=True)
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        start, end, rates = train(build, [path], model + ["--window-rows", window], work)
        windows = start["data"]["windows_per_epoch"]
        name = "every row in memory" if start["data"]["in_memory"] else \
            f"windows of at most {start['data']['window_rows']:,} rows"
        print(f"| {name} | {windows} | {rates[0]:,.0f} | {data_share(end):.1%} | "
              f"{end['peak_memory_mib']['max']:.0f} ({end['memory_before_data_mib']['max']:.0f}) | "
              f"{end['read_bytes']['sum'] / 2**30:.2f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-gib", type=float, default=4)
    ap.add_argument("--work", default=None)
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="aetrain-bench-data-")
    os.makedirs(work, exist_ok=True)
    print(f"CPU: {cpu()}; {aetrain_version(args.build)}", flush=True)
    gz, nbytes = fashion_mnist(args.build, work, args.repeats)
    bytes_per_rank_count(args.build, work, gz, nbytes)
    if args.big_gib > 0:
        big(args.build, work, args.big_gib, args.cold)


if __name__ == "__main__":
    sys.exit(main())
