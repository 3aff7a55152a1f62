"""Linux capabilities by name (capabilities(7)), and dropping them from the bounding set."""

from __future__ import annotations

from pathlib import Path

from sdpod.kernel import syscalls
from sdpod.kernel.capability_names import DEFAULT, NAMES

__all__ = ["DEFAULT", "NAMES", "last_capability", "limit_bounding_set"]


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return len(NAMES) - 1


def limit_bounding_set(keep: tuple[str, ...] | list[str]) -> None:
    """Drop every capability but `keep` from the bounding set, so no exec can regain it.

    A payload running as root gets exactly this set; one running as another user gets
    none of it (capabilities(7), "Effect of user ID changes").
    """
    kept = {NAMES.index(name) for name in keep if name in NAMES}
    for number in range(last_capability() + 1):
        if number not in kept:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)
