"""Paths of an image whose layers are unpacked into trees of their own, resolved as
overlayfs merges those trees.

Each layer of an image is unpacked once into its own tree, which a container's overlay
stacks over the trees of the layers below it (`sdpod.kernel.overlay`). A layer entry
names a path of the merged image: a directory on its way, or a symlink that redirects
it, may come from any layer below. `LayeredRoot` resolves such a path as overlayfs
shows it: a name is looked up from the top tree down; a whiteout, or a non-directory
below a directory, ends the lookup; an opaque directory hides the layers below it.
Symlinks are followed inside the image, with every rule of `sdpod.images.rootpath`:
each component is opened with O_NOFOLLOW beneath the descriptor of the one before it,
`..` never climbs above the root, and a path a symlink's target names is never created.

A walk that creates copies each directory it passes into the top tree, with its owner,
mode and time (mode and time set once the layer is complete, `copied`), as overlayfs
copies a directory up before it changes it: the entry then lands in the top tree.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sdpod.errors import ImageError
from sdpod.images.rootpath import DIR_FLAGS, MAX_SYMLINKS, Parent, RealPath, RootDir, Walk
from sdpod.kernel import overlay


@dataclass
class _Level:
    """One directory of the merged image: the top tree's, if it has one, and those of
    the lower trees that merge into it, top first."""

    top: int | None
    lowers: list[int] = field(default_factory=list)
    owned: bool = True
    """Whether the level's descriptors are the walk's own to close: all but the root's."""

    def close(self) -> None:
        if not self.owned:
            return
        for fd in [self.top, *self.lowers]:
            if fd is not None:
                os.close(fd)


@dataclass(frozen=True)
class _Dir:
    top: int | None
    lowers: list[int]


@dataclass(frozen=True)
class _Link:
    target: str


@dataclass(frozen=True)
class _Other:
    """A name that is neither a directory nor a symlink: a file, a FIFO."""


@dataclass(frozen=True)
class _Missing:
    whiteout_on_top: bool
    """Whether the top tree hides the name: a directory made there must be opaque."""


_Found = _Dir | _Link | _Other | _Missing


class LayeredRoot:
    """The tree `top` of the layer being applied, over the trees `lowers` (top first) of
    the layers below it, which are only read."""

    def __init__(self, top: Path, lowers: Sequence[Path]) -> None:
        self.path = top
        self.own = RootDir(top)
        self.fd = self.own.fd
        self.lower_fds: list[int] = []
        self.copied: dict[RealPath, tuple[int, int]] = {}
        try:
            for lower in lowers:
                self.lower_fds.append(os.open(lower, DIR_FLAGS & ~os.O_NOFOLLOW))
            if self.lower_fds:
                self.copy_root(os.fstat(self.lower_fds[0]))
        except BaseException:
            self.close()
            raise

    def copy_root(self, below: os.stat_result) -> None:
        """Give the top tree's root the attributes of the root below it: an overlay's
        root shows those of its topmost tree's."""
        os.chown(self.fd, below.st_uid, below.st_gid)
        self.copied[()] = (stat.S_IMODE(below.st_mode), below.st_mtime_ns)

    def close(self) -> None:
        for fd in self.lower_fds:
            os.close(fd)
        self.own.close()

    @contextmanager
    def directory(
        self, parts: Sequence[str], entry: str, create: bool = False, follow: bool = True
    ) -> Iterator[Parent]:
        """Open the directory `parts` names, as `RootDir.directory` does; the descriptor
        is the top tree's directory (copied up from below when `create` is set). Without
        `follow` only the top tree is searched: for directories this layer made."""
        if not follow:
            with self.own.directory(parts, entry, create, follow) as parent:
                yield parent
            return
        walk = _MergedWalk(self.fd, self.lower_fds, entry, self.copied if create else None)
        try:
            walk.run(parts, create)
            level = walk.levels[-1]
            if level.top is None:
                raise FileNotFoundError(errno.ENOENT, "only in lower layers", "/".join(parts))
            yield Parent(level.top, tuple(walk.names))
        finally:
            walk.close()

    @contextmanager
    def locate(self, parts: RealPath, entry: str) -> Iterator[Parent]:
        """The directory, in whichever tree holds it, of the entry `parts` names (its last
        component is not followed). FileNotFoundError where the image has no such entry."""
        with _locate(self.fd, self.lower_fds, parts, entry) as parent:
            yield parent


@contextmanager
def _locate(top: int, lowers: list[int], parts: RealPath, entry: str) -> Iterator[Parent]:
    walk = _MergedWalk(top, lowers, entry)
    try:
        walk.run(parts[:-1], create=False)
        yield Parent(_holder(walk.levels[-1], parts[-1]), tuple(walk.names))
    finally:
        walk.close()


def _holder(level: _Level, name: str) -> int:
    """The directory of `level` whose entry `name` the merged image shows."""
    for fd in [level.top, *level.lowers]:
        if fd is None:
            continue
        st = _lstat(fd, name)
        if st is None:
            continue
        if overlay.is_whiteout(st):
            break
        return fd
    raise FileNotFoundError(errno.ENOENT, "not in the image", name)


class _MergedWalk(Walk):
    """One lookup in the merged image: a stack of levels from the root down. A walk
    that creates records the directories it copies up in `copied`."""

    def __init__(
        self,
        top: int,
        lowers: list[int],
        entry: str,
        copied: dict[RealPath, tuple[int, int]] | None = None,
    ) -> None:
        super().__init__(entry, follow=True)
        self.copied = copied
        # The root's descriptors stay the caller's: an image may have 500 layers, and a
        # copy of each would take another 500 of the 1024 a process has by default.
        self.levels = [_Level(top, list(lowers), owned=False)]

    def close(self) -> None:
        for level in self.levels:
            level.close()

    def depth(self) -> int:
        return len(self.levels)

    def pop(self) -> None:
        self.levels.pop().close()

    def step(self, part: str, create: bool, own: bool) -> str | None:
        level = self.levels[-1]
        found = _lookup(level, part)
        if isinstance(found, _Link):
            return found.target
        if isinstance(found, _Other):
            raise self.fail(f"{self.where(part)} is not a directory")
        if isinstance(found, _Missing):
            if not create or level.top is None:
                raise FileNotFoundError(errno.ENOENT, "not in the image", part)
            self.missing(part, own)
            found = _Dir(_make_dir(level.top, part, opaque=found.whiteout_on_top), [])
        elif found.top is None and create and level.top is not None:
            try:
                found = _Dir(self.copy_up(level.top, part, found.lowers[0]), found.lowers)
            except BaseException:
                _Level(None, found.lowers).close()
                raise
        self.levels.append(_Level(found.top, found.lowers))
        self.names.append(part)
        return None

    def copy_up(self, parent: int, name: str, source: int) -> int:
        """Make the lower directory `source` in the top tree, owned as it is; its mode and
        time wait in `copied` until the layer is complete."""
        st = os.fstat(source)
        os.mkdir(name, 0o700, dir_fd=parent)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
        if self.copied is not None:
            self.copied[(*self.names, name)] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        return os.open(name, DIR_FLAGS, dir_fd=parent)


def _make_dir(parent: int, name: str, opaque: bool) -> int:
    """A new directory in the top tree, as tar makes a missing parent (mode 0755); over a
    whiteout, opaque, so that it stays as empty as the layer left it."""
    if opaque:
        os.unlink(name, dir_fd=parent)
    os.mkdir(name, 0o755, dir_fd=parent)
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    if opaque:
        overlay.set_opaque(fd)
    return fd


def _lookup(level: _Level, name: str) -> _Found:
    """What the merged image shows as `name` in the directory `level`."""
    if level.top is not None:
        st = _lstat(level.top, name)
        if st is not None:
            if overlay.is_whiteout(st):
                return _Missing(whiteout_on_top=True)
            return _classify(level.top, name, st, level.lowers, on_top=True)
    for index, fd in enumerate(level.lowers):
        st = _lstat(fd, name)
        if st is None:
            continue
        if overlay.is_whiteout(st):
            break
        return _classify(fd, name, st, level.lowers[index + 1 :], on_top=False)
    return _Missing(whiteout_on_top=False)


def _classify(
    fd: int, name: str, st: os.stat_result, below: list[int], on_top: bool
) -> _Dir | _Link | _Other:
    if stat.S_ISLNK(st.st_mode):
        return _Link(os.readlink(name, dir_fd=fd))
    if not stat.S_ISDIR(st.st_mode):
        return _Other()
    found = os.open(name, DIR_FLAGS, dir_fd=fd)
    merged = [] if overlay.is_opaque(found) else _merge_below(below, name)
    return _Dir(found, merged) if on_top else _Dir(None, [found, *merged])


def _merge_below(lowers: list[int], name: str) -> list[int]:
    """The directories named `name` in `lowers` that merge into one found above them:
    down to a whiteout or non-directory (which ends the merge), or an opaque directory."""
    merged: list[int] = []
    for fd in lowers:
        st = _lstat(fd, name)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break
        found = os.open(name, DIR_FLAGS, dir_fd=fd)
        merged.append(found)
        if overlay.is_opaque(found):
            break
    return merged


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def read_file(layers: Sequence[Path], path: str, limit: int = 1 << 20) -> bytes | None:
    """At most `limit` bytes of the regular file `path` of the image whose layer trees
    are `layers` (top first), symlinks followed inside the image; None where the image
    has no such file, or its path leads out of the image."""
    if not layers:
        return None
    parts = _normalise(path.split("/"))
    opened: list[int] = []
    try:
        for layer in layers:
            opened.append(os.open(layer, DIR_FLAGS & ~os.O_NOFOLLOW))
        return _read(opened[0], opened[1:], parts, limit)
    except (ImageError, OSError):
        return None
    finally:
        for fd in opened:
            os.close(fd)


def _read(top: int, lowers: list[int], parts: RealPath, limit: int) -> bytes | None:
    for _ in range(MAX_SYMLINKS):
        if not parts:
            return None
        with _locate(top, lowers, parts, "/".join(parts)) as parent:
            st = os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(parts[-1], dir_fd=parent.fd)
                base = () if target.startswith("/") else parent.real
                parts = _normalise((*base, *target.split("/")))
                continue
            if not stat.S_ISREG(st.st_mode):
                return None
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(parts[-1], flags, dir_fd=parent.fd)
            with os.fdopen(fd, "rb") as file:
                return file.read(limit)
    return None


def _normalise(parts: Sequence[str]) -> RealPath:
    """A path from the root without `.` or `..`; `..` at the root stays there, as the
    kernel resolves it inside a container."""
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return tuple(out)
