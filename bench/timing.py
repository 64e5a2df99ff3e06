"""Timing helpers shared by the scripts in bench/ (run as `python bench/<name>.py`, which puts this folder on
the import path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA runs asynchronously, so a timer must wait for it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds that ``fn()`` takes, its device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved_medians(
    runs: dict[str, Callable[[], object]], reps: int, device: torch.device, show_rounds: bool = False
) -> dict[str, float]:
    """Median seconds of each run over ``reps`` rounds; every round runs each variant once, in turn, so that
    background load hits all of them alike. ``show_rounds``: print each round's times."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(reps):
        for name, run in runs.items():
            times[name].append(time_call(run, device))
        if show_rounds:
            print(f"  round {rep + 1}/{reps}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
    return {name: statistics.median(t) for name, t in times.items()}
