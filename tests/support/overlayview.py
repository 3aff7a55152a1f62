"""What an overlay of layer trees shows, copied into a plain directory, without mounting.

An independent model of overlayfs.rst's rules for lower layers, written as the tests'
own reading of the documentation rather than sdpod's path walk: directory by directory,
a name is taken from the topmost tree that has it; a whiteout (character device 0/0)
hides it below; a directory merges with the directories of that name below it, down to
the first whiteout or non-directory, or through the first opaque one (xattr
`user.overlay.opaque` = "y"); a tree's root is never opaque. The namespace tests check
this model against the kernel's overlay.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

OPAQUE = "user.overlay.opaque"


def materialize(lowers: Sequence[Path], dest: Path) -> Path:
    """Copy what an overlay of `lowers` (top first) shows into the new directory `dest`,
    with modes, times, owners (as root) and hard links kept; return `dest`."""
    dest.mkdir()
    _merge([Path(lower) for lower in lowers], dest, {})
    # The root shows the attributes of the topmost tree's root.
    _copy(Path(lowers[0]), Path(lowers[0]).lstat(), dest, {})
    return dest


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _merge(sources: list[Path], target: Path, links: dict[tuple[int, int], Path]) -> None:
    names = sorted({name for source in sources for name in os.listdir(source)})
    for name in names:
        for index, source in enumerate(sources):
            path = source / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if is_whiteout(st):
                break
            if stat.S_ISDIR(st.st_mode):
                (target / name).mkdir()
                _merge(_merged_dirs(path, sources[index + 1 :], name), target / name, links)
            _copy(path, st, target / name, links)
            break


def _merged_dirs(top: Path, below: list[Path], name: str) -> list[Path]:
    dirs = [top]
    if is_opaque(top):
        return dirs
    for source in below:
        path = source / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break
        dirs.append(path)
        if is_opaque(path):
            break
    return dirs


def _copy(path: Path, st: os.stat_result, target: Path, links: dict[tuple[int, int], Path]) -> None:
    """Copy one entry (a directory's contents are merged already); link to an earlier
    copy of the same inode."""
    inode = (st.st_dev, st.st_ino)
    if not stat.S_ISDIR(st.st_mode) and inode in links:
        os.link(links[inode], target, follow_symlinks=False)
        return
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(path), target)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(target)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(path, target, follow_symlinks=False)
    links[inode] = target
    if os.geteuid() == 0:
        os.lchown(target, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        _copy_user_xattrs(path, target)
        os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_user_xattrs(path: Path, target: Path) -> None:
    """The user attributes an overlay shows: all but its own markers."""
    for name in os.listxattr(path, follow_symlinks=False):
        if name.startswith("user.") and not name.startswith("user.overlay."):
            os.setxattr(target, name, os.getxattr(path, name, follow_symlinks=False))
