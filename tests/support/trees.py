"""Describe a directory tree as plain data, so that tests compare trees with `==`."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

Node = tuple[object, ...]


def node(path: Path, owners: bool = False) -> Node:
    """One path as (type, mode, ...): size and sha256 for files, the target for symlinks."""
    st = path.lstat()
    mode = stat.S_IMODE(st.st_mode)
    ids: Node = (st.st_uid, st.st_gid) if owners else ()
    if stat.S_ISLNK(st.st_mode):
        return ("symlink", os.readlink(path), *ids)
    if stat.S_ISDIR(st.st_mode):
        return ("dir", oct(mode), *ids)
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return ("file", oct(mode), st.st_size, digest, *ids)
    if stat.S_ISFIFO(st.st_mode):
        return ("fifo", oct(mode), *ids)
    return ("other", oct(st.st_mode), *ids)


def tree(root: Path, owners: bool = False) -> dict[str, Node]:
    """Every path beneath `root` (not `root` itself), keyed by its path from `root`."""
    out: dict[str, Node] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            out["/" + str(path.relative_to(root))] = node(path, owners)
    return out


def all_paths(root: Path) -> set[str]:
    """Every path beneath `root`, symlinks not followed."""
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(str(Path(directory, name).relative_to(root)))
    return found
