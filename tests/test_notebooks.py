"""The rules that keep the chapter notebooks reliable as nbval regression tests.

nbval compares the stored outputs with a fresh run. These checks catch, before that comparison, the ways a
notebook can pass on one machine and fail (or mislead) on another: outputs from a partial or out-of-order
run, machine paths in outputs, warnings on stderr, ignored cells with nothing checked after them.
"""

import json
import re

import pytest

from shared.export import REPO_ROOT, chapter_notebooks

NOTEBOOKS = chapter_notebooks()

# Paths that differ from machine to machine; a stored output that shows one cannot be reproduced elsewhere.
MACHINE_PATH = re.compile(r"(/work/|/home/|/root/|/tmp/|/Users/|[A-Z]:\\\\)")
# The only stderr output allowed: a tqdm progress bar ("42%|####      | 5/12 [...]").
PROGRESS_BAR = re.compile(r"^\s*(\S.*: )?\d+%\|.*\|")


def _load(notebook):
    return json.loads((REPO_ROOT / notebook).read_text(encoding="utf-8"))


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell):
    return "".join(cell["source"])


def _has_marker(cell, marker):
    # nbval reads its markers from any comment line of the cell
    return re.search(rf"^\s*#\s*{marker}\b", _source(cell), re.M) is not None


def _output_texts(output):
    if output["output_type"] == "stream":
        yield "".join(output["text"])
    for value in output.get("data", {}).values():
        if isinstance(value, (str, list)):
            yield "".join(value)


def test_every_chapter_has_a_notebook():
    assert {nb.parts[0] for nb in NOTEBOOKS} >= {"ch02_tokenizer", "ch03_attention", "ch04_gpt"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_outputs_come_from_one_top_to_bottom_run(notebook):
    counts = [c["execution_count"] for c in _code_cells(_load(notebook))]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{notebook}: re-run it top to bottom (README, 'For maintainers') so the stored outputs are one run's"
    )


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
        assert "execution" not in cell.get("metadata", {}), f"cell {i}: timestamps (record_timing=False)"
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                assert not MACHINE_PATH.search(text), f"cell {i} shows a machine path: {text[:200]!r}"
            if output["output_type"] == "stream" and output["name"] == "stderr":
                lines = [line for line in re.split(r"[\r\n]", "".join(output["text"])) if line.strip()]
                assert all(PROGRESS_BAR.match(line) for line in lines), f"cell {i} writes to stderr: {lines}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_errors_only_where_a_cell_demonstrates_one(notebook):
    for i, cell in enumerate(_code_cells(_load(notebook))):
        marked = _has_marker(cell, "NBVAL_RAISES_EXCEPTION")
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert bool(errors) == marked, f"code cell {i}: stored error {bool(errors)}, marked {marked}"
        assert not (marked and "#| export" in _source(cell)), f"code cell {i}: an error demo is not exported"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_every_ignored_output_is_followed_by_an_assertion(notebook):
    cells = _code_cells(_load(notebook))
    for i, cell in enumerate(cells):
        if _has_marker(cell, "NBVAL_IGNORE_OUTPUT"):
            following = _source(cells[i + 1]) if i + 1 < len(cells) else ""
            assert re.search(r"^\s*assert ", following, re.M), (
                f"code cell {i} is not compared by nbval; the next cell must assert what matters in it"
            )
