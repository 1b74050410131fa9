#!/usr/bin/python3
"""What the checksums of checkpoint format 5 cost a checkpoint's write, measured side by side.

    tests/bench/bench_checkpoint.py --build build [--dir DIR] [--rounds 7]
                                    [--input 4096] [--layers 1024,256,64]

Runs the build's checkpoint_bench (tests/bench/checkpoint_bench.cpp), which writes the same
checkpoint of the wide model (4096-1024-256-64: 9.0 M parameters, params + m + v = 107 MB) in
turns, interleaved, each made durable as aetrain does (fsync, rename): format 4's contiguous
datasets without checksums as its writer did, the same with the disk started on each tree (as
format 5's writer does), and write_checkpoint (format 5: Fletcher-32 chunks and the file's
CRC-32). It prints the CPU first, then the median of each over the rounds and the medians of
the rounds' ratios. DIR (default: a new directory under /var/tmp, on disk) decides what the
fsync costs: a figure holds for that file system and disk.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from machine import cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default="build")
    p.add_argument("--dir")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--input", type=int, default=4096)
    p.add_argument("--layers", default="1024,256,64")
    a = p.parse_args()
    work = a.dir or tempfile.mkdtemp(prefix="aetrain-bench-", dir="/var/tmp")
    print("cpu:", cpu())
    df = subprocess.run(["df", "--output=source,fstype", work], capture_output=True,
                        text=True).stdout.split()
    print("files:", work, "on", " ".join(df[-2:]))
    out = subprocess.run([os.path.join(a.build, "tests", "checkpoint_bench"), "--dir", work,
                          "--rounds", str(a.rounds), "--input", str(a.input), "--layers",
                          a.layers], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("checkpoint_bench failed: " + out.stderr)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    size = lines[0]
    print(f"model {a.input}-{a.layers.replace(',', '-')}: {size['parameters']:,} parameters, "
          f"params + m + v = {size['bytes'] / 1e6:.0f} MB; {a.rounds} rounds, interleaved")
    times, rounds = {}, {}
    for line in lines[1:]:
        times.setdefault(line["what"], []).append(line["seconds"])
        rounds.setdefault(line["round"], {})[line["what"]] = line["seconds"]
    for what, s in times.items():
        print(f"  {what:24s} median {statistics.median(s) * 1e3:8.1f} ms   "
              f"(min {min(s) * 1e3:.1f}, max {max(s) * 1e3:.1f})")
    # Each round's ratio, then their median: the variants of a round ran side by side.
    for what, base in (("v5", "v4"), ("v5", "v4 writeback"), ("v4 writeback", "v4")):
        ratio = statistics.median(r[what] / r[base] for r in rounds.values())
        print(f"{what} over {base}: {(ratio - 1) * 100:+.1f}% (median of the rounds' ratios)")
    if not a.dir:
        os.rmdir(work)


if __name__ == "__main__":
    main()
