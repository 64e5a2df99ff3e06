"""Native CPU kernels, compiled on first use, for the few shapes where PyTorch's own kernels fall short.

Today there is one: ``bf16_linear_one_row``, the product of one token's vector with a bf16 weight matrix
(``kernels/bf16_gemv.c``), which is what every layer computes when a model generates text at batch 1. It
needs Linux on an x86-64 CPU with AVX512-BF16 (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and
later) and a C compiler with OpenMP (``cc``, or ``$CC``). The library is built once per machine into the
course's cache directory (``shared.data.cache_dir()``) and checked against PyTorch on a small product before
its first use. Anywhere else ``bf16_gemv()`` returns None and callers keep PyTorch's path, which gives the
same results up to the order of float additions. ``LLMFS_NATIVE_KERNELS=0`` turns the kernels off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from shared.data import cache_dir

KERNELS = Path(__file__).with_name("kernels")
SWITCH_ENV = "LLMFS_NATIVE_KERNELS"
# The vector extensions the kernel's instructions belong to (as /proc/cpuinfo spells them, and as gcc's
# flags do), and OpenMP so that it uses the threads PyTorch uses.
CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16")
COMPILE_FLAGS = [
    "-O3",
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512bf16",
    "-fopenmp",
    "-shared",
    "-fPIC",
]

_loaded: dict[str, object] = {}  # kernel name -> ctypes function, or None where it cannot run


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compile(source: Path) -> Path:
    """The shared library built from ``source``, compiled unless the cache already holds this build.

    The name carries a hash of the source, the flags and the compiler, so an edited kernel is rebuilt; the
    compiler writes to a temporary name that is renamed when complete, so a half-written library is never
    loaded, even by a second process compiling at the same time."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or $CC) found")
    digest = hashlib.sha256(source.read_bytes() + " ".join([compiler, *COMPILE_FLAGS]).encode()).hexdigest()
    library = cache_dir() / "kernels" / f"{source.stem}-{digest[:16]}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    unfinished = library.with_name(f"{library.name}.{os.getpid()}.partial")
    try:
        result = subprocess.run(
            [compiler, *COMPILE_FLAGS, str(source), "-o", str(unfinished)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise OSError(f"{Path(compiler).name} could not build {source.name}{_first_error(result.stderr)}")
        os.replace(unfinished, library)
    finally:
        unfinished.unlink(missing_ok=True)
    return library


def _first_error(stderr: str) -> str:
    """The compiler's first error line, without the folders in front of file names (for a short warning)."""
    lines = [line for line in stderr.splitlines() if "error" in line] or stderr.splitlines()
    if not lines:
        return ""
    return ": " + re.sub(r"(?:[\w.-]*/)+([\w.-]+)", r"\1", lines[0].strip())[:200]


def _load_bf16_gemv():
    library = ctypes.CDLL(str(_compile(KERNELS / "bf16_gemv.c")))
    kernel = library.bf16_gemv
    kernel.restype = None
    kernel.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_int]
    # A first product against PyTorch's (sizes that leave a short last block of rows and of columns): a
    # kernel that computes anything else is never used.
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(37, 101, generator=gen).to(torch.bfloat16)
    x, bias = (
        torch.randn(101, generator=gen).to(torch.bfloat16),
        torch.randn(37, generator=gen).to(torch.bfloat16),
    )
    out = torch.empty(37, dtype=torch.bfloat16)
    kernel(weight.data_ptr(), x.data_ptr(), bias.data_ptr(), out.data_ptr(), 37, 101, 1)
    expected = weight.float() @ x.float() + bias.float()
    if not torch.allclose(out.float(), expected, rtol=2**-7, atol=1e-3):
        raise OSError("bf16_gemv gave results that differ from PyTorch's")
    return kernel


def _usable() -> bool:
    """Whether this system can run the kernels at all (before any compiler is asked)."""
    return (
        os.environ.get(SWITCH_ENV, "1") != "0"
        and sys.platform.startswith("linux")
        and platform.machine() in ("x86_64", "AMD64")
        and set(CPU_FLAGS) <= _cpu_flags()
    )


def bf16_gemv():
    """The native bf16 matrix-vector kernel as a ctypes function, or None where it cannot run (see the
    module's docstring). The first call builds or loads it; a failure is reported once, as a warning."""
    if "bf16_gemv" not in _loaded:
        kernel = None
        if _usable():
            try:
                kernel = _load_bf16_gemv()
            except (OSError, subprocess.SubprocessError) as err:
                warnings.warn(
                    f"the native bf16 kernel is unavailable ({err}); generation uses PyTorch's kernels",
                    stacklevel=2,
                )
        _loaded["bf16_gemv"] = kernel
    return _loaded["bf16_gemv"]


def bf16_linear_one_row(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a single row ``x`` (shape ``(..., K)`` with one row), computed by
    the native kernel. The caller makes sure ``bf16_gemv()`` is not None, that every tensor is a contiguous
    bf16 tensor on the CPU, and that no gradient is needed (the kernel is invisible to autograd)."""
    rows, cols = weight.shape
    out = torch.empty(*x.shape[:-1], rows, dtype=torch.bfloat16)
    bf16_gemv()(
        weight.data_ptr(),
        x.data_ptr(),
        None if bias is None else bias.data_ptr(),
        out.data_ptr(),
        rows,
        cols,
        torch.get_num_threads(),
    )
    return out
