"""The progress bar of the course's training loops, and the argument check they share.

A training loop shows one bar that updates in place, with the loss and the speed, and prints its own lines
(the losses every few steps, a sample after each epoch) without breaking the bar:

- In Jupyter the bar and the lines both go to the cell's normal output (stdout). On stderr the bar would
  sit in a separate, pink output area that every printed line cuts into a new strip.
- In a terminal the bar goes to stderr, as tqdm's bars do, and the lines are printed above it.

The loss on the bar is read at most once a second: a number on a GPU can only be read once the GPU has run
every step queued before it, so reading it after each step would make the CPU wait instead of queueing the
next step while the GPU works.
"""

from __future__ import annotations

import math
import sys
import time

import torch
from tqdm import tqdm


def positive_int(name, value, allow_none=False):
    """``value`` if it is an integer >= 1 (or None with ``allow_none``), else a ValueError naming ``name``."""
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _in_jupyter() -> bool:
    return "ipykernel" in sys.modules


class TrainingProgress:
    """A training loop's progress bar over ``total`` steps, with the loss and the speed on it, and the
    lines the loop prints. ``enabled=False``: no bar, the lines are printed as usual; ``quiet=True``: no
    bar and no lines (the processes of a distributed run other than the first).

    ``count`` is what the speed counts (tokens or examples seen so far), ``speed_name`` its label."""

    def __init__(
        self, total, *, initial=0, count=0, speed_name="tokens_per_s", enabled=True, quiet=False, interval=1.0
    ):
        self.quiet = quiet
        self.file = sys.stdout if _in_jupyter() else sys.stderr
        self.bar = tqdm(
            total=total, initial=initial, desc="training", disable=not enabled or quiet, file=self.file
        )
        self.speed_name, self.interval = speed_name, interval
        self.start_time, self.start_count = time.perf_counter(), count
        self.shown_at = -math.inf

    def step(self, loss, count):
        """One step done: advance the bar, and show ``loss`` and the speed since the start (``count`` tokens
        or examples seen) if ``interval`` seconds have passed since they were last shown."""
        self.bar.update(1)
        if self.bar.disable or time.perf_counter() - self.shown_at < self.interval:
            return
        # Reading the loss waits for the step to finish, so the time below counts all of its work.
        loss = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        self.shown_at = time.perf_counter()
        speed = (count - self.start_count) / (self.shown_at - self.start_time)
        speed_text = f"{speed:,.0f}" if speed >= 100 else f"{speed:.1f}"
        self.bar.set_postfix({"loss": f"{loss:.3f}", self.speed_name: speed_text}, refresh=False)

    def print(self, text):
        """Print a line of the loop's output without breaking the bar."""
        if self.quiet:
            return
        if self.bar.disable:
            print(text)
        else:  # clears the bar, prints the line, draws the bar again below it
            tqdm.write(text, file=self.file if _in_jupyter() else sys.stdout)

    def close(self):
        self.bar.close()
