"""What a setting is, and how a TOML table is read through a list of them.

A `Setting` is one row of a setting table (`sdpod.config.settings` holds the tables): its
TOML key, the model field it fills, how its value is converted and checked, its default,
its normalised output and its documentation. `read_table` reads any table, the
container's or a nested one, through its rows, recording every problem it finds.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, TypeAlias, TypeVar

from sdpod.config.problems import Spot
from sdpod.config.substitute import substitute

T = TypeVar("T")
Json: TypeAlias = str | int | float | bool | list["Json"] | dict[str, "Json"] | None
ShowPath = Callable[[Path], str]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One key of a table.

    `convert` checks the value's type and rules, records every problem on the spot it is
    given, and returns None when it recorded any. `dump` renders a converted value as
    JSON, showing paths with the function it is given.
    """

    key: str
    convert: Callable[[object, Spot], T | None]
    default: T | _Required
    dump: Callable[[T, ShowPath], Json]
    example: str
    """The key with a typical value, as a line of TOML."""
    help: str
    field: str = ""
    """The model's field, where its name is not the key's."""
    table: tuple[Setting[Any], ...] = ()
    """The rows of the table this key holds, for a key whose value is a table."""
    table_items: bool = False
    """Whether the key holds a list whose items may each be such a table."""
    shown_default: str = ""
    """The default as the reference shows it, where its normalised form would not do."""

    @property
    def attribute(self) -> str:
        return self.field or self.key


@dataclass(frozen=True)
class Read:
    """One table as read: where it is, and its values."""

    spot: Spot
    values: dict[str, Any] = field(default_factory=dict)
    """Converted values by model field, of the settings that were valid or defaulted."""
    raw: dict[str, Any] = field(default_factory=dict)
    """Values by key, after substitution, for quoting them in later problems."""


def read_table(
    read: Read,
    table: dict[str, Any],
    rows: Sequence[Setting[Any]],
    *,
    substitute_values: bool,
    implied: Collection[str] = (),
) -> None:
    """Convert each key of `table` through its row into `read`, then fill in defaults.

    `${VAR}` references are replaced where `substitute_values` says so: once, for a
    top-level table, since substitution reaches into nested tables by itself. Keys in
    `implied` are given some other way: they are neither defaulted nor missing.
    """
    by_key = {row.key: row for row in rows}
    for key, value in table.items():
        row = by_key.get(key)
        if row is None:
            unknown_key(read.spot.child(key), by_key)
        else:
            _read_value(read, row, value, substitute_values)

    for row in rows:
        if row.key in table or row.key in implied:
            continue
        if row.default is REQUIRED:
            read.spot.child(row.key).fail(f"required key is missing; valid: {row.example}")
        else:
            read.values[row.attribute] = row.default


def _read_value(read: Read, row: Setting[Any], value: object, substitute_values: bool) -> None:
    spot = read.spot.child(row.key)
    problems = spot.findings.problems
    before = len(problems)
    if substitute_values:
        value = substitute(value, spot)
    read.raw[row.key] = value
    converted = row.convert(value, spot)
    if len(problems) == before:
        read.values[row.attribute] = converted
    else:
        read.values.pop(row.attribute, None)


def convert_table(
    value: object, spot: Spot, rows: Sequence[Setting[Any]], like: str
) -> dict[str, Any] | None:
    """Read a nested table through `rows`; its values by field, or None if any was wrong."""
    if not isinstance(value, dict):
        spot.wrong_type(f"a table like {like}", value)
        return None
    problems = spot.findings.problems
    before = len(problems)
    read = Read(spot)
    read_table(read, value, rows, substitute_values=False)
    return read.values if len(problems) == before else None


def unknown_key(spot: Spot, known: Iterable[str]) -> None:
    key = str(spot.path[-1])
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        spot.fail(f'unknown key; did you mean "{close[0]}"?')
    else:
        spot.fail(f"unknown key; valid: {', '.join(known)}")
