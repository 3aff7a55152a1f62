"""The proportional set size of the processes a container manager keeps per container.

Read as root on the host, from the sandbox's cgroup tree (its cgroup.procs files list
host PIDs) and /proc/PID/smaps_rollup. A process counts when it belongs to the benchmark
user (its own uid or, in a user namespace, one of its subordinate ids), is not the
user's own manager, PAM helper or session bus, and is not a payload (`httpd`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PAYLOAD = {"httpd", "true"}
BASELINE_CGROUPS = ("/init.scope", "/dbus.service")


@dataclass(frozen=True)
class Process:
    pid: int
    cgroup: str
    comm: str
    uid: int


def processes(root: Path) -> Iterator[Process]:
    for procs in root.rglob("cgroup.procs"):
        cgroup = str(procs.parent.relative_to(root))
        with contextlib.suppress(FileNotFoundError):
            for pid in procs.read_text().split():
                found = describe(int(pid), "/" + cgroup)
                if found is not None:
                    yield found


def describe(pid: int, cgroup: str) -> Process | None:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    return Process(pid, cgroup, comm, uid)


def pss_kib(pid: int) -> int:
    """Pss of one process in KiB; 0 if it exited meanwhile."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def is_sdpod(process: Process) -> bool:
    """In the cgroup of a `sdpod-*.service` unit."""
    return "/sdpod-" in process.cgroup and ".service" in process.cgroup


def is_other(process: Process) -> bool:
    """Anything of the user's that is not sdpod's: podman's conmon, helpers, pause."""
    return not is_sdpod(process)


def manager_pss(
    root: Path, owned: Callable[[int], bool], keep: Callable[[Process], bool]
) -> tuple[float, list[str]]:
    """Total PSS in MiB of the kept processes, and their names (for the report)."""
    total, names = 0, []
    for process in processes(root):
        if not owned(process.uid) or process.comm in PAYLOAD:
            continue
        if process.cgroup.endswith(BASELINE_CGROUPS) or not keep(process):
            continue
        total += pss_kib(process.pid)
        names.append(process.comm)
    return total / 1024, sorted(set(names))
