"""The README's generated sections: replaced between their markers, nothing else touched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoscaler.errors import TraceError
from autoscaler.reporting.splice import markers, splice, update_file

DOC = ("# Title\n\nprose before\n<!-- bench:a:begin -->\nold table\n<!-- bench:a:end -->\n"
       "prose after\n<!-- bench:b:begin -->\nb stays\n<!-- bench:b:end -->\n")


@pytest.mark.parametrize(("name", "body", "expected"), [
    pytest.param("a", "| new |\n", DOC.replace("old table", "| new |"), id="replaces-only-its-own"),
    pytest.param("b", "\n\nx\n\n", DOC.replace("b stays", "x"), id="blank-lines-trimmed"),
    pytest.param("a", "l1\nl2", DOC.replace("old table", "l1\nl2"), id="multi-line"),
])
def test_splice_replaces_between_markers(name: str, body: str, expected: str) -> None:
    assert splice(DOC, name, body) == expected


@pytest.mark.parametrize(("text", "missing"), [
    pytest.param("no markers here\n", "<!-- bench:a:begin -->", id="absent"),
    pytest.param(DOC + "<!-- bench:a:begin -->\n", "<!-- bench:a:begin -->", id="twice"),
    pytest.param(DOC.replace("<!-- bench:a:end -->", ""), "<!-- bench:a:end -->", id="no-end"),
])
def test_splice_refuses_a_missing_or_repeated_marker(text: str, missing: str) -> None:
    with pytest.raises(TraceError, match=r"README\.md: expected the marker") as info:
        splice(text, "a", "x", source="README.md")
    assert missing in str(info.value)


def test_bad_section_name_is_refused() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        markers("Has Space")


def test_update_file_rewrites_in_place(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(DOC, encoding="utf-8")
    update_file(path, "a", "fresh")
    assert path.read_text(encoding="utf-8") == DOC.replace("old table", "fresh")
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_every_readme_section_is_well_formed() -> None:
    """Each generated section of the real README has exactly one begin and one end marker."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    begins = set(re.findall(r"<!-- bench:([a-z0-9_.-]+):begin -->", readme))
    ends = set(re.findall(r"<!-- bench:([a-z0-9_.-]+):end -->", readme))
    assert begins == ends
    for name in begins:
        splice(readme, name, "probe", source="README.md")  # raises on a repeated marker
