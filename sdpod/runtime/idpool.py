"""Automatic user namespaces for root: each container gets a range of host ids of its own.

Rootless containers share their user's subordinate ids. As root, sdpod hands each
container its own block of 65536 host ids, so that a process escaping one container
owns nothing of another's. Blocks start at 2^30, skip every range /etc/subuid and
/etc/subgid grant to users, and are recorded in /var/lib/sdpod/idranges.json.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sdpod.errors import RuntimeSetupError
from sdpod.kernel.userns import SUBGID, SUBUID, IdMapping, IdRange, granted_ranges
from sdpod.runtime.bundle import write_atomically

BASE = 1 << 30
BLOCK = 65536
# Blocks up to 2^31: the highest ids stay clear of (uid_t)-1 and of systemd's own
# dynamic and container ranges, which lie below 2^31 as well but far lower.
BLOCKS = (1 << 30) // BLOCK
# The first and last host id of the pool.
POOL = (BASE, BASE + BLOCKS * BLOCK - 1)


def overlaps_pool(first: int, count: int) -> bool:
    """Whether host ids `first` to `first + count - 1` reach into the pool."""
    return first <= POOL[1] and POOL[0] < first + count


def _overlaps(block: int, taken: list[tuple[int, int]]) -> bool:
    start = BASE + block * BLOCK
    return any(start < first + count and first < start + BLOCK for first, count in taken)


def _mapping(block: int) -> IdMapping:
    ids = (IdRange(0, BASE + block * BLOCK, BLOCK),)
    return IdMapping(uids=ids, gids=ids)


class IdPool:
    """The record of which container holds which block, under a lock."""

    def __init__(self, root: Path) -> None:
        self._file = root / "idranges.json"
        self._lock = root / "idranges.lock"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                record: dict[str, int] = json.loads(self._file.read_text())
            except FileNotFoundError:
                record = {}
            yield record
            write_atomically(self._file, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def mapping_for(self, name: str) -> IdMapping:
        """The block of `name`, allocated the first time it is asked for."""
        with self._locked() as record:
            if name not in record:
                record[name] = self._free_block(set(record.values()))
            return _mapping(record[name])

    def share(self, name: str, owner: str) -> IdMapping:
        """Give `name` the block of `owner`, allocated if need be: a container that joins
        another's user namespace runs with its ids. The block stays taken until both
        are released."""
        with self._locked() as record:
            if owner not in record:
                record[owner] = self._free_block(set(record.values()))
            record[name] = record[owner]
            return _mapping(record[name])

    def release(self, name: str) -> None:
        with self._locked() as record:
            record.pop(name, None)

    def _free_block(self, used: set[int]) -> int:
        granted = granted_ranges(SUBUID) + granted_ranges(SUBGID)
        taken = [(start, count) for _, start, count in granted]
        for block in range(BLOCKS):
            if block not in used and not _overlaps(block, taken):
                return block
        raise RuntimeSetupError(
            f"failed to find a free range of ids: all {BLOCKS} blocks are in use",
            hint="remove containers you no longer need with `sdpod down`",
        )
