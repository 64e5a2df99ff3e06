"""pytest settings that must hold wherever pytest is started from."""

import os
from pathlib import Path

import pytest

# pytest-xdist's workers for `-n auto` (pyproject.toml): one per core, at most this many, since each holds a
# notebook's models and data (up to 4 GB).
MAX_WORKERS = 4

SANITIZE_FILE = Path(__file__).parent / "tests" / "nbval_sanitize.cfg"


def pytest_configure(config):
    # nbval resolves --nbval-sanitize-with against the working directory; point it at our file
    # unless the caller chose another one.
    if hasattr(config.option, "nbval_sanitize_with") and not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(SANITIZE_FILE)
    # pytest-xdist runs the notebooks and test files in several worker processes at once. Each would
    # otherwise start as many threads as the machine has cores, and the workers' threads would then fight
    # over the cores: give each worker its share. The notebooks' kernels inherit it. (Set before anything
    # imports torch; a thread count the caller chose is kept.)
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        share = str(max(1, (os.cpu_count() or 1) // int(workers)))
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, share)


def pytest_xdist_auto_num_workers(config):
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """One PyTorch thread while a test runs. Tiny models gain nothing from more, and where other programs
    share the cores, several threads wait for each other at every operation (a forward pass of a few
    milliseconds then takes seconds)."""
    import torch  # here, not at the top: pytest_configure sets the thread variables before torch loads

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
