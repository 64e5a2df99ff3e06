"""README.md's Colab links, written from one setting: the address of the course's GitHub repository.

A maintainer sets the address once, in pyproject.toml (``[tool.llmfs] repository``). From it this module
writes two parts of README.md:

- the "Colab" column of the "## Chapters" table: one "Open in Colab" link per notebook row;
- the whole "## Run in Google Colab" section, whose set-up cell clones that address.

While the setting is empty the table has no Colab column and the set-up cell asks the learner for the
address, so the README never shows a link that leads nowhere. ``python -m shared.export`` writes the
README with the modules, and ``--check`` (and ``tests/test_export.py``) reports a README that disagrees.
"""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, whose standard library cannot read TOML yet
    import tomli as tomllib

BRANCH = "main"  # the branch Colab opens the notebooks from
CLONE_DIR = "/content/course"
COLAB_COLUMN = "Colab"
NOTEBOOK_COLUMN = "Notebook"
CHAPTERS_HEADING = "## Chapters"
COLAB_HEADING = "## Run in Google Colab"
ADDRESS_PLACEHOLDER = "<repository address>"

# Colab's "/github/" addresses only reach GitHub, so the setting must be a GitHub repository's address.
_GITHUB_ADDRESS = re.compile(r"https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+?)(?:\.git)?/?")
_NOTEBOOK_LINK = re.compile(r"\]\(([^)\s]+\.ipynb)\)")


def repository_setting(root: Path) -> str:
    """The repository address set in ``root``/pyproject.toml, or "" while none is set."""
    pyproject = root / "pyproject.toml"
    if not pyproject.exists():
        return ""
    with pyproject.open("rb") as file:
        value = tomllib.load(file).get("tool", {}).get("llmfs", {}).get("repository", "")
    if not isinstance(value, str):
        raise SystemExit(f"{pyproject}: [tool.llmfs] repository must be a string, not {value!r}")
    return value.strip()


def github_repository(address: str) -> tuple[str, str]:
    """(owner, name) of a GitHub address such as https://github.com/someone/course(.git)."""
    match = _GITHUB_ADDRESS.fullmatch(address)
    if match is None:
        raise SystemExit(
            f"pyproject.toml: [tool.llmfs] repository = {address!r} is not a GitHub repository's address "
            "(https://github.com/OWNER/NAME); Colab opens notebooks from GitHub only."
        )
    return match.group(1), match.group(2)


def colab_url(address: str, notebook: str) -> str:
    """The address that opens ``notebook`` (a path inside the repository) in Colab."""
    owner, name = github_repository(address)
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{BRANCH}/{notebook}"


def clone_address(address: str) -> str:
    owner, name = github_repository(address)
    return f"https://github.com/{owner}/{name}"


def colab_section(address: str) -> list[str]:
    """The lines of the "## Run in Google Colab" section, its heading first."""
    if address:
        open_step = 'Open a notebook with its "Open in Colab" link in the [Chapters](#chapters) table.'
        run_step = (
            f"Run this in a first cell. It copies the course into `{CLONE_DIR}` and installs the packages\n"
            "   the notebooks import (Colab already has PyTorch):"
        )
        repository = clone_address(address)
    else:
        open_step = (
            "Open a notebook from this repository: File > Open notebook > GitHub, and paste its address."
        )
        run_step = (
            f"Run this in a first cell, with the repository's address in place of `{ADDRESS_PLACEHOLDER}`.\n"
            f"   It copies the course into `{CLONE_DIR}` and installs the packages the notebooks import\n"
            "   (Colab already has PyTorch):"
        )
        repository = ADDRESS_PLACEHOLDER
    text = f"""{COLAB_HEADING}
<!-- Written by `python -m shared.export` (shared/colab_links.py) from `repository` in pyproject.toml. -->
1. {open_step}
2. Before you run anything, choose the runtime (Runtime > Change runtime type): a GPU for full mode; the
   CPU is enough for quick mode. Changing the runtime later starts a new, empty machine, without the
   course's files: step 3 then has to be run again.
3. {run_step}

```python
![ -d {CLONE_DIR} ] || git clone --depth 1 {repository} {CLONE_DIR}
%cd {CLONE_DIR}
!pip install -q -r requirements-notebooks.txt
import sys; sys.path.insert(0, "{CLONE_DIR}")  # importable now, without restarting the session
```

`shared.device.get_device()` picks CUDA, then Apple's MPS (PyTorch 2.9 or later only), then the CPU.
"""
    return text.splitlines() + [""]


def _section_bounds(lines: list[str], heading: str) -> tuple[int, int]:
    """Indices of a "## " section: its heading line, and the line after its last one."""
    if heading not in lines:
        raise SystemExit(f"README.md has no line {heading!r}: the Colab links are written under it")
    start = lines.index(heading)
    in_code = False
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("```"):
            in_code = not in_code  # a "## " inside a code block is not a heading
        elif not in_code and lines[i].startswith("## "):
            return start, i
    return start, len(lines)


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip()[1:-1].split("|")]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_with_colab_column(table: list[str], address: str) -> list[str]:
    """The chapters table with its Colab column rewritten, or left out while ``address`` is empty."""
    rows = [_cells(line) for line in table]
    header = rows[0]
    if any(len(row) != len(header) for row in rows):
        raise SystemExit("README.md: a row of the chapters table has more or fewer cells than its header")
    if COLAB_COLUMN in header:
        column = header.index(COLAB_COLUMN)
        rows = [row[:column] + row[column + 1 :] for row in rows]
    if not address:
        return [_row(row) for row in rows]
    if NOTEBOOK_COLUMN not in rows[0]:
        raise SystemExit(f"README.md: the chapters table has no {NOTEBOOK_COLUMN!r} column")
    column = rows[0].index(NOTEBOOK_COLUMN) + 1  # the link goes right after the notebook's name
    new_rows = [
        rows[0][:column] + [COLAB_COLUMN] + rows[0][column:],
        rows[1][:column] + ["---"] + rows[1][column:],
    ]
    for row in rows[2:]:
        match = _NOTEBOOK_LINK.search(row[column - 1])
        if match is None:
            raise SystemExit(f"README.md: no link to a notebook in the chapters table's row {_row(row)!r}")
        link = f"[Open in Colab]({colab_url(address, match.group(1))})"
        new_rows.append(row[:column] + [link] + row[column:])
    return [_row(row) for row in new_rows]


def readme_with_colab_links(readme: str, address: str) -> str:
    """README.md's text, its chapters table's Colab column and its Colab section written for ``address``."""
    lines = readme.split("\n")
    start, end = _section_bounds(lines, CHAPTERS_HEADING)
    table = [i for i in range(start, end) if lines[i].startswith("|")]
    if not table or table != list(range(table[0], table[-1] + 1)):
        raise SystemExit("README.md: the Chapters section must hold one table")
    lines[table[0] : table[-1] + 1] = table_with_colab_column(lines[table[0] : table[-1] + 1], address)
    start, end = _section_bounds(lines, COLAB_HEADING)
    lines[start:end] = colab_section(address)
    return "\n".join(lines)
