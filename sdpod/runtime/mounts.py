"""The file systems of a container, as a plan of small operations, then their execution.

`plan_mounts` is pure: it turns the OCI config's mounts, the devices every container
gets, and the masked and read-only paths into a list of operations whose targets are
paths inside the container. `execute` runs them against the container's root before
pivot_root, resolving every target inside that root so that a symlink in an image can
never send a mount onto the host.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sdpod.kernel import syscalls
from sdpod.kernel.syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_UNBINDABLE,
)

log = logging.getLogger(__name__)

# mount(8) option words and the flags they set (True) or clear (False).
_FLAG_OPTIONS: dict[str, tuple[int, bool]] = {
    "ro": (MS_RDONLY, True),
    "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True),
    "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True),
    "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True),
    "exec": (MS_NOEXEC, False),
    "bind": (MS_BIND, True),
    "rbind": (MS_BIND | MS_REC, True),
    "noatime": (1024, True),
    "nodiratime": (2048, True),
    "relatime": (1 << 21, True),
    "strictatime": (1 << 24, True),
}
PROPAGATIONS = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# statvfs(3) flags that the kernel locks on a mount made in a less privileged user
# namespace; a remount must repeat them or fail with EPERM (mount_namespaces(7)).
_LOCKED_STATVFS_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: 1024,
    os.ST_NODIRATIME: 2048,
    os.ST_RELATIME: 1 << 21,
}

# The devices every container gets (OCI config-linux.md, "Default Devices").
DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
DEVICE_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)


@dataclass(frozen=True)
class MountOptions:
    flags: int
    propagation: int
    data: str


@dataclass(frozen=True)
class Mount:
    """Mount `source` on `target`; a read-only bind mount takes a second, remounting step."""

    source: str
    target: str
    fstype: str | None
    options: MountOptions

    @property
    def is_bind(self) -> bool:
        return bool(self.options.flags & MS_BIND)

    def describe(self) -> str:
        words = f"{self.fstype or 'bind'} {self.source} on {self.target}"
        return f"mount {words} ({self.options.data or 'flags ' + hex(self.options.flags)})"


@dataclass(frozen=True)
class Symlink:
    destination: str
    target: str

    def describe(self) -> str:
        return f"link {self.target} -> {self.destination}"


@dataclass(frozen=True)
class Mask:
    """Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory."""

    target: str

    def describe(self) -> str:
        return f"mask {self.target}"


@dataclass(frozen=True)
class ReadOnly:
    """Make a path read-only by binding it onto itself and remounting."""

    target: str

    def describe(self) -> str:
        return f"make {self.target} read-only"


@dataclass(frozen=True)
class Device:
    """A device node: made by mknod(2) where the container shares the host's user
    namespace, else the host's node at the same path bound onto it, since a user
    namespace may not make device nodes (user_namespaces(7))."""

    target: str
    kind: str  # OCI's c, u, b or p
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0
    bind: bool = True

    def describe(self) -> str:
        how = f"bind the host's {self.target}" if self.bind else f"make {self.kind}"
        return f"device {self.target} ({how} {self.major}:{self.minor})"


Operation = Mount | Symlink | Mask | ReadOnly | Device


def parse_options(options: Iterable[str]) -> MountOptions:
    """Split OCI mount options into mount(2) flags, a propagation change and fs data."""
    flags, propagation, data = 0, 0, []
    for option in options:
        if option in _FLAG_OPTIONS:
            bit, on = _FLAG_OPTIONS[option]
            flags = flags | bit if on else flags & ~bit
        elif option in PROPAGATIONS:
            propagation = PROPAGATIONS[option]
        else:
            data.append(option)
    return MountOptions(flags, propagation, ",".join(data))


def _spec_mount(entry: dict[str, Any]) -> Mount:
    options = parse_options(entry.get("options", []))
    fstype = entry.get("type")
    if fstype == "bind" or options.flags & MS_BIND:
        fstype = None
        options = MountOptions(options.flags | MS_BIND, options.propagation, options.data)
    elif fstype == "cgroup":
        fstype = "cgroup2"
    return Mount(entry.get("source", "none"), entry["destination"], fstype, options)


def plan_mounts(spec: dict[str, Any]) -> list[Operation]:
    """Every operation that builds the container's file systems, in order."""
    plan: list[Operation] = [_spec_mount(entry) for entry in spec.get("mounts", [])]

    linux = spec.get("linux", {})
    bind = any(entry["type"] == "user" for entry in linux.get("namespaces", []))
    declared = [_spec_device(entry, bind) for entry in linux.get("devices", [])]
    paths = {device.target for device in declared}
    plan += [
        Device(f"/dev/{name}", "c", major, minor, bind=bind)
        for name, (major, minor) in DEVICES.items()
        if f"/dev/{name}" not in paths
    ]
    plan += declared
    plan += [Symlink(destination, link) for destination, link in DEVICE_LINKS]

    plan += [Mask(path) for path in linux.get("maskedPaths", [])]
    plan += [ReadOnly(path) for path in linux.get("readonlyPaths", [])]
    return plan


def _spec_device(entry: dict[str, Any], bind: bool) -> Device:
    kind = entry["type"]
    if kind not in _DEVICE_TYPES:
        valid = ", ".join(_DEVICE_TYPES)
        raise ValueError(f"device {entry['path']}: unknown type {kind!r}; valid: {valid}")
    return Device(
        entry["path"],
        kind,
        entry.get("major", 0),
        entry.get("minor", 0),
        entry.get("fileMode", 0o666) & 0o7777,
        entry.get("uid", 0),
        entry.get("gid", 0),
        bind,
    )


def resolve_in_root(root: str, path: str) -> str:
    """`path` as the container will see it, resolved inside `root` like chroot would.

    Symlinks are followed, but an absolute link target or `..` never leaves `root`.
    """
    parts = [part for part in path.split("/") if part not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, "too many symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _make_target(target: str, source: str | None) -> None:
    """Create the mount point: a file for a file bind, otherwise a directory."""
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if source is not None and os.path.exists(source) and not os.path.isdir(source):
        with open(target, "a"):
            pass
    else:
        os.mkdir(target, 0o755)


def locked_flags(path: str) -> int:
    current = os.statvfs(path).f_flag
    return sum(ms for st, ms in _LOCKED_STATVFS_FLAGS.items() if current & st)


def _remount_read_only(target: str, extra: int = 0) -> None:
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | extra | locked_flags(target)
    syscalls.mount(None, target, None, flags)


# File systems a user namespace may be refused, and the host's tree bound instead.
_HOST_FALLBACKS = {"sysfs": "/sys", "cgroup2": "/sys/fs/cgroup"}


def _run_mount(op: Mount, root: str) -> None:
    target = resolve_in_root(root, op.target)
    source = op.source if op.is_bind else None
    _make_target(target, source)

    flags = op.options.flags
    first_flags = flags & ~MS_RDONLY if op.is_bind else flags
    try:
        syscalls.mount(op.source, target, op.fstype, first_flags, op.options.data or None)
    except PermissionError:
        if op.fstype not in _HOST_FALLBACKS:
            raise
        # A user namespace may not mount sysfs where the host's is partly hidden, nor
        # cgroup2 without a cgroup namespace of its own (cgroup_namespaces(7)); a
        # recursive read-only bind of the host's tree is what rootless engines do then.
        source = _HOST_FALLBACKS[op.fstype]
        log.debug("%s refused; binding the host's %s instead", op.fstype, source)
        syscalls.mount(source, target, None, MS_BIND | MS_REC)
        kept = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC) if op.fstype == "cgroup2" else 0
        _remount_read_only(target, kept)
        return
    except OSError as error:
        if op.fstype != "cgroup2" or error.errno != errno.EBUSY:
            raise
        # Where /sys is the host's (bound above: a container on the host's network may
        # not mount sysfs), it brings the host's cgroup2 along, and the kernel refuses to
        # mount a file system on itself. The host's tree stays, read-only, as with
        # docker's --cgroupns=host.
        log.debug("cgroup2 is the host's already; making it read-only")
        _remount_read_only(target)
        return

    if op.is_bind and flags & MS_RDONLY:
        _remount_read_only(target, flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC))
    if op.options.propagation:
        syscalls.mount(None, target, None, op.options.propagation)


def _run_mask(op: Mask, root: str) -> None:
    target = resolve_in_root(root, op.target)
    if not os.path.exists(target):
        return
    if os.path.isdir(target):
        syscalls.mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0")
    else:
        _bind_alone("/dev/null", target)


def _run_read_only(op: ReadOnly, root: str) -> None:
    target = resolve_in_root(root, op.target)
    if not os.path.exists(target):
        return
    syscalls.mount(target, target, None, MS_BIND | MS_REC)
    _remount_read_only(target)


def _bind_alone(source: str, target: str, flags: int = MS_BIND) -> None:
    """Bind one of the host's files, then make the bind private: where the root's
    propagation is not recursive, the host's /dev stays shared with the host, and a bind
    of it would join its peer group, through which mounts would propagate back."""
    syscalls.mount(source, target, None, flags)
    syscalls.mount(None, target, None, MS_PRIVATE)


# How the default devices were bound before devices became their own operation.
_DEVICE_BIND = MS_BIND | MS_NOSUID | MS_NOEXEC


def _run_device(op: Device, root: str) -> None:
    target = resolve_in_root(root, op.target)
    if op.bind:
        _make_target(target, op.target)
        _bind_alone(op.target, target, _DEVICE_BIND)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target):
        os.unlink(target)
    os.mknod(target, _DEVICE_TYPES[op.kind] | op.mode, os.makedev(op.major, op.minor))
    # mknod(2) applies the umask; the mode is set again, after the owner.
    os.chown(target, op.uid, op.gid)
    os.chmod(target, op.mode)


def _run_symlink(op: Symlink, root: str) -> None:
    # The link itself is not followed: from an earlier start on a root without a /dev
    # mount, /dev/fd is there already and leads to /proc/self/fd, not yet mounted.
    parent, name = os.path.split(op.target)
    link = os.path.join(resolve_in_root(root, parent), name)
    if not os.path.lexists(link):
        os.symlink(op.destination, link)


def execute(plan: Sequence[Operation], root: str) -> None:
    """Carry out `plan` under `root`; the first failure names its operation."""
    for op in plan:
        log.debug("%s", op.describe())
        try:
            if isinstance(op, Mount):
                _run_mount(op, root)
            elif isinstance(op, Mask):
                _run_mask(op, root)
            elif isinstance(op, ReadOnly):
                _run_read_only(op, root)
            elif isinstance(op, Device):
                _run_device(op, root)
            else:
                _run_symlink(op, root)
        except OSError as error:
            raise OSError(error.errno, f"failed to {op.describe()}: {error.strerror}") from None
