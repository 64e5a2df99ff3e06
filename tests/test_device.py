"""Device choice, precision choice and seeding."""

import random

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
