"""Find the line a key path sits on, for error messages only.

`tomllib` keeps no positions, so when a file has problems its text is parsed a second
time with `tomlkit`, whose parser is watched as it goes: the offset where each value
starts and where each table header starts is noted, then the finished document is walked
to give every noted value its key path. tomlkit is imported here, inside the function,
so that loading a valid file never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdpod.config.problems import KeyPath

OffsetOf = Callable[[KeyPath], int | None]


def offset_locator(text: str) -> OffsetOf:
    """Return a function giving the offset in `text` where a key path's value starts.

    A path with no position of its own (a missing key, an implicit table) takes the
    earliest offset of what lies inside it, else the offset of the table holding it.
    The function answers None when nothing on the path can be found.
    """
    offsets = _offsets(text)

    def offset_of(path: KeyPath) -> int | None:
        for depth in range(len(path), 0, -1):
            offset = _offset_within(offsets, path[:depth])
            if offset is not None:
                return offset
        return None

    return offset_of


def line_at(text: str, offset: int) -> int:
    """The 1-based line number of an offset in `text`."""
    return text.count("\n", 0, offset) + 1


def _offset_within(offsets: dict[KeyPath, int], path: KeyPath) -> int | None:
    if path in offsets:
        return offsets[path]
    inside = [offset for key, offset in offsets.items() if key[: len(path)] == path]
    return min(inside, default=None)


def _offsets(text: str) -> dict[KeyPath, int]:
    import tomlkit.exceptions

    parser = _watching_parser(text)
    try:
        document = parser.parse()
    # The document already passed tomllib. If tomlkit disagrees, or stumbles on
    # it, the problems are still reported, only without their lines.
    except (tomlkit.exceptions.TOMLKitError, ValueError, KeyError, RecursionError):
        return {}
    offsets = dict(parser.header_offsets)
    _walk_body(document.body, (), parser.value_offsets, offsets)
    return offsets


def _watching_parser(text: str) -> Any:
    from tomlkit.parser import Parser

    class WatchingParser(Parser):
        """tomlkit's parser, noting where values and table headers start.

        The noted items are kept alive with their offsets, so that an `id` seen here
        cannot be reused by a later object.
        """

        def __init__(self, source: str) -> None:
            super().__init__(source)
            self.value_offsets: dict[int, tuple[int, object]] = {}
            self.header_offsets: dict[KeyPath, int] = {}
            self.array_headers: set[KeyPath] = set()

        def _parse_value(self) -> Any:
            start = self._idx
            value = super()._parse_value()
            self.value_offsets[id(value)] = (start, value)
            return value

        def _parse_table(self, *args: Any, **kwargs: Any) -> Any:
            is_array, key = self._peek_table()
            path = tuple(part.key for part in key)
            # A table in an array of tables has an index in its key path that no
            # header shows; such tables, and tables below them, take their lines from
            # their keys instead.
            if is_array:
                self.array_headers.add(path)
            elif not any(path[:depth] in self.array_headers for depth in range(1, len(path) + 1)):
                self.header_offsets.setdefault(path, self._idx)
            return super()._parse_table(*args, **kwargs)

    return WatchingParser(text)


def _walk_body(
    body: list[tuple[Any, Any]],
    path: KeyPath,
    value_offsets: dict[int, tuple[int, object]],
    offsets: dict[KeyPath, int],
) -> None:
    """Give each noted value in a table's body its key path; tables recurse."""
    for key, item in body:
        if key is not None:
            _walk_item(item, (*path, key.key), value_offsets, offsets)


def _walk_item(
    item: Any,
    path: KeyPath,
    value_offsets: dict[int, tuple[int, object]],
    offsets: dict[KeyPath, int],
) -> None:
    from tomlkit import items

    noted = value_offsets.get(id(item))
    if noted is not None and path not in offsets:
        offsets[path] = noted[0]

    if isinstance(item, items.Table | items.InlineTable):
        _walk_body(item.value.body, path, value_offsets, offsets)
    elif isinstance(item, items.AoT):
        for index, table in enumerate(item.body):
            _walk_body(table.value.body, (*path, index), value_offsets, offsets)
    elif isinstance(item, items.Array):
        for index, element in enumerate(item):
            _walk_item(element, (*path, index), value_offsets, offsets)
