"""Linux capabilities by name (capabilities(7)): the bounding set, then the process's own
sets and its ambient set."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sdpod.kernel import syscalls
from sdpod.kernel.capability_names import DEFAULT, NAMES

__all__ = [
    "DEFAULT",
    "NAMES",
    "keep_across_user_change",
    "last_capability",
    "limit_bounding_set",
    "mask_of",
    "set_ambient",
    "set_process_sets",
]


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return len(NAMES) - 1


def mask_of(names: Iterable[str]) -> int:
    """The bit mask of the capabilities `names`; names this kernel does not know count
    for nothing, as for the other runtimes."""
    last = last_capability()
    mask = 0
    for name in names:
        if name in NAMES and NAMES.index(name) <= last:
            mask |= 1 << NAMES.index(name)
    return mask


def limit_bounding_set(keep: tuple[str, ...] | list[str]) -> None:
    """Drop every capability but `keep` from the bounding set, so no exec can regain it.

    A payload running as root gets exactly this set; one running as another user gets
    none of it (capabilities(7), "Effect of user ID changes").
    """
    kept = {NAMES.index(name) for name in keep if name in NAMES}
    for number in range(last_capability() + 1):
        if number not in kept:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)


def keep_across_user_change() -> None:
    """Keep the permitted set through the coming setuid(2) away from root (PR_SET_KEEPCAPS),
    so that `set_process_sets` can still choose from it; exec clears the flag."""
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)


def set_process_sets(
    effective: Iterable[str], permitted: Iterable[str], inheritable: Iterable[str]
) -> None:
    """Give the calling process exactly these sets; each must lie within the permitted set
    it has, and the effective within the new permitted (capset(2))."""
    syscalls.capset(mask_of(effective), mask_of(permitted), mask_of(inheritable))


def set_ambient(names: Iterable[str]) -> None:
    """Make `names` the ambient set, which survives exec of a file without capabilities
    for a process that is not root.

    The kernel raises only a capability that is both permitted and inheritable (prctl(2));
    one that is not is left out, as runc and crun leave it: their default configuration
    asks for ambient capabilities with no inheritable set.
    """
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    last = last_capability()
    for name in names:
        if name in NAMES and NAMES.index(name) <= last:
            number = NAMES.index(name)
            try:
                syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, number)
            except PermissionError:
                continue
