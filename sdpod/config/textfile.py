"""Reading a file the user names, bounded: a link to /dev/zero or a FIFO must not hang or
exhaust memory before any check has run."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class Unreadable(Exception):
    """The path is no regular file, or is larger than the caller allows."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit`; `Unreadable` otherwise.

    Opened without blocking, so that a FIFO is refused rather than waited on; OSError
    rises for a file that cannot be opened at all.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Unreadable(f"is larger than {limit >> 20} MiB")
    return data
