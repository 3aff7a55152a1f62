"""Idmapped mounts: a directory's files seen through a user namespace's id mapping.

The kernel allows this only to a caller holding CAP_SYS_ADMIN over the file system's
owning user namespace (mount_setattr(2)): as root, for ext4, xfs, btrfs and tmpfs
mounts of the host; rootless, only for file systems mounted inside the caller's own
user namespace. sdpod uses it as root, to give each container's range a view of the
image that was unpacked once with the image's own ids.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from sdpod.errors import RuntimeSetupError
from sdpod.kernel import syscalls
from sdpod.kernel.userns import IdMapping, open_userns


def idmapped_trees(paths: Sequence[str], mapping: IdMapping) -> list[int]:
    """Detached, idmapped copies of the mount trees at `paths`, in order, all through
    one user namespace of `mapping`: making one costs a process."""
    userns = open_userns(mapping)
    trees: list[int] = []
    try:
        for path in paths:
            trees.append(_idmapped(path, userns))
    except BaseException:
        for tree in trees:
            os.close(tree)
        raise
    finally:
        os.close(userns)
    return trees


def _idmapped(path: str, userns: int) -> int:
    tree = syscalls.open_tree(path, syscalls.OPEN_TREE_CLONE | syscalls.OPEN_TREE_CLOEXEC)
    try:
        syscalls.idmap_mount(tree, userns)
    except OSError as error:
        os.close(tree)
        raise _explain(error, path) from None
    return tree


def _explain(error: OSError, path: str) -> RuntimeSetupError:
    reason = {
        errno.EINVAL: "its file system does not support idmapped mounts",
        errno.EPERM: "only root may idmap a mount of the host's file systems",
        errno.ENOSYS: "the kernel is older than 5.12",
    }.get(error.errno or 0, error.strerror)
    return RuntimeSetupError(
        f"failed to idmap {path} for the container: {reason}",
        hint="keep sdpod's data on ext4, xfs, btrfs or tmpfs (/var/lib/sdpod when root)",
    )
