"""Device choice, precision choice and seeding."""

import ctypes
import random

import pytest
import torch

from shared import device


def test_forced_device_wins(monkeypatch):
    monkeypatch.setenv("LLMFS_DEVICE", "cpu")
    assert device.get_device() == torch.device("cpu")
    assert device.get_device("meta") == torch.device("meta")


def _no_cuda_but_mps(monkeypatch, version):
    monkeypatch.delenv("LLMFS_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch, "__version__", version)


def test_mps_only_from_torch_2_9(monkeypatch):
    _no_cuda_but_mps(monkeypatch, "2.8.0")
    assert device.get_device() == torch.device("cpu")
    _no_cuda_but_mps(monkeypatch, "2.9.1+cpu")
    assert device.get_device() == torch.device("mps")


def test_cuda_comes_first(monkeypatch):
    monkeypatch.delenv("LLMFS_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.get_device() == torch.device("cuda")


def test_autocast_dtype_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    assert device.autocast_dtype("cpu") is torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert device.autocast_dtype("cpu") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert device.autocast_dtype("cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert device.autocast_dtype("cuda") is torch.bfloat16


def test_generation_dtype_auto_is_bf16_only_where_the_hardware_computes_it(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    assert device.generation_dtype("cpu") is torch.bfloat16
    assert device.generation_dtype("cpu", "fp32") is torch.float32
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert device.generation_dtype("cpu") is torch.float32
    assert device.generation_dtype("cpu", "bf16") is torch.bfloat16  # asked for: slow, but allowed
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert device.generation_dtype("cuda") is torch.float32  # not fp16, as autocast would
    assert device.generation_dtype("mps") is torch.float32
    with pytest.raises(ValueError, match="unknown precision 'fp16': use one of auto, fp32, bf16"):
        device.generation_dtype("cpu", "fp16")


def test_set_seed_makes_runs_repeat():
    device.set_seed(123)
    first = torch.rand(3)
    device.set_seed(123)
    assert torch.equal(first, torch.rand(3))


def test_set_seed_seeds_pythons_random():
    device.set_seed(123)
    first = [random.random() for _ in range(3)]
    device.set_seed(123)
    assert [random.random() for _ in range(3)] == first
    device.set_seed(124)
    assert [random.random() for _ in range(3)] != first


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mmapped_bytes(libc):
    return libc.mallinfo2().hblkhd  # bytes that malloc holds in separate mmap'ed blocks


def test_cpu_memory_reuse_serves_large_blocks_from_the_heap_and_is_undone():
    libc = device._glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs Linux with glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def mmapped_growth(size):
        """Bytes of new mmap'ed blocks for one malloc(size). The memory is never touched, so even a large
        block costs only address space; larger than any free part of the heap, it must come from an mmap
        unless the heap may grow for it."""
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(size)
        assert block, "malloc failed"
        grown = libc.mallinfo2().hblkhd - before
        libc.free(block)
        return grown

    gib = 2**30
    assert mmapped_growth(gib) >= gib  # glibc's default: a block this large is a fresh mmap
    with device.cpu_memory_reuse() as took_effect:
        assert took_effect
        assert mmapped_growth(gib) == 0  # from the heap, where freed memory stays for the next step
        with device.cpu_memory_reuse():  # a nested block
            pass
        assert mmapped_growth(gib) == 0  # still: only the outermost block puts the default back
    # the default again (1.5 GiB: more than the free gibibyte the heap may still hold from the block)
    assert mmapped_growth(3 * gib // 2) >= 3 * gib // 2


def test_cpu_memory_reuse_elsewhere_changes_nothing(monkeypatch):
    monkeypatch.setattr(device, "_glibc", lambda: None)
    with device.cpu_memory_reuse() as took_effect:
        assert took_effect is False


@pytest.mark.parametrize(
    "name, problem",
    [
        ("tpu", "not a device PyTorch knows: use cpu, cuda, cuda:N (the Nth GPU) or mps"),
        ("cuda:99", ": use "),  # no such GPU here, whether or not this machine has CUDA
        ("cpu", None),
        ("meta", None),
    ],
)
def test_device_problem_says_why_a_device_cannot_be_used(name, problem):
    found = device.device_problem(name)
    assert found == problem if problem is None else problem in found
    if problem is not None:
        with pytest.raises(ValueError, match=f"device '{name}': "):
            device.get_device(name)


def test_a_missing_gpu_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "use cpu" in device.device_problem("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert "MPS is not available here" in device.device_problem("mps")
    monkeypatch.setenv("LLMFS_DEVICE", "cuda")
    with pytest.raises(ValueError, match="device 'cuda': this machine has"):
        device.get_device()
