"""The line finder behind error messages: honest lines, or the table's line, never wrong."""

from __future__ import annotations

import pytest

from sdpod.config.locate import line_at, offset_locator
from sdpod.config.problems import KeyPath

DOCUMENT = """\
# comment
top = 1
a.b.c = "dotted"

[containers.web]
image = "x"
ports = [
  "1:1",   # first

  "2:2",
]
env = { A = "1", B = { C = "2" } }

[other]
key = [[1, 2],
  [3]]

[containers.web.sub]
deep = true

[containers.db]
image = "y"

[[array]]
k = 1

[[array]]
k = 2

[array.inner]
j = 3
"""

EXPECTED: list[tuple[KeyPath, int | None]] = [
    (("top",), 2),
    (("a",), 3),
    (("a", "b", "c"), 3),
    (("containers",), 5),
    (("containers", "web"), 5),
    (("containers", "web", "image"), 6),
    (("containers", "web", "ports"), 7),
    (("containers", "web", "ports", 0), 8),
    (("containers", "web", "ports", 1), 10),
    (("containers", "web", "env"), 12),
    (("containers", "web", "env", "B", "C"), 12),
    (("other", "key", 1, 0), 16),
    (("containers", "web", "sub"), 18),
    (("containers", "web", "sub", "deep"), 19),
    (("containers", "db"), 21),
    (("containers", "db", "image"), 22),
    (("array", 0, "k"), 25),
    (("array", 1), 28),
    (("array", 1, "inner", "j"), 31),
    # Keys that are not there fall back to the line of the table holding them.
    (("containers", "db", "name"), 21),
    (("containers", "web", "ports", 7), 7),
    (("containers", "web", "env", "Z"), 12),
    (("nowhere",), None),
    ((), None),
]


@pytest.mark.parametrize(("path", "line"), EXPECTED, ids=lambda item: repr(item))
def test_line_of_a_key_path(path: KeyPath, line: int | None) -> None:
    offset = offset_locator(DOCUMENT)(path)
    assert (None if offset is None else line_at(DOCUMENT, offset)) == line


def test_a_document_tomlkit_refuses_gives_no_lines() -> None:
    assert offset_locator("a = [\n")(("a",)) is None
