"""requirements-notebooks.txt lists what the course's code imports; requirements.txt adds the tools.

Colab installs only the first file, so a package the notebooks or the chapter modules import but that
file lacks would fail there first, with an ImportError in the middle of a chapter.
"""

import ast
import json
import re
import sys

from shared.export import REPO_ROOT, python_code

NOTEBOOK_REQUIREMENTS = REPO_ROOT / "requirements-notebooks.txt"
ALL_REQUIREMENTS = REPO_ROOT / "requirements.txt"
# Installed through other packages, so not listed: torch (Colab has its own build; requirements.txt asks
# for it elsewhere) and numpy (matplotlib and pandas depend on it).
NOT_LISTED = {"torch", "numpy"}
# The generator maintainers run (with requirements.txt), not code a learner runs.
MAINTAINER_TOOLS = {"shared/export.py", "shared/colab_links.py"}


def _requirement_lines(path):
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def _package_names(path):
    """The packages a requirements file names, options (-r, -e) left out."""
    return [_package_name(line) for line in _requirement_lines(path) if not line.startswith("-")]


def _package_name(line):
    return re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("-", "_")


def _imported_top_names(source):
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _course_sources():
    """The code a learner runs: chapter modules, shared helpers, and the notebooks' code cells."""
    for path in sorted([*REPO_ROOT.glob("ch0*/*.py"), *REPO_ROOT.glob("shared/**/*.py")]):
        if path.relative_to(REPO_ROOT).as_posix() not in MAINTAINER_TOOLS:
            yield path, path.read_text(encoding="utf-8")
    for path in sorted(REPO_ROOT.glob("ch0*/*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                yield path, python_code("".join(cell["source"]))


def test_the_light_file_lists_every_package_the_course_imports():
    listed = set(_package_names(NOTEBOOK_REQUIREMENTS))
    ours = {path.name for path in REPO_ROOT.iterdir() if (path / "__init__.py").exists()}
    missing = {}
    for path, source in _course_sources():
        for name in _imported_top_names(source) - set(sys.stdlib_module_names) - ours - NOT_LISTED:
            if name.lower() not in listed:
                missing.setdefault(name, path.relative_to(REPO_ROOT).as_posix())
    assert not missing, f"imported but not in requirements-notebooks.txt: {missing}"
    assert "-e ." in _requirement_lines(NOTEBOOK_REQUIREMENTS)
    assert "torch" not in listed, "Colab's own torch build must stay: torch belongs in requirements.txt"


def test_requirements_txt_includes_the_light_file_and_repeats_none_of_it():
    assert "-r requirements-notebooks.txt" in _requirement_lines(ALL_REQUIREMENTS)
    light, extra = set(_package_names(NOTEBOOK_REQUIREMENTS)), _package_names(ALL_REQUIREMENTS)
    twice = sorted(light & set(extra))
    assert not twice, f"listed in both files: {twice}"
    assert len(extra) == len(set(extra)), f"listed twice in requirements.txt: {extra}"
    assert "torch" in extra
