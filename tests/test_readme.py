"""The README's config-group table lists every option in configs/ (and nothing that is not there)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def listed_options(cell: str) -> set[str]:
    """Backticked names of a table cell; `a_large`/`_small` stands for a_large and a_small."""
    names: set[str] = set()
    previous = ""
    for name in re.findall(r"`([^`]+)`", cell):
        if name.startswith("_") and previous:
            name = previous.rsplit("_", 1)[0] + name
        names.add(name)
        previous = name
    return names


def config_group_rows() -> dict[tuple[str, ...], set[str]]:
    """(groups of a row) -> options the README lists, from the table under '## Config groups'."""
    section = (ROOT / "README.md").read_text().split("## Config groups", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip().startswith("`"):
            rows[tuple(re.findall(r"`([^`]+)`", cells[1]))] = listed_options(cells[2])
    return rows


def test_readme_lists_every_config_group_option():
    rows = config_group_rows()
    groups = {path.name for path in (ROOT / "configs").iterdir() if path.is_dir() and path.name != "hydra"}
    assert {group for row in rows for group in row} == groups
    for row, listed in rows.items():
        options = {path.stem for group in row for path in (ROOT / "configs" / group).glob("*.yaml")}
        assert listed == options, f"README config groups, row {row}: missing {options - listed}, extra {listed - options}"
