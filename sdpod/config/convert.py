"""Building blocks of the setting table's converters: type checks, lists, choices, numbers.

Every function here checks a value as parsed from TOML, records each problem on the
spot it is given, and returns None when it recorded any, as `Setting.convert` must.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TypeVar

from sdpod.config import quantities
from sdpod.config.problems import Invalid, Spot

T = TypeVar("T")
V = TypeVar("V")
E = TypeVar("E", bound=enum.Enum)


def flag(value: object, spot: Spot) -> bool | None:
    if isinstance(value, bool):
        return value
    spot.wrong_type("true or false", value)
    return None


def string(value: object, spot: Spot, like: str) -> str | None:
    if isinstance(value, str):
        return value
    spot.wrong_type(f"a string like {like}", value)
    return None


def strings(value: object, spot: Spot, like: str) -> list[tuple[Spot, str | None]] | None:
    """Check a list of strings; return each item with its spot, None where it is no string."""
    if not isinstance(value, list):
        spot.wrong_type(f"a list of strings like {like}", value)
        return None
    items: list[tuple[Spot, str | None]] = []
    for index, item in enumerate(value):
        items.append((spot.child(index), string(item, spot.child(index), like)))
    return items


def each(
    value: object, spot: Spot, like: str, parse: Callable[[str, Spot], T]
) -> tuple[T, ...] | None:
    """Parse every string of a list, recording each problem at its item's own index."""
    items = strings(value, spot, like)
    if items is None:
        return None
    parsed: list[T] = []
    for item_spot, text in items:
        if text is None:
            continue
        try:
            parsed.append(parse(text, item_spot))
        except Invalid as error:
            item_spot.refuse(error, text)
    return tuple(parsed) if len(parsed) == len(items) else None


def one(value: object, spot: Spot, like: str, parse: Callable[[str, Spot], T]) -> T | None:
    text = string(value, spot, like)
    if text is None:
        return None
    try:
        return parse(text, spot)
    except Invalid as error:
        spot.refuse(error, text)
        return None


def choices(kind: type[E]) -> str:
    """The words of an enum as a message lists them: `"no", "on-failure" or "always"`."""
    words = [f'"{member.value}"' for member in kind]
    return f"{', '.join(words[:-1])} or {words[-1]}"


def choice(value: object, spot: Spot, kind: type[E], what: str, like: E) -> E | None:
    """One of an enum's values, by its word; `like` is the one a type error shows."""

    def parse(text: str, _: Spot) -> E:
        try:
            return kind(text)
        except ValueError:
            raise Invalid(f"unknown {what}; valid: {choices(kind)}") from None

    return one(value, spot, f'"{like.value}"', parse)


def integer(value: object, spot: Spot, low: int, high: int) -> int | None:
    """An integer from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, int):
        spot.wrong_type(f"an integer from {low} to {high}", value)
        return None
    if not low <= value <= high:
        spot.fail(f"{value} is out of range; valid: {low} to {high}", value)
        return None
    return value


def number(value: object, spot: Spot, low: float, high: float) -> float | None:
    """A finite number, integer or float, from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        spot.wrong_type(f"a number from {low:g} to {high:g}", value)
        return None
    if not math.isfinite(value) or not low <= value <= high:
        spot.fail(f"{value} is out of range; valid: {low:g} to {high:g}", value)
        return None
    return float(value)


def size(value: object, spot: Spot) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        spot.wrong_type(quantities.SIZE_SYNTAX, value)
        return None
    return _quantity(value, spot, quantities.parse_size)


def duration(value: object, spot: Spot, allow_zero: bool) -> float | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        spot.wrong_type(quantities.DURATION_SYNTAX, value)
        return None
    return _quantity(value, spot, lambda given: quantities.parse_duration(given, allow_zero))


def signal(value: object, spot: Spot) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        spot.wrong_type(quantities.SIGNAL_SYNTAX, value)
        return None
    return _quantity(value, spot, quantities.parse_signal)


def _quantity(value: V, spot: Spot, parse: Callable[[V], T]) -> T | None:
    try:
        return parse(value)
    except Invalid as error:
        spot.refuse(error, value)
        return None


def text_line(value: object, spot: Spot, like: str) -> str | None:
    """A non-empty line of printable text, as a unit file can hold it after its key."""
    text = string(value, spot, like)
    if text is None:
        return None
    if not text.strip():
        spot.fail(f"the text is empty; valid: a line of text like {like}", text)
        return None
    if any(not character.isprintable() for character in text):
        spot.fail("the text holds a line break or control character; valid: one line", text)
        return None
    return text


def texts_or_tables(
    value: object,
    spot: Spot,
    like: str,
    parse_text: Callable[[str, Spot], T],
    parse_table: Callable[[dict[str, object], Spot], T | None],
) -> tuple[T, ...] | None:
    """A list whose items are each a string in a short form or a table in a long one."""
    if not isinstance(value, list):
        spot.wrong_type(f"a list of strings or tables like {like}", value)
        return None
    parsed: list[T] = []
    for index, item in enumerate(value):
        at = spot.child(index)
        if isinstance(item, dict):
            found = parse_table(item, at)
        elif isinstance(item, str):
            found = one(item, at, like, parse_text)
        else:
            at.wrong_type(f"a string or a table like {like}", item)
            continue
        if found is not None:
            parsed.append(found)
    return tuple(parsed) if len(parsed) == len(value) else None


def string_table(
    value: object, spot: Spot, like: str, parse: Callable[[str, object, Spot], T | None]
) -> tuple[T, ...] | None:
    """A table whose keys are names the user chooses, each value parsed with its key."""
    if not isinstance(value, dict):
        spot.wrong_type(f"a table like {like}", value)
        return None
    parsed = [parse(key, item, spot.child(key)) for key, item in value.items()]
    found = [item for item in parsed if item is not None]
    return tuple(found) if len(found) == len(parsed) else None


def attempt(spot: Spot, value: object, parse: Callable[[], T]) -> T | None:
    """`parse()`, with the `Invalid` it may raise recorded on `spot` against `value`."""
    try:
        return parse()
    except Invalid as error:
        spot.refuse(error, value)
        return None
