"""A container's namespaces as OCI's `linux.namespaces` lists them: new ones, and existing
ones joined by `path` (config-linux.md, "Namespaces").

A namespace that is joined must be entered before any is created: a new user namespace
would leave the caller without the capabilities that joining the others needs, since
setns(2) asks for CAP_SYS_ADMIN over the user namespace owning the namespace joined.
"""

from __future__ import annotations

import os
from typing import Any

from sdpod.errors import RuntimeSetupError
from sdpod.kernel import syscalls
from sdpod.runtime import shared

# OCI type: its name under /proc/PID/ns, and its clone(2) flag.
TYPES = {
    "user": ("user", syscalls.CLONE_NEWUSER),
    "mount": ("mnt", syscalls.CLONE_NEWNS),
    "pid": ("pid", syscalls.CLONE_NEWPID),
    "network": ("net", syscalls.CLONE_NEWNET),
    "uts": ("uts", syscalls.CLONE_NEWUTS),
    "ipc": ("ipc", syscalls.CLONE_NEWIPC),
    "cgroup": ("cgroup", syscalls.CLONE_NEWCGROUP),
    "time": ("time", syscalls.CLONE_NEWTIME),
}


def _entries(spec: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = spec.get("linux", {}).get("namespaces", [])
    for entry in entries:
        if entry.get("type") not in TYPES:
            valid = ", ".join(TYPES)
            raise RuntimeSetupError(
                f"failed to create the container's namespaces: unknown type "
                f"{entry.get('type')!r}; valid: {valid}"
            )
    return entries


def creates(spec: dict[str, Any], kind: str) -> bool:
    """Whether the spec asks for a new namespace of `kind`."""
    return any(e["type"] == kind and not e.get("path") for e in _entries(spec))


def has(spec: dict[str, Any], kind: str) -> bool:
    """Whether the container has a namespace of `kind` of its own, new or joined."""
    return any(e["type"] == kind for e in _entries(spec))


def new_flags(spec: dict[str, Any]) -> int:
    """The clone(2) flags of every new namespace but the user namespace, which is
    created apart, before the others, so that they belong to it."""
    flags = 0
    for entry in _entries(spec):
        if not entry.get("path") and entry["type"] != "user":
            flags |= TYPES[entry["type"]][1]
    return flags


def open_paths(spec: dict[str, Any]) -> shared.Joined:
    """Open every namespace the spec joins by path, the user namespace first.

    One the caller is in already is left out: entering it again could need privileges
    over it (setns(2)), and would change nothing.
    """
    entries = [e for e in _entries(spec) if e.get("path")]
    entries.sort(key=lambda e: e["type"] != "user")
    opened: list[tuple[int, int]] = []
    try:
        for entry in entries:
            proc, flag = TYPES[entry["type"]]
            try:
                fd = os.open(entry["path"], os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                raise RuntimeSetupError(
                    f"failed to join the {entry['type']} namespace {entry['path']}: "
                    f"{error.strerror}"
                ) from None
            if shared.is_own(fd, proc):
                os.close(fd)
                continue
            opened.append((fd, flag))
    except BaseException:
        for fd, _ in opened:
            os.close(fd)
        raise
    return tuple(opened)
