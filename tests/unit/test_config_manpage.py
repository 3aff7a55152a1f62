"""packaging/man/sdpod.toml.5 is what the setting tables generate, and troff reads it cleanly."""

from __future__ import annotations

import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from sdpod.config import manpage, reference
from sdpod.config.load import load_project

PAGE = Path(__file__).parent.parent.parent / "packaging" / "man" / "sdpod.toml.5"

needs_groff = pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")


def test_committed_page_is_generated_from_the_tables() -> None:
    assert PAGE.read_text(encoding="utf-8") == manpage.render(), (
        "packaging/man/sdpod.toml.5 is out of date: "
        "run `python -m sdpod.config.manpage > packaging/man/sdpod.toml.5`"
    )


def test_page_has_a_tagged_paragraph_for_every_key_of_every_table() -> None:
    page = manpage.render()
    for section in reference.SECTIONS:
        lines = _section_lines(page, section)
        keys = [tag for macro, tag in pairwise(lines) if macro == ".TP"]
        assert keys == [f"\\fB\\%{row.key}\\fR" for row in section.rows]


@needs_groff
def test_groff_reads_the_page_without_a_warning() -> None:
    # -ww turns on every warning troff has; -z formats without printing.
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", "-Tutf8"],
        input=manpage.render(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
def test_man_reads_the_page_without_a_warning(tmp_path: Path) -> None:
    page = tmp_path / "sdpod.toml.5"
    page.write_text(manpage.render(), encoding="utf-8")
    result = subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
        capture_output=True,
        text=True,
        check=False,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "SDPOD.TOML(5)" in result.stdout


@needs_groff
def test_every_help_default_and_example_reads_back_as_written() -> None:
    text = _typeset(manpage.render())
    assert _words(reference.FILE_FACTS) in text
    for _, syntax in reference.VALUE_KINDS:
        assert _words(reference.sentence(syntax)) in text
    for section in reference.SECTIONS:
        for row in section.rows:
            assert _words(reference.sentence(row.help)) in text, row.key
            assert _words(f"Default: {reference.default_text(row)}.") in text, row.key
            assert _words(row.example) in text, row.key
    assert _words(manpage.EXAMPLE) in text


@needs_groff
def test_text_that_looks_like_requests_or_escapes_is_printed_as_written() -> None:
    hostile = [
        ".SH not a heading",
        "'br not a break",
        r"a \fB backslash and \\ two",
        "--debug, read-only, 'single' and `sdpod --help` at ~ and ^",
        "`.TH in code`",
        "... and so on",
    ]
    source = "\n".join(
        [".TH T 1", ".SH NAME", *(f"{manpage._text(line)}\n.br" for line in hostile)]
    )

    assert _typeset(source) == _words(" ".join(["NAME", *hostile]))


@needs_groff
def test_examples_that_look_like_requests_are_printed_as_written() -> None:
    example = ".hidden = 'x'\n'quoted' = \"-\\\\n\""
    source = "\n".join([".TH T 1", ".SH NAME", manpage._example(example)])

    assert _typeset(source) == _words(f"NAME {example}")


def test_example_file_is_valid(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    path = tmp_path / "shop.toml"
    path.write_text(manpage.EXAMPLE, encoding="utf-8")

    project = load_project(path, {"DB_PASSWORD": "secret"})

    assert [container.name for container in project.containers] == ["db", "web"]


def _section_lines(page: str, section: reference.Section) -> list[str]:
    title = f'.SH "{section.headers[0].strip("[]").upper()} TABLE"'
    start = page.index(title + "\n") + len(title) + 1
    end = page.find("\n.SH ", start)
    return page[start:end].splitlines()


def _typeset(source: str) -> str:
    """The page as troff prints it, plain, unhyphenated, in one run of words."""
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-rHY=0", "-rLL=300n", "-P-cbou"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    )
    body = result.stdout.splitlines()[1:-1]  # without the header and footer lines
    return _words("\n".join(body))


def _words(text: str) -> str:
    return " ".join(text.replace("`", "").split())
