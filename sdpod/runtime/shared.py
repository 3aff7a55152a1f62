"""Namespaces a container shares with another: `network = "container:NAME"`.

Each launcher leaves two links beside the container's PID file, to the user and network
namespaces of its init (`/proc/PID/ns/user`, `/proc/PID/ns/net`). A container that
shares NAME's network names those links in its config.json (OCI `linux.namespaces`,
`path`), and its launcher joins both: a network namespace can only be entered with
CAP_SYS_ADMIN in the user namespace that owns it (setns(2)), which the joiner holds
only inside that user namespace. The links outlive the init; before trusting one, the
launcher checks that its process still runs in NAME's unit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sdpod import paths
from sdpod.errors import RuntimeSetupError
from sdpod.kernel import syscalls
from sdpod.runtime import cgroup

# OCI namespace types that a container can share, with their /proc/PID/ns names and
# setns(2) types; the user namespace comes first, the others are owned by it.
SHARED = {
    "user": ("user", syscalls.CLONE_NEWUSER),
    "network": ("net", syscalls.CLONE_NEWNET),
}
CONTAINER_PREFIX = "container:"
_LINK_TARGET = re.compile(r"/proc/([0-9]+)/ns/[a-z]+")

Joined = tuple[tuple[int, int], ...]
"""Descriptors of namespaces to enter, with their setns(2) types, in joining order."""


def namespace_paths(owner: str) -> dict[str, str]:
    """The OCI namespace paths of a container that shares `owner`'s network."""
    return {kind: str(paths.namespace_link(owner, proc)) for kind, (proc, _) in SHARED.items()}


def record(name: str, init: int) -> None:
    """Point the links of container `name` at the namespaces of its init, `init`.

    Each link is replaced in one rename, so that a joiner never finds none.
    """
    for proc, _ in SHARED.values():
        link = paths.namespace_link(name, proc)
        temporary = link.with_name(f".{link.name}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        os.symlink(f"/proc/{init}/ns/{proc}", temporary)
        os.replace(temporary, link)


def remove(name: str) -> None:
    for proc, _ in SHARED.values():
        paths.namespace_link(name, proc).unlink(missing_ok=True)


def network_owner(annotation: str) -> str | None:
    """The container whose network the `io.sdpod.network` annotation says is shared."""
    owner = annotation.removeprefix(CONTAINER_PREFIX)
    return owner if owner != annotation else None


def open_joined(spec: dict[str, Any], owner: str | None) -> Joined:
    """Open the namespaces the spec names by path, the user namespace first.

    A namespace the launcher is in already is left out: entering it again would need
    CAP_SYS_ADMIN over it (setns(2)), and changes nothing. That is the case of the
    network of a container on the host's network.
    """
    entries = [e for e in spec["linux"]["namespaces"] if e.get("path")]
    entries.sort(key=lambda e: e["type"] != "user")
    opened: list[tuple[int, int]] = []
    try:
        for entry in entries:
            fd = _open(Path(entry["path"]), entry["type"], owner)
            if is_own(fd, SHARED[entry["type"]][0]):
                os.close(fd)
                continue
            opened.append((fd, SHARED[entry["type"]][1]))
    except BaseException:
        for fd, _ in opened:
            os.close(fd)
        raise
    return tuple(opened)


def _open(link: Path, kind: str, owner: str | None) -> int:
    """Open `link`, once sure it leads to the namespace of `owner`'s running init."""
    if kind not in SHARED:
        joins = " and ".join(SHARED)
        raise RuntimeSetupError(f"failed to join a {kind} namespace: sdpod joins only {joins}")
    who = f"container {owner}" if owner else str(link)
    not_running = RuntimeSetupError(
        f"failed to join the network of {who}: it is not running",
        hint=f"`sdpod status {owner}` shows what its unit does" if owner else None,
    )
    try:
        match = _LINK_TARGET.fullmatch(os.readlink(link))
        fd = os.open(link, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        raise not_running from None
    # Checked after opening: the descriptor holds the namespace, whatever the PID does
    # next. A PID taken over by another process is not in the owner's unit.
    if match is None or (owner and not _in_unit(int(match.group(1)), owner)):
        os.close(fd)
        raise not_running
    return fd


def _in_unit(pid: int, owner: str) -> bool:
    try:
        own = cgroup.own_cgroup(Path(f"/proc/{pid}/cgroup").read_text()) or ""
    except OSError:
        return False
    return f"/sdpod-{owner}.service/" in f"{own}/"


def is_own(fd: int, proc: str) -> bool:
    """Whether the namespace `fd` is the caller's own `proc` (user, net...) namespace."""
    theirs, ours = os.fstat(fd), os.stat(f"/proc/self/ns/{proc}")
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def joins_user(joined: Joined) -> bool:
    """Whether `joined` holds a user namespace, which then replaces a new one."""
    return any(flag == syscalls.CLONE_NEWUSER for _, flag in joined)


def enter(joined: Joined) -> bool:
    """Enter the namespaces of `joined` (between fork and exec); whether one was a user
    namespace."""
    for fd, flag in joined:
        syscalls.setns(fd, flag)
    return joins_user(joined)
