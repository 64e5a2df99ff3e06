"""README.md's Colab links come from one setting, pyproject.toml's `[tool.llmfs] repository`."""

import re

import pytest

from shared import colab_links, export

README = export.REPO_ROOT / "README.md"
ADDRESS = "https://github.com/someone/course"
COLAB_BASE = "https://colab.research.google.com/github/someone/course/blob/main/"


def _readme_for(address):
    return colab_links.readme_with_colab_links(README.read_text(encoding="utf-8"), address)


def _table_rows(readme):
    """The chapters table's rows as lists of cells, header first (the separator row left out)."""
    lines = readme.split("\n")
    start = lines.index(colab_links.CHAPTERS_HEADING)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
        elif table:
            break
    return [table[0]] + table[2:]


def _setup_cell(readme):
    section = readme.split(colab_links.COLAB_HEADING, 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_in_the_repository_agrees_with_the_setting():
    setting = colab_links.repository_setting(export.REPO_ROOT)
    assert _readme_for(setting) == README.read_text(encoding="utf-8"), "run `python -m shared.export`"


def test_every_chapter_notebook_gets_its_colab_link():
    header, *rows = _table_rows(_readme_for(ADDRESS))
    notebook_column, colab_column = header.index("Notebook"), header.index("Colab")
    assert colab_column == notebook_column + 1
    linked = {}
    for row in rows:
        link = re.fullmatch(r"\[(\S+\.ipynb)\]\(\1\)", row[notebook_column])
        assert link, f"not a link to a notebook: {row[notebook_column]}"
        linked[link.group(1)] = row[colab_column]
    assert sorted(linked) == [nb.as_posix() for nb in export.chapter_notebooks()]
    for notebook, cell in linked.items():
        assert cell == f"[Open in Colab]({COLAB_BASE}{notebook})"


def test_the_setup_cell_clones_the_repository_and_installs_the_light_requirements():
    cell = _setup_cell(_readme_for(ADDRESS))
    assert f"git clone --depth 1 {ADDRESS} /content/course" in cell
    assert "!pip install -q -r requirements-notebooks.txt" in cell
    assert "<repository address>" not in _readme_for(ADDRESS)


@pytest.mark.parametrize("spelling", [ADDRESS + ".git", ADDRESS + "/", " " + ADDRESS + " "])
def test_other_spellings_of_the_address_give_the_same_readme(tmp_path, spelling):
    (tmp_path / "pyproject.toml").write_text(f'[tool.llmfs]\nrepository = "{spelling}"\n')
    assert _readme_for(colab_links.repository_setting(tmp_path)) == _readme_for(ADDRESS)


def test_without_an_address_no_colab_link_is_written():
    readme = _readme_for("")
    assert "colab.research.google.com" not in readme
    assert "Colab" not in _table_rows(readme)[0]
    assert "git clone --depth 1 <repository address> /content/course" in _setup_cell(readme)
    assert "in place of `<repository address>`" in readme


def test_the_runtime_is_chosen_before_the_setup_cell_runs():
    for address in (ADDRESS, ""):
        section = _readme_for(address).split(colab_links.COLAB_HEADING, 1)[1]
        assert section.index("Change runtime type") < section.index("```python")


def test_setting_then_clearing_the_address_gives_back_the_same_readme():
    without = _readme_for("")
    with_links = colab_links.readme_with_colab_links(without, ADDRESS)
    assert with_links != without
    assert colab_links.readme_with_colab_links(with_links, ADDRESS) == with_links
    assert colab_links.readme_with_colab_links(with_links, "") == without


def test_an_address_outside_github_is_refused():
    with pytest.raises(SystemExit, match="GitHub"):
        _readme_for("https://gitlab.com/someone/course")


def test_export_check_reports_a_readme_that_disagrees_with_the_setting(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "README.md").write_text(README.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(f'[tool.llmfs]\nrepository = "{ADDRESS}"\n')
    for path, text in export.expected_files(tmp_path).items():
        path.write_text(text, encoding="utf-8")
    assert export.stale_files(tmp_path) == []
    assert COLAB_BASE in (tmp_path / "README.md").read_text(encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[tool.llmfs]\nrepository = ""\n')
    assert export.stale_files(tmp_path) == [tmp_path / "README.md"]
