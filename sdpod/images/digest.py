"""Content digests: parsing them safely, and hashing blobs as they stream.

A digest read from a manifest becomes a file name under `blobs/`, so it is checked
against the one grammar we accept before any path is built from it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sdpod.errors import ImageError

CHUNK = 1 << 20

# The OCI image spec allows other algorithms; sha256 is what every registry and builder
# writes. sha512 support can come when an image in the wild needs it.
_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Digest:
    """A parsed `sha256:<hex>` content digest."""

    hex: str

    @property
    def algorithm(self) -> str:
        return "sha256"

    def __str__(self) -> str:
        return f"sha256:{self.hex}"

    @classmethod
    def parse(cls, text: object) -> Digest:
        """Parse a digest, refusing anything but lower-case `sha256:` and 64 hex digits."""
        match = _SHA256.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ImageError(
                f"failed to parse digest {text!r}: expected 'sha256:' and 64 lower-case hex digits"
            )
        return cls(match.group(1))


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class HashingReader:
    """A read-only stream that hashes and counts every byte read through it."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end, so that the digest covers the whole stream."""
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> Digest:
        return Digest(self._hash.hexdigest())


def hash_bytes(data: bytes) -> tuple[Digest, int]:
    return Digest(hashlib.sha256(data).hexdigest()), len(data)


def hash_stream(source: Readable, sink: Writable | None = None) -> tuple[Digest, int]:
    """Hash `source` to its end, copying it to `sink` on the way if given."""
    reader = HashingReader(source)
    while chunk := reader.read(CHUNK):
        if sink is not None:
            sink.write(chunk)
    return reader.digest, reader.size


def check(
    what: str, path: Path | str, expected: Digest, size: int, found: tuple[Digest, int]
) -> None:
    """Raise unless `found` (digest, size) is what the descriptor promised; `path` names
    where it was read (a file, or a registry's `host/repository@digest`)."""
    digest, found_size = found
    if found_size != size:
        raise ImageError(
            f"failed to verify {what} {path}: expected {size} bytes, found {found_size}"
        )
    if digest != expected:
        raise ImageError(
            f"failed to verify {what} {path}: expected digest {expected}, content hashes to "
            f"{digest}",
            hint="the file was changed or corrupted after it was written; fetch the image again",
        )
