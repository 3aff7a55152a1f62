"""The reference of every setting, docs/settings.md, generated from the setting tables.

`python -m sdpod.config.reference > docs/settings.md` writes it; a unit test fails when
the committed file differs from what the tables give, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdpod.config import quantities, settings
from sdpod.config.schema import REQUIRED, Setting

_INTRO = """\
# sdpod settings

<!-- Generated from the setting tables in sdpod/config/settings.py by
     `python -m sdpod.config.reference > docs/settings.md`: edit the tables, not this. -->

A TOML file describes one container in a `[container]` table, or several in
`[containers.NAME]` tables, and may name the project they form in a `[project]` table.
`${{VAR}}` and `${{VAR:-default}}` in string values come from the environment; `$${{` is
a literal `${{`. Relative paths start from the directory of the TOML file.

Kinds of values used below:

- sizes: {sizes};
- durations: {durations}; at most 24h, and 0 only for `restart_delay` and `start_period`;
- signals: {signals}.
"""

_TABLES: tuple[tuple[str, str, tuple[Setting[Any], ...]], ...] = (
    ("`[project]`", "The project; the whole table is optional.", settings.PROJECT),
    ("`[container]` or `[containers.NAME]`", "One container.", settings.SETTINGS),
    *(
        (
            f"`[container.{row.key}]` or `[containers.NAME.{row.key}]`",
            f"The table of `{row.key}`, also written inline: `{row.example}`.",
            row.table,
        )
        for row in settings.SETTINGS
        if row.table
    ),
)


def render() -> str:
    """The whole reference, as Markdown."""
    intro = _INTRO.format(
        sizes=quantities.SIZE_SYNTAX,
        durations=quantities.DURATION_SYNTAX,
        signals=quantities.SIGNAL_SYNTAX,
    )
    sections = [_section(title, text, rows) for title, text, rows in _TABLES]
    return "\n".join([intro, *sections])


def _section(title: str, text: str, rows: Sequence[Setting[Any]]) -> str:
    lines = [f"## {title}", "", text, "", "| key | default | meaning |", "|---|---|---|"]
    lines += [_row(row) for row in rows]
    return "\n".join(lines) + "\n"


def _row(row: Setting[Any]) -> str:
    meaning = f"{row.help[:1].upper()}{row.help[1:]}. Example: `{row.example}`"
    return f"| `{row.key}` | {_cell(_default(row))} | {_cell(meaning)} |"


def _default(row: Setting[Any]) -> str:
    if row.shown_default:
        return row.shown_default
    if row.default is REQUIRED:
        return "required"
    shown = row.dump(row.default, str)
    return "none" if shown is None else f"`{json.dumps(shown, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    # A pipe would end the table's cell, even inside a code span (GitHub's Markdown).
    return text.replace("|", "\\|")


def write(path: Path) -> None:
    path.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    print(render(), end="")
