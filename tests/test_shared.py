"""The `shared` facade: every public name of the chapters, under the book's names, without import cycles."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import shared
from shared.export import REPO_ROOT
from shared.names import NAMES

CHAPTER_ORDER = [
    "ch02_tokenizer",
    "ch03_attention",
    "ch04_gpt",
    "ch05_pretraining",
    "ch06_classifier",
    "ch07_instruct",
]


def test_the_names_the_book_uses_import_from_shared():
    from shared import GPTDatasetV1, SimpleTokenizerV1, SimpleTokenizerV2, create_dataloader_v1  # noqa: F401


def test_every_indexed_name_is_the_object_its_module_defines():
    import importlib

    assert NAMES, "shared/names.py is empty: run `python -m shared.export`"
    for name, module in NAMES.items():
        assert getattr(shared, name) is getattr(importlib.import_module(module), name), name
    assert sorted(NAMES) == shared.__all__


def test_unknown_name_is_a_clear_attribute_error():
    with pytest.raises(AttributeError, match="no chapter exports it"):
        shared.NoSuchThing  # noqa: B018


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_chapter_modules_import_only_earlier_chapters_and_shared_helpers():
    for index, chapter in enumerate(CHAPTER_ORDER):
        for path in sorted((REPO_ROOT / chapter).glob("*.py")):
            for module in _imports(path):
                top = module.split(".")[0]
                assert module != "shared", (
                    f"{path.name} imports the shared facade (a cycle): import the module"
                )
                if top in CHAPTER_ORDER:
                    assert CHAPTER_ORDER.index(top) <= index, f"{path.name} imports a later chapter: {module}"


def test_importing_shared_is_light():
    # The facade loads a chapter module only when one of its names is used.
    code = "import sys, shared; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
