"""Writing a blob into the store's `blobs/sha256/` so that only verified content has a name.

A blob is streamed into a temporary file beside its final place, hashed and counted on
the way, synced, checked against its descriptor, and only then renamed to its digest.
Writers run in several processes at once (two pulls) without the store's lock, so each
holds flock(2) on its temporary file while it writes: a file nobody holds was left by an
interrupted writer, and `clean_temporary` removes exactly those.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from sdpod.images.digest import CHUNK, Digest, HashingReader, Readable, check, hash_stream

TEMP_PREFIX = ".tmp-"

Progress = Callable[[int], None]


def blob_path(blobs: Path, digest: Digest) -> Path:
    return blobs / digest.hex


def has_blob(blobs: Path, digest: Digest, size: int) -> bool:
    """Whether the blob is stored: a name under blobs/ is only ever given after verifying."""
    try:
        return blob_path(blobs, digest).stat().st_size == size
    except FileNotFoundError:
        return False


def write_blob(
    blobs: Path,
    source: Readable,
    digest: Digest,
    size: int,
    what: str,
    where: str,
    progress: Progress | None = None,
) -> Path:
    """Store `source`'s bytes as blob `digest`, or raise naming `what` from `where`."""
    with _temporary(blobs) as (temp, temp_path):
        reader = HashingReader(source)
        while chunk := reader.read(CHUNK):
            temp.write(chunk)
            if progress is not None:
                progress(len(chunk))
            if reader.size > size:
                break  # more than promised: no need to read the rest to refuse it
        temp.flush()
        os.fsync(temp.fileno())
        check(what, where, digest, size, (reader.digest, reader.size))
        target = blob_path(blobs, digest)
        os.rename(temp_path, target)
    return target


@contextlib.contextmanager
def _temporary(blobs: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A new temporary file under `blobs`, flock(2)ed, removed unless renamed away."""
    while True:
        fd, name = tempfile.mkstemp(dir=blobs, prefix=TEMP_PREFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleaner may have taken the lock and removed the name between mkstemp and
        # flock; then this file has no name left and another one is made.
        if _same_file(fd, name):
            break
        os.close(fd)
    path = Path(name)
    with os.fdopen(fd, "wb") as temp:
        try:
            yield temp, path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _same_file(fd: int, name: str) -> bool:
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def clean_temporary(blobs: Path) -> int:
    """Remove temporary files that no writer holds; return how many went."""
    removed = 0
    for path in blobs.glob(TEMP_PREFIX + "*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            if _abandoned(fd):
                # Removed while this lock is held: no writer can be using the file.
                path.unlink(missing_ok=True)
                removed += 1
        finally:
            os.close(fd)
    return removed


def _abandoned(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False  # a live writer holds it
        raise
    return True


def verify_blob(path: Path) -> Digest:
    """Hash a stored blob; the caller compares with its name."""
    with path.open("rb") as file:
        digest, _ = hash_stream(file)
    return digest
