"""What the containers are doing: the rows of `ps`, the facts of `status`, their journal.

A container is a bundle in the data directory (`containers/NAME/config.json`); its unit
`sdpod-NAME.service` may be loaded or not, since systemd unloads a transient unit once
it has stopped. Other units that happen to match `sdpod-*.service` (helpers of a
container, for instance) are not listed. The unit's state comes from the manager over
D-Bus (`sdpod.units.status`); ports and image come from the bundle's annotations, health
from the file its checks write (`sdpod.health.state`).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from sdpod import paths
from sdpod.config.model import PortMapping
from sdpod.errors import SdpodError
from sdpod.health import state as health_state
from sdpod.health.annotate import ANNOTATION_HEALTH
from sdpod.health.state import HealthState
from sdpod.runtime import bundle
from sdpod.runtime.launch import published_of
from sdpod.runtime.spec import ANNOTATION_IMAGE
from sdpod.units import status as unit_status
from sdpod.units.manager import Manager
from sdpod.units.status import UnitDetails

UNIT_PATTERN = "sdpod-*.service"
LOG_LINES = 10
JOURNAL_TIMEOUT_SECONDS = 10
# The states in which a container with a health check but no verdict yet is starting.
STARTING_STATES = ("active", "activating", "reloading")


@dataclass(frozen=True)
class ContainerRow:
    """One line of `ps`. `uptime` is in seconds, None while the unit is not up."""

    name: str
    unit: str
    loaded: bool
    active_state: str
    sub_state: str
    health: HealthState | None
    uptime: float | None
    ports: tuple[PortMapping, ...]
    image: str


@dataclass(frozen=True)
class ContainerStatus:
    """`status`: the row, the service's accounting (None: not loaded), its last log lines.

    `log_error` says why the journal could not be read, where it could not.
    """

    row: ContainerRow
    details: UnitDetails | None
    log: tuple[str, ...]
    log_error: str | None


def unit_of(name: str) -> str:
    return f"sdpod-{name}.service"


def read_health(name: str, checked: bool, state: str) -> HealthState | None:
    """The last verdict of `name`'s health checks; None where there is none to show.

    The runner replaces the file atomically, and the launcher removes it at each start
    (`sdpod.health.state`): while a container with a check (`checked`) runs, a missing
    file means "starting". A file that cannot be read or understood shows nothing.
    """
    path = paths.health_file(name)
    found = health_state.read(path)
    if found is None and checked and state in STARTING_STATES and not path.exists():
        return HealthState()
    return found


def container_names() -> list[str]:
    """The names of the containers whose bundles exist, sorted."""
    try:
        entries = list(paths.containers_dir().iterdir())
    except FileNotFoundError:
        return []
    return sorted(e.name for e in entries if (e / "config.json").is_file())


def _annotations(name: str) -> dict[str, Any]:
    spec = bundle.read_spec(paths.container_dir(name)) or {}
    annotations: dict[str, Any] = spec.get("annotations", {})
    return annotations


def _row(name: str, unit: unit_status.UnitSummary | None, now: float) -> ContainerRow:
    annotations = _annotations(name)
    if unit is None:
        state, sub_state, uptime = "inactive", "dead", None
    else:
        state, sub_state = unit.active_state, unit.sub_state
        uptime = None if unit.active_since is None else max(0.0, now - unit.active_since)
    return ContainerRow(
        name=name,
        unit=unit_of(name),
        loaded=unit is not None,
        active_state=state,
        sub_state=sub_state,
        health=read_health(name, ANNOTATION_HEALTH in annotations, state),
        uptime=uptime,
        ports=tuple(published_of({"annotations": annotations})),
        image=annotations.get(ANNOTATION_IMAGE, "?"),
    )


def ps() -> list[ContainerRow]:
    """Every container, with its unit's state, health, uptime, ports and image."""
    with Manager.connect() as manager:
        units = {unit.name: unit for unit in unit_status.list_units(manager, UNIT_PATTERN)}
    now = time.monotonic()
    return [_row(name, units.get(unit_of(name)), now) for name in container_names()]


def require_known(name: str, verb: str) -> None:
    """Fail, listing the containers there are, unless `name` is one of them."""
    known = container_names()
    if name in known:
        return
    listed = ", ".join(known) if known else "none yet (`sdpod up FILE` creates them)"
    raise SdpodError(
        f"failed to {verb} container {name!r}: no such container; known containers: {listed}",
        hint="`sdpod ps` lists the containers with their state",
    )


def status(name: str) -> ContainerStatus:
    """The unit's state and accounting, ports, image, health and last log lines of `name`."""
    require_known(name, "show")
    unit = unit_of(name)
    with Manager.connect() as manager:
        summaries = unit_status.list_units(manager, unit)
        details = unit_status.read_service(manager, unit)
    row = _row(name, summaries[0] if summaries else None, time.monotonic())
    journal = [*journalctl(name), "-n", str(LOG_LINES), "-o", "short-iso", "--no-pager"]
    log, log_error = _journal_lines(journal)
    return ContainerStatus(row, details, log, log_error)


def _journal_lines(argv: list[str]) -> tuple[tuple[str, ...], str | None]:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=JOURNAL_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return (), f"failed to run {argv[0]}: {error}"
    if result.returncode != 0:
        return (), f"{argv[0]} failed: {result.stderr.strip() or f'exit {result.returncode}'}"
    # journalctl marks an empty result with a line of its own, not a message.
    lines = [line for line in result.stdout.splitlines() if line != "-- No entries --"]
    return tuple(lines), None


def journalctl(name: str) -> list[str]:
    """The journalctl command that selects the messages of container `name`.

    A user's containers are units of their own manager, whose messages `--user` selects;
    root's are units of the system manager. `-u` finds every line of the container,
    since its output reaches journald through a relay that lives in the unit's cgroup
    (`sdpod.runtime.journal`) rather than from processes that may exit first. The
    proxies of its ports log in units of their own (`sdpod.units.sockets`), which are
    not shown here: their start and stop lines would crowd the container's.
    """
    return ["journalctl", *(["--user"] if os.geteuid() != 0 else []), "-u", unit_of(name)]


def logs_argv(name: str, follow: bool, lines: int | None) -> list[str]:
    """The journalctl command that shows the journal of container `name`."""
    require_known(name, "show the log of")
    argv = journalctl(name)
    if lines is not None:
        argv += ["-n", str(lines)]
    return [*argv, "-f"] if follow else argv
