"""The container's leaf in the unit's delegated cgroup (cgroups(7), "delegation").

systemd gives the unit a cgroup the user may manage (`Delegate=yes`). Processes may not
live in inner nodes of such a tree once controllers are enabled, so the launcher and
its helpers move to a `supervisor` leaf and the container gets a `container` leaf, which
also becomes the root of its cgroup namespace.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import RuntimeSetupError

log = logging.getLogger(__name__)


def cgroup2_mount(mountinfo: str) -> Path | None:
    """Where the unified (v2) hierarchy is mounted, from /proc/self/mountinfo's text."""
    for line in mountinfo.splitlines():
        _, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            return Path(line.split(" ")[4])
    return None


def own_cgroup(proc_cgroup: str) -> str | None:
    """The calling process's path in the v2 hierarchy, from /proc/self/cgroup's text."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


@dataclass(frozen=True)
class UnitCgroup:
    path: Path

    @property
    def supervisor(self) -> Path:
        return self.path / "supervisor"

    @property
    def container(self) -> Path:
        return self.path / "container"


def find_unit_cgroup() -> UnitCgroup | None:
    """The delegated cgroup this process runs in, or None where it cannot be managed."""
    mount = cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    relative = own_cgroup(Path("/proc/self/cgroup").read_text())
    if mount is None or relative is None:
        log.warning("no cgroup v2 hierarchy found: the container shares the unit's cgroup")
        return None
    path = mount / relative.lstrip("/")
    # A service started by `up`, or the scope of `sdpod run`.
    if not path.name.endswith((".service", ".scope")):
        # Run by hand rather than as a unit: the cgroup is nobody's to split.
        log.debug("not in a service's cgroup (%s): leaving cgroups alone", path)
        return None
    if not os.access(path / "cgroup.procs", os.W_OK):
        log.warning("cgroup %s is not delegated to this user: the container shares it", path)
        return None
    return UnitCgroup(path)


def move(pid: int, leaf: Path) -> None:
    leaf.mkdir(exist_ok=True)
    (leaf / "cgroup.procs").write_text(str(pid))


@dataclass(frozen=True)
class Placement:
    """Where a runtime container lives: its cgroup, and whether it was made for it."""

    path: Path
    created: bool


def place(cgroups_path: str) -> Placement | None:
    """The cgroup for OCI's `linux.cgroupsPath` (made if missing), as runc and crun read
    it without systemd: a path from the root of the v2 hierarchy.

    A user who may not write there gets the same path below their own cgroup, where that
    is delegated to them; else None: the container shares its caller's cgroup, as with
    the peers.
    """
    relative = cgroups_path.strip("/")
    if ".." in relative.split("/"):
        raise RuntimeSetupError(
            f"invalid linux.cgroupsPath {cgroups_path!r}: it may not climb with '..'"
        )
    mount = cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    if mount is None:
        log.debug("no cgroup v2 hierarchy found: the container shares its caller's cgroup")
        return None
    candidates = [mount / relative]
    own = own_cgroup(Path("/proc/self/cgroup").read_text())
    if os.geteuid() != 0 and own is not None:
        candidates.append(mount / own.lstrip("/") / relative)
    for path in candidates:
        try:
            path.mkdir(parents=True)
            return Placement(path, created=True)
        except FileExistsError:
            return Placement(path, created=False)
        except PermissionError:
            log.debug("may not make cgroup %s", path)
    log.debug("no cgroup of its own for %s: the container shares its caller's", relative)
    return None


def remove(path: Path, timeout: float = 10.0) -> None:
    """Remove a container's cgroup once the processes in it have gone, killing those
    that stay (cgroup.kill, Linux 5.14)."""
    import time

    deadline = time.monotonic() + timeout
    events = path / "cgroup.events"
    killed = False
    while events.exists() and "populated 1" in events.read_text():
        if not killed:
            (path / "cgroup.kill").write_text("1")
            killed = True
        if time.monotonic() > deadline:
            raise OSError(f"failed to remove cgroup {path}: its processes did not go away")
        time.sleep(0.01)
    for child in sorted(path.glob("**/"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir()
