"""Parsers of what a container may do: capabilities, sysctls and its user namespace.

Each takes a string and returns the model's value or raises `Invalid`; `settings`
records their verdicts.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from sdpod.config.model import IdMap
from sdpod.config.problems import Invalid
from sdpod.kernel.capability_names import NAMES

ALL_CAPABILITIES = "ALL"
CAPABILITY_RULE = 'a capability like "NET_ADMIN" or "CAP_NET_ADMIN" (capabilities(7)), or "ALL"'

# The sysctls the kernel keeps per namespace (the same list runc and podman allow): a
# container may set these for itself without touching the host's.
_NAMESPACED_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_NAMESPACED_PREFIXES = ("fs.mqueue.", "net.")
SYSCTL_RULE = (
    "a sysctl the kernel keeps per container: net.*, fs.mqueue.*, kernel.shm*, "
    "kernel.msg* or kernel.sem, like net.ipv4.ip_unprivileged_port_start"
)
_PROC_SYS = Path("/proc/sys")
_PER_INTERFACE = ("net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.neigh.", "net.ipv6.neigh.")
_SYSCTL_NAME = re.compile(r"[a-z0-9_]+(\.[a-z0-9_-]+)+")

ID_MAP_SYNTAX = 'CONTAINER_ID:HOST_ID:COUNT, like "0:100000:65536"'
_ID_MAX = 4294967294


def parse_capability(text: str) -> str:
    """`NET_ADMIN`, `cap_net_admin` or `ALL`, as the kernel's name `CAP_NET_ADMIN`."""
    name = text.upper()
    if name == ALL_CAPABILITIES:
        return name
    if not name.startswith("CAP_"):
        name = f"CAP_{name}"
    if name in NAMES:
        return name
    close = difflib.get_close_matches(name, NAMES, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    raise Invalid(f"unknown capability{hint}; valid: {CAPABILITY_RULE}")


def parse_sysctl_name(name: str) -> str:
    if not _SYSCTL_NAME.fullmatch(name):
        raise Invalid(f"not a sysctl name; valid: {SYSCTL_RULE}")
    if not (name in _NAMESPACED_SYSCTLS or name.startswith(_NAMESPACED_PREFIXES)):
        raise Invalid(f"this sysctl is the host's, not the container's; valid: {SYSCTL_RULE}")
    if not _known_here(name):
        raise Invalid(f"this kernel has no such sysctl; valid: {SYSCTL_RULE}")
    return name


def _known_here(name: str) -> bool:
    """Whether this kernel has the sysctl, as the host's own namespaces show it.

    Per-interface settings name interfaces of the container, which the host need not
    have, and a host without /proc/sys cannot tell: both are let through.
    """
    if name.startswith(_PER_INTERFACE) or not _PROC_SYS.is_dir():
        return True
    return _PROC_SYS.joinpath(*name.split(".")).exists()


def is_network_sysctl(name: str) -> bool:
    return name.startswith("net.")


def parse_sysctl_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Invalid('not a sysctl value; valid: a string like "1024" or an integer')
    text = str(value)
    if not text or "\n" in text or "\0" in text:
        raise Invalid("not a sysctl value; valid: one line of text")
    return text


def parse_id_map(text: str) -> IdMap:
    parts = text.split(":")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise Invalid(f"bad id map syntax; valid: {ID_MAP_SYNTAX}")
    container_id, host_id, count = (int(part) for part in parts)
    if count < 1:
        raise Invalid(f"the count is 0; valid: {ID_MAP_SYNTAX}")
    if max(container_id, host_id) + count - 1 > _ID_MAX:
        raise Invalid(f"the map reaches past id {_ID_MAX}, the largest Linux allows")
    return IdMap(container_id, host_id, count)


def overlap_problem(maps: tuple[IdMap, ...]) -> str | None:
    """Say which two ranges of one map overlap, inside or outside, or None."""
    for index, one in enumerate(maps):
        for other in maps[index + 1 :]:
            if _overlaps(one.container_id, other.container_id, one.count, other.count):
                return f"{_show(one)} and {_show(other)} map the same container ids"
            if _overlaps(one.host_id, other.host_id, one.count, other.count):
                return f"{_show(one)} and {_show(other)} map the same host ids"
    return None


def _overlaps(start: int, other_start: int, count: int, other_count: int) -> bool:
    return start < other_start + other_count and other_start < start + count


def _show(entry: IdMap) -> str:
    return f'"{entry.container_id}:{entry.host_id}:{entry.count}"'
