"""What a benchmark figure holds for: the CPU, its vector extensions, aetrain's GEMM backend and
the PyTorch peer's BLAS. Every benchmark prints these first."""
import os
import subprocess

PYTHON = "/usr/bin/python3"


def cpu():
    """'AMD EPYC 7B12, AVX2, 2 cores': the model and the widest vector extension."""
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    simd = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX"
            if "avx" in flags else "SSE")
    return f"{fields.get('Model name', '?').strip()}, {simd}, {os.cpu_count()} cores"


def aetrain_version(build):
    """aetrain --version's lines, joined."""
    out = subprocess.run([os.path.join(build, "aetrain"), "--version"], capture_output=True,
                         text=True).stdout
    return "; ".join(" ".join(line.split()) for line in out.splitlines())


TORCH_BLAS = r"""
import ctypes, re, torch
libs = sorted(set(re.findall(r"/\S*openblas\S*\.so\S*", open("/proc/self/maps").read())))
core = "no OpenBLAS loaded"
for path in libs:
    try:
        f = ctypes.CDLL(path).openblas_get_corename
        f.restype = ctypes.c_char_p
        core = "OpenBLAS core " + f().decode() + " (" + path + ")"
        break
    except (OSError, AttributeError):
        pass
print("torch " + torch.__version__ + ", " + core)
"""


def torch_blas(env=None):
    """PyTorch's version and the OpenBLAS core its products run on."""
    r = subprocess.run([PYTHON, "-c", TORCH_BLAS], capture_output=True, text=True, env=env)
    return r.stdout.strip() or "torch not available: " + r.stderr.strip().splitlines()[-1]
