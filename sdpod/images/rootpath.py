"""Resolving paths beneath a root directory so that nothing outside it is ever touched.

Layer entries name paths inside the image; earlier entries may have made any component a
symlink. Every component is opened with O_NOFOLLOW relative to the descriptor of the one
before it, so the kernel never follows a link on our behalf. A symlink met on the way is
read and resolved here, inside the root: an absolute target starts again at the root, and
a target that climbs above the root is refused, as is one that leads nowhere.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import ImageError

# The kernel's limit for symlinks followed in one lookup (MAXSYMLINKS, path_resolution(7)).
MAX_SYMLINKS = 40

DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

RealPath = tuple[str, ...]


@dataclass(frozen=True)
class Parent:
    """An open directory beneath the root, and its path from the root without symlinks."""

    fd: int
    real: RealPath


class RootDir:
    """A directory tree that is read and written only through descriptors beneath it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    @contextmanager
    def directory(
        self, parts: Sequence[str], entry: str, create: bool = False, follow: bool = True
    ) -> Iterator[Parent]:
        """Open the directory `parts` names beneath the root.

        `entry` names the layer entry in errors (quoted, with its layer). With `create`,
        missing directories that `parts` itself names are made (mode 0755, as tar does);
        with `follow` unset, a symlink or other non-directory on the way counts as missing.
        A missing directory raises FileNotFoundError.
        """
        walk = _Walk(self.fd, entry, follow)
        try:
            walk.run(parts, create)
            yield Parent(walk.fds[-1], tuple(walk.names))
        finally:
            walk.close()

    @contextmanager
    def locate(self, parts: RealPath, entry: str) -> Iterator[Parent]:
        """The directory that holds the entry `parts` names, its last component, which is
        not followed. FileNotFoundError where there is no such entry."""
        with self.directory(parts[:-1], entry) as parent:
            os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
            yield parent

    @property
    def copied(self) -> dict[RealPath, tuple[int, int]]:
        """Directories copied from lower layers, with their mode and time: none here."""
        return {}


class Walk:
    """What every lookup beneath a root shares: symlinks followed inside it, `..` kept
    from climbing out, errors naming the entry. A subclass holds the open directories
    from the root down to where the lookup stands (`depth` of them) and descends."""

    def __init__(self, entry: str, follow: bool) -> None:
        self.entry = entry
        # Unset, a symlink or a non-directory on the way is a miss rather than followed
        # or refused: for looking up again a path that this walk found before.
        self.follow = follow
        self.names: list[str] = []
        self.hops = 0
        self.link = ""  # the last symlink followed, as "/path -> target", for errors

    def depth(self) -> int:
        raise NotImplementedError

    def pop(self) -> None:
        """Close the directory the walk stands in, going back to its parent."""
        raise NotImplementedError

    def step(self, part: str, create: bool, own: bool) -> str | None:
        """Descend into `part`; return a symlink's target instead of descending into it."""
        raise NotImplementedError

    def fail(self, reason: str) -> ImageError:
        return ImageError(f"failed to unpack entry {self.entry}: {reason}")

    def run(self, parts: Sequence[str], create: bool) -> None:
        # Each pending item is a component and whether the entry's own name gave it
        # (True) or a symlink's target did (False): only the first kind may be created.
        pending = [(part, True) for part in reversed(parts)]
        while pending:
            part, own = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                self.up()
                continue
            target = self.step(part, create, own)
            if target is not None:
                self.jump(part, target, pending)

    def up(self) -> None:
        if self.depth() == 1:
            raise self.fail(f"the symlink {self.link} on its path leads out of the image")
        self.pop()
        self.names.pop()

    def jump(self, part: str, target: str, pending: list[tuple[str, bool]]) -> None:
        """Continue the walk at a symlink's target instead of at the symlink."""
        self.hops += 1
        self.link = f"{self.where(part)} -> {target}"
        if self.hops > MAX_SYMLINKS:
            raise self.fail(f"more than {MAX_SYMLINKS} symlinks on its path, at {self.where(part)}")
        if target.startswith("/"):
            while self.depth() > 1:
                self.pop()
                self.names.pop()
        pending.extend((name, False) for name in reversed(target.split("/")))

    def missing(self, part: str, own: bool) -> None:
        """Refuse to create what a symlink's target names: it is not in the image."""
        if not own:
            raise self.fail(
                f"the symlink {self.link} on its path leads to {self.where(part)}, "
                "which is not in the image"
            )

    def where(self, part: str | None = None) -> str:
        names = [*self.names, part] if part is not None else self.names
        return "/" + "/".join(names)


class _Walk(Walk):
    """One lookup in a single tree: a stack of open directories from the root down."""

    def __init__(self, root_fd: int, entry: str, follow: bool) -> None:
        super().__init__(entry, follow)
        self.fds = [os.dup(root_fd)]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)

    def depth(self) -> int:
        return len(self.fds)

    def pop(self) -> None:
        os.close(self.fds.pop())

    def step(self, part: str, create: bool, own: bool) -> str | None:
        here = self.fds[-1]
        try:
            fd = os.open(part, DIR_FLAGS, dir_fd=here)
        except FileNotFoundError:
            if not create:
                raise
            self.missing(part, own)
            os.mkdir(part, 0o755, dir_fd=here)
            fd = os.open(part, DIR_FLAGS, dir_fd=here)
        except NotADirectoryError:
            st = os.stat(part, dir_fd=here, follow_symlinks=False)
            if not self.follow:
                raise FileNotFoundError(errno.ENOENT, "not a plain directory", part) from None
            if stat.S_ISLNK(st.st_mode):
                return os.readlink(part, dir_fd=here)
            raise self.fail(f"{self.where(part)} is not a directory") from None
        self.fds.append(fd)
        self.names.append(part)
        return None
