"""Device, precision and seeding helpers shared by every chapter."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import sys

import torch

# MPS (Apple GPUs) gave wrong results for some of the operations the course uses before PyTorch 2.9,
# so older versions fall back to the CPU there.
MIN_TORCH_FOR_MPS = (2, 9)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def get_device(prefer: str | None = None) -> torch.device:
    """The device to train on: CUDA, then MPS (torch >= 2.9 only), then the CPU.

    ``prefer`` (or the environment variable ``LLMFS_DEVICE``) forces a choice, e.g. "cpu"; a ValueError
    says why when this machine cannot run it (device_problem).
    """
    prefer = prefer or os.environ.get("LLMFS_DEVICE")
    if prefer:
        problem = device_problem(prefer)
        if problem:
            raise ValueError(f"device {prefer!r}: {problem}")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available() and _torch_version() >= MIN_TORCH_FOR_MPS:
        return torch.device("mps")
    return torch.device("cpu")


def device_problem(name: str) -> str | None:
    """Why ``name`` (e.g. "cuda", "cuda:1", "mps") cannot be used on this machine, in one phrase that
    ends with what to use instead; None when it can. Checked before any work, so that a wrong device
    is not found out by the first tensor moved to it."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return "not a device PyTorch knows: use cpu, cuda, cuda:N (the Nth GPU) or mps"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "no GPU that PyTorch can use" if torch.version.cuda else "a PyTorch built without CUDA"
            return f"this machine has {why}: use cpu, or leave the option out for the best available"
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            return f"this machine has {count} CUDA GPU(s), numbered from 0: use cuda:0 to cuda:{count - 1}"
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return (
                "Apple's MPS is not available here: use cpu, or leave the option out for the best available"
            )
        if _torch_version() < MIN_TORCH_FOR_MPS:
            return (
                "the course needs PyTorch 2.9 or later on MPS (earlier versions give wrong results): use cpu"
            )
    if device.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        return "no Intel GPU (xpu) is available here: use cpu"
    return None


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has bf16 matrix units (Intel AMX or AVX512-BF16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The lower precision worth using for training on ``device``.

    bf16 where the hardware computes it natively (recent NVIDIA GPUs, CPUs with AMX or AVX512-BF16),
    fp16 on older GPUs (use it with ``torch.amp.GradScaler``), fp32 otherwise.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


WEIGHT_PRECISIONS = ("auto", "fp32", "bf16")


def add_precision_option(parser) -> None:
    """The generating commands' ``--precision`` option (an argparse parser's), read by generation_dtype."""
    parser.add_argument(
        "--precision",
        choices=WEIGHT_PRECISIONS,
        default="auto",
        help="the weights' precision; auto: bf16 where the device computes it natively (up to twice as fast)",
    )


def generation_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype:
    """The dtype to keep a model's weights in for generating text on ``device``.

    "fp32" and "bf16" are taken as they are; "auto" is bf16 where the hardware computes it natively (recent
    NVIDIA GPUs, CPUs with AMX or AVX512-BF16), fp32 elsewhere (never fp16: its narrow range can overflow in
    a model trained in fp32 or bf16). A step of generation reads every weight once, so half the bytes make
    it up to twice as fast; the text can differ from fp32's where two candidate tokens are almost tied."""
    if precision not in WEIGHT_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(WEIGHT_PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if autocast_dtype(device) is torch.bfloat16 else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def set_seed(seed: int = 123) -> None:
    """Seed Python's, NumPy's (if installed) and PyTorch's random generators."""
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(seed)
    torch.manual_seed(seed)


# glibc's mallopt parameters (malloc.h) and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (present only in glibc, not in musl)
        return libc
    except (OSError, AttributeError):
        return None


_memory_reuse_depth = [0]  # open cpu_memory_reuse blocks


@contextlib.contextmanager
def cpu_memory_reuse():
    """Within the block, memory that the process frees stays with it for the next allocation (Linux with
    glibc; elsewhere the block runs unchanged). Yields whether the setting took effect.

    Why: a training step on the CPU allocates and frees the same large tensors every time (GPT-2's logits,
    512 x 50,257 floats at batch 2 x 256 tokens; the 50,257 x 768 gradient of the token embedding). glibc
    serves each block that large with a fresh ``mmap`` and returns it to the system on ``free``, so every
    step the kernel hands out and zeroes the same pages again, one page fault at a time: bench/bench_train.py
    measures that as a large share of a step. With mmap off and no trimming, freed blocks are reused. The
    price: the process holds on to the memory of its largest step until the block ends.
    Blocks may nest: only the outermost one changes the setting and puts the default back."""
    libc = _glibc()
    outermost = _memory_reuse_depth[0] == 0
    _memory_reuse_depth[0] += 1
    ok = libc is not None
    if ok and outermost:
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    try:
        yield ok
    finally:
        _memory_reuse_depth[0] -= 1
        if libc is not None and outermost:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
