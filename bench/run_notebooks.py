"""Run chapter notebooks top to bottom as plain Python, in full mode by default, and report each one's wall
time and peak memory.

Jupyter is not needed: each notebook runs in a fresh Python process (as in a fresh kernel), in its own
folder, its code cells one after another in one namespace (IPython's ``%`` and ``!`` lines left out,
figures drawn off screen, a cell's last expression evaluated and turned into text as Jupyter shows it).
That makes it usable on a GPU machine that has torch, transformers and tiktoken but no Jupyter, and it is
what the full-mode smoke test (``tests/test_full_smoke.py``) runs.

    # every notebook in full mode, GPT-2's weights replaced by random stand-ins in a temporary hub cache
    python bench/run_notebooks.py --standin-weights
    # a smoke run: each training loop stopped after 2 steps
    python bench/run_notebooks.py --standin-weights --max-steps 2 ch05_pretraining/ch05.ipynb
    # Colab's free T4 imitated on a larger GPU: no more than 15 GB of GPU memory
    python bench/run_notebooks.py --standin-weights --memory-gb 15

It prints one line per notebook (status, seconds, peak memory) and, with ``--json``, writes them to a file.
Peak memory is the GPU's (``torch.cuda.max_memory_allocated``) on CUDA, else the process's resident peak.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the course's packages, installed or not
from shared.export import chapter_notebooks, python_code  # noqa: E402

NOTEBOOKS = [path.as_posix() for path in chapter_notebooks(ROOT)]
# The GPT-2 sizes the notebooks load in full mode (the others need none).
GPT2_SIZES = {
    "ch05_pretraining/ch05.ipynb": ("gpt2-small (124M)", "gpt2-xl (1558M)"),
    "ch06_classifier/ch06.ipynb": ("gpt2-small (124M)",),
    "ch06_classifier/appendix_e_lora.ipynb": ("gpt2-small (124M)",),
    "ch07_instruct/ch07.ipynb": ("gpt2-medium (355M)",),
    "ch07_instruct/dpo.ipynb": ("gpt2-medium (355M)",),
}


def _code_cells(notebook):
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            yield index, python_code("".join(cell["source"]))


def _run_cell(source, namespace, name):
    """Execute ``source`` like a Jupyter cell: statements, then the last expression's value as text."""
    import ast

    tree = ast.parse(source, filename=name)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, name, "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), name, "eval"), namespace)
        if value is not None:
            repr(value)


def run_one(notebook, memory_gb=None, check=None, keep_going=False):
    """Run ``notebook`` in this process (the child's side); returns 0 when every cell ran. ``keep_going``:
    run the remaining cells after a failure too (to time a whole notebook whose checks fail)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt
    import torch

    cuda = torch.cuda.is_available()
    if cuda and memory_gb:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_gb * 2**30 / total))
    path = (ROOT / notebook).resolve()
    os.chdir(path.parent)  # as Jupyter starts a notebook's kernel
    sys.path.insert(0, str(path.parent))
    namespace = {"__name__": "__main__"}
    cells = list(_code_cells(path))
    if check:
        cells.append(("check", check))
    start = time.perf_counter()
    failures, cell_seconds = [], {}
    for index, source in cells:
        cell_start = time.perf_counter()
        try:
            _run_cell(source, namespace, f"<{path.name} cell {index}>")
        except BaseException as err:  # any failure, Ctrl-C included, is reported with its cell
            traceback.print_exc()
            message = str(err).splitlines()[0] if str(err) else ""
            failures.append(f"cell {index}: {type(err).__name__}: {message}")
            if not keep_going or isinstance(err, KeyboardInterrupt):
                break
        finally:
            cell_seconds[index] = round(time.perf_counter() - cell_start, 1)
        plt.close("all")
    status = "; ".join(failures) or "ok"
    slowest = sorted(cell_seconds.items(), key=lambda item: -item[1])[:3]
    seconds = time.perf_counter() - start
    if cuda:
        peak, where = torch.cuda.max_memory_allocated() / 2**30, torch.cuda.get_device_name(0)
    else:
        import resource

        peak, where = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "CPU"  # KiB on Linux
    report = {"notebook": notebook, "status": status, "seconds": round(seconds, 1)}
    report.update(peak_gib=round(peak, 2), device=where, slowest_cells=slowest)  # cell numbers count from 0
    print("RESULT " + json.dumps(report), flush=True)
    return 0 if status == "ok" else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", default=NOTEBOOKS, help="default: every chapter notebook")
    parser.add_argument("--mode", choices=("full", "quick"), default="full")
    parser.add_argument("--max-steps", type=int, help="LLMFS_MAX_STEPS: stop training loops after N steps")
    parser.add_argument(
        "--standin-weights",
        nargs="?",
        const="",
        metavar="HUB_CACHE",
        help="write random GPT-2 weights into this Hugging Face cache folder (default: a temporary one), "
        "with a stand-in Alpaca file, and use them offline",
    )
    parser.add_argument("--memory-gb", type=float, help="cap the GPU memory a notebook may use (T4: 15)")
    parser.add_argument("--check", help="Python code run after a notebook's last cell")
    parser.add_argument("--keep-going", action="store_true", help="after a failing cell, run the others too")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        return run_one(args.notebooks[0], args.memory_gb, args.check, args.keep_going)

    env = {**os.environ, "LLMFS_MODE": args.mode, "PYTHONPATH": str(ROOT)}
    if args.max_steps is not None:
        env["LLMFS_MAX_STEPS"] = str(args.max_steps)
    scratch = tempfile.TemporaryDirectory(prefix="llmfs-notebooks-")
    if args.standin_weights is not None:
        env.update(_standin_env(Path(args.standin_weights or scratch.name), args.notebooks))
    results = []
    with scratch:
        for notebook in args.notebooks:
            command = [sys.executable, __file__, "--run-one", notebook]
            command += ["--memory-gb", str(args.memory_gb)] if args.memory_gb else []
            command += ["--check", args.check] if args.check else []
            command += ["--keep-going"] if args.keep_going else []
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            result = json.loads(lines[-1][7:]) if lines else {"notebook": notebook, "status": "no result"}
            if result["status"] != "ok":
                sys.stderr.write(done.stderr[-6000:])
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _standin_env(hub_cache, notebooks):
    """The stand-in GPT-2 weights the notebooks need, and the environment that points them there."""
    sys.path.insert(0, str(ROOT / "tests"))
    from standin_gpt2 import write_standin_alpaca, write_standin_hub_cache

    sizes = sorted({size for notebook in notebooks for size in GPT2_SIZES.get(notebook, ())})
    write_standin_hub_cache(hub_cache, sizes)
    return {
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HUB_OFFLINE": "1",
        "LLMFS_ALPACA_FILE": str(write_standin_alpaca(hub_cache / "alpaca_data.json")),
    }


if __name__ == "__main__":
    sys.exit(main())
