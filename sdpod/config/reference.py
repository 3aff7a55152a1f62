"""The reference of every setting, docs/settings.md, generated from the setting tables.

`python -m sdpod.config.reference > docs/settings.md` writes it; a unit test fails when
the committed file differs from what the tables give, so the two cannot drift apart.

The facts about the file and the list of its sections live here once, in text whose only
markup is a `code` span, for this Markdown and for the man page, sdpod.toml(5)
(`sdpod.config.manpage`), to render each in its own way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sdpod.config import quantities, settings
from sdpod.config.schema import REQUIRED, Setting

FILE_FACTS: Final = """\
A TOML file describes one container in a `[container]` table, or several in
`[containers.NAME]` tables, and may name the project they form in a `[project]` table.
`${VAR}` and `${VAR:-default}` in string values come from the environment, or else
from a `.env` file of KEY=VALUE lines beside the TOML file; `$${` is a literal `${`.
Relative paths start from the directory of the TOML file."""

VALUE_KINDS_LEAD: Final = "Kinds of values used below:"
VALUE_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("sizes", quantities.SIZE_SYNTAX),
    (
        "durations",
        f"{quantities.DURATION_SYNTAX}; at most 24h, and at least 1s but for "
        "`restart_delay` and `start_period`, which may be 0",
    ),
    ("signals", quantities.SIGNAL_SYNTAX),
)
"""Each kind of value, and the forms it is written in."""

_MARKDOWN_HEAD = """\
# sdpod settings

<!-- Generated from the setting tables in sdpod/config/settings.py by
     `python -m sdpod.config.reference > docs/settings.md`: edit the tables, not this. -->
"""


@dataclass(frozen=True)
class Section:
    """One table of the file: the headers it is written under, what it is, and its keys."""

    headers: tuple[str, ...]
    """Like `("[container]", "[containers.NAME]")`."""
    text: str
    rows: tuple[Setting[Any], ...]


def _with_nested(section: Section) -> Iterator[Section]:
    """The section, then the tables held by its keys, each followed by its own."""
    yield section
    for row in section.rows:
        if row.table and row.table_items:
            headers = tuple(f"[{header[:-1]}.{row.key}]]" for header in section.headers)
            text = (
                f"Each item of the `{row.key}` list may be a table instead of a string, "
                f"also written inline, like `{row.table[0].example}`."
            )
            yield from _with_nested(Section(headers, text, row.table))
        elif row.table:
            headers = tuple(f"{header[:-1]}.{row.key}]" for header in section.headers)
            text = f"The table of `{row.key}`, also written inline: `{row.example}`."
            yield from _with_nested(Section(headers, text, row.table))


SECTIONS: Final[tuple[Section, ...]] = tuple(
    nested
    for top in (
        Section(("[project]",), "The project; the whole table is optional.", settings.PROJECT),
        Section(("[container]", "[containers.NAME]"), "One container.", settings.SETTINGS),
    )
    for nested in _with_nested(top)
)


def sentence(text: str) -> str:
    """`text`, a help string or a value's syntax, as a sentence."""
    return f"{text[:1].upper()}{text[1:]}."


def default_text(row: Setting[Any]) -> str:
    """The key's default in words, its value as a `code` span."""
    if row.shown_default:
        return row.shown_default
    if row.default is REQUIRED:
        return "required"
    shown = row.dump(row.default, str)
    return "none" if shown is None else f"`{json.dumps(shown, ensure_ascii=False)}`"


def render() -> str:
    """The whole reference, as Markdown."""
    kinds = ";\n".join(f"- {kind}: {syntax}" for kind, syntax in VALUE_KINDS)
    intro = "\n".join([_MARKDOWN_HEAD, FILE_FACTS, "", VALUE_KINDS_LEAD, "", f"{kinds}.", ""])
    return "\n".join([intro, *(_section(section) for section in SECTIONS)])


def _section(section: Section) -> str:
    title = " or ".join(f"`{header}`" for header in section.headers)
    lines = [f"## {title}", "", section.text, "", "| key | default | meaning |", "|---|---|---|"]
    lines += [_row(row) for row in section.rows]
    return "\n".join(lines) + "\n"


def _row(row: Setting[Any]) -> str:
    meaning = f"{sentence(row.help)} Example: `{row.example}`"
    return f"| `{row.key}` | {_cell(default_text(row))} | {_cell(meaning)} |"


def _cell(text: str) -> str:
    # A pipe would end the table's cell, even inside a code span (GitHub's Markdown).
    return text.replace("|", "\\|")


def write(path: Path) -> None:
    path.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    print(render(), end="")
