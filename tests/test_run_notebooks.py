"""bench/run_notebooks.py, the runner of the full-mode smoke test: a notebook's cells as plain Python."""

import json
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "bench" / "run_notebooks.py"


def run(*args):
    done = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True)
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def test_a_notebook_runs_top_to_bottom_and_its_time_and_memory_are_reported():
    check = "assert MODE == 'quick' and len(raw_text) == 20_479 and len(enc_text) == 5_145"
    done, result = run("ch02_tokenizer/ch02.ipynb", "--mode", "quick", "--check", check)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["notebook"] == "ch02_tokenizer/ch02.ipynb" and result["status"] == "ok"
    assert result["seconds"] > 0 and result["peak_gib"] > 0 and len(result["slowest_cells"]) == 3


def test_a_failing_cell_is_named_and_the_exit_code_says_so():
    check = "assert MODE == 'full', MODE"
    done, result = run("ch02_tokenizer/ch02.ipynb", "--mode", "quick", "--check", check)
    assert done.returncode == 1
    assert result["status"] == "cell check: AssertionError: quick", result
    assert "AssertionError" in done.stderr  # the traceback, for the maintainer
