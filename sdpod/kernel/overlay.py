"""overlayfs's format for lower layers, as the unprivileged mount of a container reads it.

sdpod mounts every container's root with `userxattr` (overlayfs.rst, "Permission model"
and "userxattr"), and overlayfs then reads, in a lower layer:

- a character device numbered 0/0 as a whiteout: the name is hidden in every layer
  below. mknod(2) of that one device needs no privilege since Linux 5.8;
- a directory whose xattr `user.overlay.opaque` is "y" as opaque: what the layers below
  hold in it is hidden. The root directory of a lower layer is never opaque: overlayfs
  does not look the root up, so it never reads that xattr there (checked on 6.18).

`userxattr` also turns off redirect_dir and metacopy, so no other user.overlay.* xattr
of a lower layer changes what a container sees. An overlay stacks at most 500 lower
layers (OVL_MAX_STACK, fs/overlayfs/params.h); the mount fails beyond that.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_LOWER_LAYERS = 500
OPAQUE_XATTR = "user.overlay.opaque"

_WHITEOUT_MODE = stat.S_IFCHR | 0o000


def make_whiteout(dir_fd: int, name: str) -> None:
    """Create the whiteout `name` in the directory `dir_fd` (which may be O_PATH)."""
    os.mknod(name, _WHITEOUT_MODE, os.makedev(0, 0), dir_fd=dir_fd)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def set_opaque(dir_fd: int) -> None:
    """Mark the directory `dir_fd` opaque; O_PATH descriptors take no xattr calls, their
    /proc alias does."""
    os.setxattr(f"/proc/self/fd/{dir_fd}", OPAQUE_XATTR, b"y")


def is_opaque(dir_fd: int) -> bool:
    """Whether the directory `dir_fd` is opaque. A directory whose xattrs this process
    may not read (mode 0700 of another user) counts as not opaque."""
    try:
        return os.getxattr(f"/proc/self/fd/{dir_fd}", OPAQUE_XATTR) == b"y"
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EACCES, errno.EPERM):
            return False
        raise
