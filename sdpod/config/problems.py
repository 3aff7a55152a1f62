"""Where a value sits in a TOML document, and the problems found with values.

Validation never stops at the first problem: every check records what it found on a
`Spot` and carries on, so that one run tells a user everything that is wrong with a file.
Problems are turned into text only at the end, on the error path, once their lines are
known.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KeyPath = tuple[str | int, ...]
"""Keys and list indices from the document's root down to one value."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Invalid(Exception):
    """Raised by the small parsers of one value; the caller records it on a `Spot`.

    It carries one message per broken rule, each ending in what would be valid.
    """

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Problem:
    path: KeyPath
    message: str
    value: str | None = None
    """The offending value as the user would recognise it, already rendered."""


@dataclass
class Findings:
    """What one load of one file has found so far, shared by all of its spots."""

    base_dir: Path
    environ: Mapping[str, str]
    problems: list[Problem] = field(default_factory=list)
    origins: dict[KeyPath, str] = field(default_factory=dict)
    """The text before `${VAR}` substitution, for strings that substitution changed."""
    unresolved: set[KeyPath] = field(default_factory=set)
    """Strings whose references could not be replaced: their other problems are moot."""
    check_paths: bool = True
    """Whether files the TOML names (image layouts, volume sources) must exist."""
    short_names: frozenset[str] = frozenset()
    """Short image names that the user's registries.conf has aliases for."""


@dataclass(frozen=True)
class Spot:
    """One position in the document, and the findings its problems are recorded in."""

    path: KeyPath
    findings: Findings

    def child(self, key: str | int) -> Spot:
        return Spot((*self.path, key), self.findings)

    @property
    def base_dir(self) -> Path:
        return self.findings.base_dir

    @property
    def check_paths(self) -> bool:
        return self.findings.check_paths

    def fail(self, message: str, value: object = None) -> None:
        """Record that the value here breaks a rule; `message` says which and what is valid."""
        if self.path in self.findings.unresolved:
            return
        self.findings.problems.append(Problem(self.path, message, self._show(value)))

    def refuse(self, error: Invalid, value: object) -> None:
        for message in error.messages:
            self.fail(message, value)

    def wrong_type(self, expected: str, value: object) -> None:
        self.fail(f"expected {expected}, got {type_word(value)}")

    def _show(self, value: object) -> str | None:
        shown = render_value(value)
        origin = self.findings.origins.get(self.path)
        if shown is None or origin is None:
            return shown
        return f"{shown} (from {render_value(origin)})"


def type_word(value: object) -> str:
    """Name a parsed TOML value's type the way the TOML specification does."""
    # bool is a subclass of int, and datetime of date: test the narrower type first.
    kinds: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "a list"),
        (dict, "a table"),
        (datetime.datetime, "a date-time"),
        (datetime.date, "a date"),
        (datetime.time, "a time"),
    )
    for kind, word in kinds:
        if isinstance(value, kind):
            return word
    return f"a value of type {type(value).__name__}"


def render_value(value: object) -> str | None:
    """Show a scalar the way TOML writes it; None for tables, lists and nothing at all."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float | datetime.date | datetime.time):
        return str(value)
    return None


def render_path(path: KeyPath) -> str:
    """Spell a key path as a user would write it: `containers.web.ports[1]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        text += f".{key}" if text else key
    return text


def render_problem(file: str, line: int | None, problem: Problem) -> str:
    """One line: `FILE:LINE: KEY.PATH: "VALUE": MESSAGE`, leaving out what is not known."""
    parts = [file if line is None else f"{file}:{line}"]
    if problem.path:
        parts.append(render_path(problem.path))
    if problem.value is not None:
        parts.append(problem.value)
    parts.append(problem.message)
    return ": ".join(parts)
