"""What a pull tells the user while it runs: bars on a terminal, lines elsewhere, or nothing.

Layers are fetched by several threads, so every method may be called from any of them.
`close` must be called before anything forks: the terminal display runs a thread of
its own, which ends there.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def begin(self, title: str, layers: Sequence[tuple[str, int]]) -> None:
        """A pull starts; `layers` are (digest, bytes) of the blobs to fetch."""

    def advance(self, layer: str, count: int) -> None:
        """`count` more bytes of `layer` arrived."""

    def done(self, layer: str) -> None:
        """`layer` is stored, verified."""

    def say(self, line: str) -> None:
        """A step worth a line of its own (`unpacking`, `stored as ...`)."""

    def close(self) -> None:
        """No more calls follow."""


def for_stream(quiet: bool, stream: TextIO | None = None) -> Progress:
    """Nothing when `quiet`, bars when `stream` (stderr) is a terminal, else plain lines."""
    stream = stream or sys.stderr
    if quiet:
        return Quiet()
    if stream.isatty():
        return Bars(stream)
    return Lines(stream)


def human_size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class Quiet:
    def begin(self, title: str, layers: Sequence[tuple[str, int]]) -> None:
        pass

    def advance(self, layer: str, count: int) -> None:
        pass

    def done(self, layer: str) -> None:
        pass

    def say(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass


class Lines:
    """One line per step and per finished layer, for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.sizes: dict[str, int] = {}
        self.lock = threading.Lock()

    def begin(self, title: str, layers: Sequence[tuple[str, int]]) -> None:
        self.sizes = dict(layers)
        total = human_size(sum(self.sizes.values()))
        self.say(f"{title}: fetching {len(layers)} layer(s), {total}")

    def advance(self, layer: str, count: int) -> None:
        pass

    def done(self, layer: str) -> None:
        self.say(f"layer {short(layer)}: {human_size(self.sizes.get(layer, 0))}, verified")

    def say(self, line: str) -> None:
        with self.lock:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class Bars:
    """A bar per layer and one for the total, drawn by rich (imported only here)."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        self.console = Console(file=stream)
        self.bars: Any = None
        self.tasks: dict[str, Any] = {}
        self.total: Any = None

    def begin(self, title: str, layers: Sequence[tuple[str, int]]) -> None:
        from rich import progress as rp

        self.console.print(title)
        self.bars = rp.Progress(
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.DownloadColumn(),
            rp.TransferSpeedColumn(),
            console=self.console,
        )
        for digest, size in layers:
            self.tasks[digest] = self.bars.add_task(short(digest), total=size)
        self.total = self.bars.add_task("total", total=sum(size for _, size in layers))
        self.bars.start()

    def advance(self, layer: str, count: int) -> None:
        if self.bars is not None:
            self.bars.advance(self.tasks[layer], count)
            self.bars.advance(self.total, count)

    def done(self, layer: str) -> None:
        pass

    def say(self, line: str) -> None:
        self.console.print(line)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
