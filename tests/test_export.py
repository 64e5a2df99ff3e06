"""The chapter modules are generated from their notebooks and must not drift from them."""

import json

import pytest

from shared import export


def test_every_module_matches_its_notebook():
    stale = export.stale_files()
    assert not stale, f"out of date (run `python -m shared.export`): {[str(p) for p in stale]}"


def test_generated_modules_say_where_to_edit():
    modules = {path: text for path, text in export.expected_files().items() if path.suffix == ".py"}
    assert export.NAMES_FILE in modules
    for path, text in modules.items():
        assert "do not edit" in text.splitlines()[0], path


def _write_notebook(root, folder, cells, export_to="mod.py"):
    nb = {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": src, **({"outputs": []} if kind == "code" else {})}
            for kind, src in cells
        ],
        "metadata": {"llmfs": {"export_to": export_to}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "nb.ipynb").write_text(json.dumps(nb))
    (root / "shared").mkdir(exist_ok=True)


def test_only_marked_cells_are_exported_with_their_public_names(tmp_path):
    _write_notebook(
        tmp_path,
        "ch09_demo",
        [
            ("markdown", "#| export\nnot code"),
            ("code", "#| export\nimport math\n\nCONSTANT = 3\n\ndef area(r):\n    return math.pi * r * r"),
            ("code", "print(area(1))"),
            ("code", "#| export\nclass Circle:\n    pass\n\ndef _helper():\n    pass"),
        ],
    )
    module = export.build_module(export.chapter_notebooks(tmp_path)[0], tmp_path)
    assert module.public_names == ["CONSTANT", "area", "Circle"]
    assert "print(area(1))" not in module.text and "not code" not in module.text
    namespace = {}
    exec(module.text, namespace)
    assert namespace["__all__"] == ["CONSTANT", "area", "Circle"]


def test_check_reports_a_module_edited_by_hand(tmp_path):
    _write_notebook(tmp_path, "ch09_demo", [("code", "#| export\nX = 1")])
    for path, text in export.expected_files(tmp_path).items():
        path.write_text(text)
    assert export.stale_files(tmp_path) == []
    (tmp_path / "ch09_demo" / "mod.py").write_text("X = 2\n")
    assert export.stale_files(tmp_path) == [tmp_path / "ch09_demo" / "mod.py"]


def test_a_name_defined_in_two_chapters_is_refused(tmp_path):
    _write_notebook(tmp_path, "ch08_one", [("code", "#| export\ndef twin():\n    pass")])
    _write_notebook(tmp_path, "ch09_two", [("code", "#| export\ndef twin():\n    pass")])
    with pytest.raises(SystemExit, match="'twin' is defined in both"):
        export.expected_files(tmp_path)
