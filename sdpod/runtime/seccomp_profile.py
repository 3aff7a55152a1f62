"""The seccomp profile of sdpod's containers, as OCI's `linux.seccomp`: a pure function.

Everything is allowed but the system calls that reach state the kernel does not keep
per container (keyrings, modules, clocks, swap, accounting, BPF and perf), that
container engines refuse by default for the same reason, or that only make sense with a
capability the container lacks. A group is let through where the container's bounding
set holds the capability that would make it meaningful, as docker's profile does for
`cap_add`. Refused calls fail with EPERM, as a missing capability would.

Known gap: clone(2) and clone3(2) with namespace flags are not filtered, since rules
with argument conditions are not built yet; the kernel still confines what a nested
namespace may do, and unshare(2) and setns(2) are refused.
"""

from __future__ import annotations

import errno
import platform
from collections.abc import Sequence
from typing import Any

# (capability that lets the group through, or None for never; the system calls).
_GROUPS: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (None, ("add_key", "keyctl", "request_key")),  # keyrings are the host's
    (None, ("bpf", "perf_event_open", "lookup_dcookie", "userfaultfd")),
    (None, ("nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old")),
    (None, ("create_module", "get_kernel_syms", "query_module")),
    ("CAP_SYS_MODULE", ("init_module", "finit_module", "delete_module")),
    ("CAP_SYS_BOOT", ("reboot", "kexec_load", "kexec_file_load")),
    ("CAP_SYS_TIME", ("settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime")),
    ("CAP_SYS_PACCT", ("acct",)),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at", "name_to_handle_at")),
    ("CAP_SYS_NICE", ("mbind", "set_mempolicy", "get_mempolicy", "move_pages")),
    (
        "CAP_SYS_ADMIN",
        (
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "swapon",
            "swapoff",
            "quotactl",
            "fanotify_init",
            "fsopen",
            "fsmount",
            "fspick",
            "open_tree",
            "move_mount",
            "mount_setattr",
        ),
    ),
)

# The architectures a 64-bit kernel also runs: without them, a 32-bit call would get
# past the rules (or, with libseccomp's default, kill the process).
_ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def default_profile(bounding: Sequence[str], machine: str | None = None) -> dict[str, Any]:
    """The profile for a container whose bounding set is `bounding`."""
    granted = set(bounding)
    refused = [
        name
        for capability, names in _GROUPS
        if capability is None or capability not in granted
        for name in names
    ]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": _ARCHITECTURES.get(machine or platform.machine(), []),
        "syscalls": [{"names": refused, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}],
    }
