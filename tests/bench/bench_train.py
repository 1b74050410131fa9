#!/usr/bin/python3
"""Training throughput of aetrain against Eigen's GEMM and PyTorch DDP, measured side by side.

    tests/bench/bench_train.py --build build [--cases card,fmnist,wide] [--repeats 3] [--torch]
                               [--also build-eigen] [--variant "--deterministic"]

For every case and every launch (1 rank x 2 threads, 2 ranks x 1 thread) it runs, `repeats`
times and interleaved:
  aetrain train             steady samples/s = median per-epoch rate after the first epoch;
  gemm_bench (P copies)     each GEMM library of the build (Eigen's own products, and BLIS's
                            when aetrain uses it) on the step's layer shapes at the rank's
                            batch, with the same threads, all copies at once; the best one is
                            the yardstick ("of GEMM");
  torch_ddp.py (--torch)    the PyTorch DDP peer, same model, data, ranks and threads;
  aetrain of --also builds  (another backend, say) in the same loop: its samples/s;
  --variant options         the same build with these train options added, in the same loop:
                            its samples/s and its cost (the plain run's rate over its).
It prints medians: samples/s, achieved GFLOP/s (6 x parameters x samples/s), its ratio to the
GEMM rate, the speed-up over PyTorch, aetrain's peak memory per rank, and the start-up time of a
tiny run. It prints first the CPU and its vector extensions, aetrain's GEMM backend and the
peer's BLAS: a figure holds for that CPU only. Cases:
  card    the model card: input 100, hidden 50, batch 10, 100,000 uniform rows
  fmnist  784-512-128-32, batch 256, Fashion-MNIST's 60,000 training images
  wide    4096-1024-256-64, batch 512, 16,384 uniform rows
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from machine import aetrain_version, cpu, torch_blas

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
CASES = {
    "card": dict(cols=100, rows=100_000, layers=[50], batch=10, epochs=3),
    "fmnist": dict(cols=784, rows=60_000, layers=[512, 128, 32], batch=256, epochs=4),
    "wide": dict(cols=4096, rows=16_384, layers=[1024, 256, 64], batch=512, epochs=3),
}
LAUNCHES = [(1, 2), (2, 1)]  # (ranks, threads per rank)
# The peer at its best (see the peer's notes): no page faults on every Adam step.
TORCH_MALLOC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"


def env(threads, **extra):
    e = dict(os.environ, OMP_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
             OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    e.update(extra)
    return e


def parameters(cols, layers):
    dims = [cols] + layers + layers[-2::-1] + [cols]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def data_file(work, name, case):
    path = os.path.join(work, f"{name}.h5")
    if not os.path.exists(path):
        if name == "fmnist":
            subprocess.run([PYTHON, os.path.join(ROOT, "tools", "fmnist_to_h5.py"), path],
                           check=True, stdout=subprocess.DEVNULL)
        else:
            subprocess.run([PYTHON, os.path.join(ROOT, "tools", "uniform_h5.py"), path,
                            "--rows", str(case["rows"]), "--cols", str(case["cols"])],
                           check=True, stdout=subprocess.DEVNULL)
    return path


def run_aetrain(build, data, case, ranks, threads, work, extra=()):
    metrics = os.path.join(work, "bench-metrics.jsonl")
    cmd = ["mpirun", "-n", str(ranks), "--bind-to", "core" if threads == 1 else "none",
           os.path.join(build, "aetrain"), "train", "--data", data, "--dataset", "/train",
           "--layers", ",".join(map(str, case["layers"])), "--batch-size", str(case["batch"]),
           "--epochs", str(case["epochs"]), "--threads", str(threads), "--metrics", metrics,
           "--quiet"] + list(extra)
    subprocess.run(cmd, check=True, env=env(threads), stderr=subprocess.DEVNULL)
    with open(metrics) as f:
        lines = [json.loads(line) for line in f]
    rates = [l["samples_per_s"] for l in lines if l["event"] == "epoch"][1:]
    end = lines[-1]
    return statistics.median(rates), end["peak_memory_mib"]["max"]


def run_gemm(build, case, ranks, threads, backend):
    cmd = [os.path.join(build, "tests", "gemm_bench"), "--layers",
           ",".join(map(str, [case["cols"]] + case["layers"])), "--batch",
           str(case["batch"] // ranks), "--threads", str(threads), "--seconds", "2",
           "--backend", backend]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env(threads))
             for _ in range(ranks)]
    return sum(json.loads(p.communicate()[0])["gflops"] for p in procs)


def run_torch(data, case, ranks, threads):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [PYTHON, os.path.join(ROOT, "tests", "bench", "torch_ddp.py"), "--data", data,
           "--layers", ",".join(map(str, case["layers"])), "--batch-size", str(case["batch"]),
           "--epochs", str(case["epochs"]), "--threads", str(threads)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                              env=env(threads, RANK=str(r), WORLD_SIZE=str(ranks),
                                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                                      GLIBC_TUNABLES=TORCH_MALLOC))
             for r in range(ranks)]
    out = [p.communicate()[0] for p in procs][0]
    rates = [json.loads(line)["samples_per_s"] for line in out.splitlines()][1:]
    return statistics.median(rates)


def startup(build, data, ranks):
    """Wall seconds of a tiny run (one epoch of 1,000 rows, 100-8-100), median of 5."""
    cmd = [os.path.join(build, "aetrain"), "train", "--data", data, "--layers", "8",
           "--epochs", "1", "--quiet", "--threads", "1"]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--bind-to", "core"] + cmd
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env(1), stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default="/tmp/aetrain-bench")
    ap.add_argument("--cases", default="card,fmnist,wide")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch", action="store_true", help="also run the PyTorch DDP peer")
    ap.add_argument("--also", action="append", default=[],
                    help="another build directory whose aetrain runs beside (repeatable)")
    ap.add_argument("--variant", action="append", default=[],
                    help="train options whose cost to measure beside (repeatable), e.g. "
                         "--variant=--deterministic")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    version = aetrain_version(args.build)
    for other in args.also:
        print(f"# --also {other}: {aetrain_version(other)}")
    backends = ["eigen"] + (["blis"] if "BLIS" in version else [])
    print(f"# CPU: {cpu()}\n# aetrain: {version}\n"
          f"# peer: {torch_blas(env(1)) if args.torch else 'not run'}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}\n"
          f"# medians of {args.repeats}; GEMM: the best of {', '.join(backends)}", flush=True)
    header = ("| case | ranks x threads | samples/s | GFLOP/s | GEMM GFLOP/s (best of) | of GEMM "
              "| PyTorch samples/s | speed-up | peak MiB/rank |" +
              "".join(f" {other} samples/s |" for other in args.also) +
              "".join(f" {v} samples/s (cost) |" for v in args.variant))
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name in args.cases.split(","):
        case = CASES[name]
        data = data_file(args.work, name, case)
        n_params = parameters(case["cols"], case["layers"])
        for ranks, threads in LAUNCHES:
            ours, peer, memory = [], [], []
            others = {other: [] for other in args.also}
            variants = {v: [] for v in args.variant}
            gemm = {b: [] for b in backends}
            for _ in range(args.repeats):
                rate, mib = run_aetrain(args.build, data, case, ranks, threads, args.work)
                ours.append(rate)
                memory.append(mib)
                for other in args.also:
                    others[other].append(run_aetrain(other, data, case, ranks, threads,
                                                     args.work)[0])
                for v in args.variant:
                    variants[v].append(run_aetrain(args.build, data, case, ranks, threads,
                                                   args.work, v.split())[0])
                for b in backends:
                    gemm[b].append(run_gemm(args.build, case, ranks, threads, b))
                if args.torch:
                    peer.append(run_torch(data, case, ranks, threads))
            rate = statistics.median(ours)
            rates = {b: statistics.median(r) for b, r in gemm.items()}
            best = max(rates, key=rates.get)
            g = rates[best]
            shown = ", ".join(f"{b} {r:.1f}" for b, r in rates.items())
            achieved = 6 * n_params * rate / 1e9
            p = statistics.median(peer) if peer else None
            print(f"| {name} {'-'.join(map(str, [case['cols']] + case['layers']))} "
                  f"b{case['batch']} | {ranks} x {threads} | {rate:,.0f} | {achieved:.1f} "
                  f"| {g:.1f} {best} ({shown}) | {achieved / g:.0%} | "
                  f"{f'{p:,.0f}' if p else '-'} | {f'{rate / p:.1f}x' if p else '-'} "
                  f"| {max(memory):.0f} |" +
                  "".join(f" {statistics.median(r):,.0f} |" for r in others.values()) +
                  "".join(f" {statistics.median(r):,.0f} ({rate / statistics.median(r):.2f}x) |"
                          for r in variants.values()), flush=True)
    tiny = os.path.join(args.work, "tiny.h5")
    if not os.path.exists(tiny):
        subprocess.run([PYTHON, os.path.join(ROOT, "tools", "uniform_h5.py"), tiny, "--rows",
                        "1000", "--cols", "100"], check=True, stdout=subprocess.DEVNULL)
    print(f"\nstart-up of a tiny run (1,000 x 100 rows, one epoch): "
          f"{startup(args.build, tiny, 1):.2f} s alone, "
          f"{startup(args.build, tiny, 2):.2f} s under mpirun -n 2")


if __name__ == "__main__":
    sys.exit(main())
