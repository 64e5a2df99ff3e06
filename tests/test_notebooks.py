"""The rules that keep the chapter notebooks reliable as nbval regression tests.

nbval compares the stored outputs with a fresh run. These checks catch, before that comparison, the ways a
notebook can pass on one machine and fail (or mislead) on another: outputs from a partial or out-of-order
run, machine paths in outputs (tracebacks included), warnings on stderr, ignored or skipped cells with
nothing checked after them, and metadata that JupyterLab rewrites as soon as a learner opens the notebook.

nbval reads its markers both from a comment line in the cell (``# NBVAL_IGNORE_OUTPUT``) and from the cell's
tags (``nbval-ignore-output``); the notebooks use tags, which the learner does not see in the code, and the
rules below treat both forms alike.
"""

import ast
import json
import re

import pytest

from shared.export import REPO_ROOT, chapter_notebooks, python_code

NOTEBOOKS = chapter_notebooks()

# What JupyterLab writes into a notebook it opens with the default kernel; store the same, so opening a
# notebook does not mark it changed.
KERNELSPEC_DISPLAY_NAME = "Python 3 (ipykernel)"

# Paths that differ from machine to machine; a stored output that shows one cannot be reproduced elsewhere:
# Linux and macOS homes and temp folders, Windows drives, Colab, conda and any installed package's file.
MACHINE_PATH = re.compile(
    r"(/work/|/home/|/root/|/tmp/|/Users/|/var/folders/|/content/|/opt/conda/|\b[A-Za-z]:\\"
    r"|site-packages|dist-packages)"
)
# The only stderr output allowed: a tqdm progress bar ("42%|####      | 5/12 [...]").
PROGRESS_BAR = re.compile(r"^\s*(\S.*:\s+)?\d+%\|.*\|")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# nbval's markers: the comment form and the equivalent cell tag.
IGNORE_OUTPUT = ("NBVAL_IGNORE_OUTPUT", "nbval-ignore-output")
RAISES_EXCEPTION = ("NBVAL_RAISES_EXCEPTION", "raises-exception")
SKIP = ("NBVAL_SKIP", "nbval-skip")


def _load(notebook):
    return json.loads((REPO_ROOT / notebook).read_text(encoding="utf-8"))


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell):
    return "".join(cell["source"])


def _has_marker(cell, marker):
    """True if nbval sees ``marker`` = (comment, tag) on the cell, as a comment line or as a cell tag."""
    comment, tag = marker
    # nbval reads its comment markers from any comment line of the cell
    in_comment = re.search(rf"^\s*#\s*{comment}\b", _source(cell), re.M) is not None
    return in_comment or tag in cell.get("metadata", {}).get("tags", [])


def _output_texts(output):
    """Every text a stored output shows: streams, rich data, and an error's name, message and traceback."""
    if output["output_type"] == "stream":
        yield "".join(output["text"])
    if output["output_type"] == "error":
        yield output.get("ename", "")
        yield output.get("evalue", "")
        yield from (ANSI_ESCAPE.sub("", line) for line in output.get("traceback", []))
    for value in output.get("data", {}).values():
        if isinstance(value, (str, list)):
            yield "".join(value)


def _real_asserts(source):
    """The assert statements in ``source`` that can fail (``assert True`` or ``assert 1`` cannot)."""
    tree = ast.parse(python_code(source))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Assert) and not isinstance(n.test, ast.Constant)]


def test_every_chapter_has_a_notebook():
    assert {nb.parts[0] for nb in NOTEBOOKS} >= {"ch02_tokenizer", "ch03_attention", "ch04_gpt"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_outputs_come_from_one_top_to_bottom_run(notebook):
    counts = [c["execution_count"] for c in _code_cells(_load(notebook))]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{notebook}: re-run it top to bottom (README, 'For maintainers') so the stored outputs are one run's"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_kernelspec_is_what_jupyterlab_writes(notebook):
    kernelspec = _load(notebook)["metadata"].get("kernelspec", {})
    assert kernelspec.get("display_name") == KERNELSPEC_DISPLAY_NAME, (
        f"{notebook}: kernelspec display_name {kernelspec.get('display_name')!r}; store "
        f"{KERNELSPEC_DISPLAY_NAME!r} so that opening the notebook in JupyterLab changes nothing"
    )
    assert kernelspec.get("name") == "python3"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_settings_cell_and_the_mode_of_the_stored_outputs(notebook):
    nb = _load(notebook)
    first_code = _source(_code_cells(nb)[0])
    assert 'os.environ.get("LLMFS_MODE", "quick")' in first_code, "the first code cell sets MODE"
    intro = "".join(_source(c) for c in nb["cells"][:3] if c["cell_type"] == "markdown")
    assert "produced in quick mode" in intro, "the introduction says which mode produced the outputs"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_no_machine_paths_warnings_or_timestamps_are_stored(notebook):
    for i, cell in enumerate(_load(notebook)["cells"]):
        metadata = cell.get("metadata", {})
        assert "execution" not in metadata, f"cell {i}: timestamps (record_timing=False)"
        assert "ExecuteTime" not in metadata, f"cell {i}: timestamps (ExecuteTime, from an extension)"
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                assert not MACHINE_PATH.search(text), f"cell {i} shows a machine path: {text[:200]!r}"
            if output["output_type"] == "stream" and output["name"] == "stderr":
                lines = [line for line in re.split(r"[\r\n]", "".join(output["text"])) if line.strip()]
                assert all(PROGRESS_BAR.match(line) for line in lines), f"cell {i} writes to stderr: {lines}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_errors_only_where_a_cell_demonstrates_one(notebook):
    for i, cell in enumerate(_code_cells(_load(notebook))):
        marked = _has_marker(cell, RAISES_EXCEPTION)
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert bool(errors) == marked, f"code cell {i}: stored error {bool(errors)}, marked {marked}"
        assert not (marked and "#| export" in _source(cell)), f"code cell {i}: an error demo is not exported"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_no_cell_is_skipped(notebook):
    for i, cell in enumerate(_code_cells(_load(notebook))):
        assert not _has_marker(cell, SKIP), (
            f"code cell {i} is skipped by nbval: a cell runs and is checked, or is not in the notebook"
        )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_every_ignored_output_is_followed_by_an_assertion(notebook):
    cells = _code_cells(_load(notebook))
    for i, cell in enumerate(cells):
        if _has_marker(cell, IGNORE_OUTPUT):
            following = cells[i + 1] if i + 1 < len(cells) else None
            assert following is not None and not _has_marker(following, IGNORE_OUTPUT), (
                f"code cell {i} is not compared by nbval; the next cell must be compared and assert"
            )
            assert _real_asserts(_source(following)), (
                f"code cell {i} is not compared by nbval; the next cell must assert what matters in it "
                "(an assert that can fail)"
            )


def test_the_rules_see_tags_comments_and_tracebacks():
    """The helpers above recognise both forms of each marker and read every part of an error output."""
    tagged = {"cell_type": "code", "source": ["x = 1\n"], "metadata": {"tags": ["nbval-skip"]}}
    commented = {"cell_type": "code", "source": ["# NBVAL_IGNORE_OUTPUT\n", "x = 1\n"], "metadata": {}}
    assert _has_marker(tagged, SKIP) and not _has_marker(tagged, IGNORE_OUTPUT)
    assert _has_marker(commented, IGNORE_OUTPUT) and not _has_marker(commented, SKIP)
    assert not _real_asserts("assert True\nassert 1, 'always'\n")
    assert _real_asserts("%matplotlib inline\nassert loss < 1.0\n")
    error = {
        "output_type": "error",
        "ename": "ValueError",
        "evalue": "bad",
        "traceback": ["\x1b[0;32m/opt/venv/lib/python3.12/site-packages/torch/nn/modules/module.py\x1b[0m"],
    }
    assert any(MACHINE_PATH.search(text) for text in _output_texts(error))
    for path in [r"C:\Users\me\x.py", "/var/folders/ab/T/x", "/content/course", "/opt/conda/lib/x.py"]:
        assert MACHINE_PATH.search(path), path


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_figures_show_whatever_backend_the_environment_sets(notebook):
    """A figure shows in the notebook only through the inline backend. Jupyter picks it by default, but a
    ``MPLBACKEND`` set in the environment (``Agg`` is common on servers and in CI) wins, and the figure is
    then drawn off screen and never shown: ``%matplotlib inline`` must come before the first figure."""
    for i, cell in enumerate(_code_cells(_load(notebook))):
        if re.search(r"^\s*%matplotlib inline\s*$", _source(cell), re.M):
            return
        shows_a_figure = any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))
        assert not shows_a_figure, f"code cell {i} shows a figure before any `%matplotlib inline`"


MAX_CELL_LINES = 60


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_code_cells_are_short_enough_to_read(notebook):
    """A learner reads a code cell at once: at most 60 lines, the `#| export` marker included."""
    for i, cell in enumerate(_code_cells(_load(notebook))):
        lines = len(_source(cell).splitlines())
        assert lines <= MAX_CELL_LINES, f"code cell {i} has {lines} lines: split it where its subject changes"
