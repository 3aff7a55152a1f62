"""What the manager says about units, read over D-Bus into typed records.

Every fact is a property of the unit's object (org.freedesktop.systemd1(5)); nothing is
parsed from `systemctl` output. A counter that systemd does not account, such as
MemoryCurrent where the unit's cgroup has no memory controller, arrives as the largest
uint64; it becomes None here, and a timestamp of 0 (the state was never entered) too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jeepney import DBusErrorResponse

from sdpod.errors import SystemdError
from sdpod.units.manager import SERVICE_INTERFACE, UNIT_INTERFACE, Manager

SCOPE_INTERFACE = "org.freedesktop.systemd1.Scope"
UNSET = 2**64 - 1
USEC_PER_SECOND = 1_000_000
# The unit vanished between two calls: a transient unit that stopped is unloaded.
GONE = ("org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.systemd1.NoSuchUnit")

# Which timestamp says since when a unit is in its active state: the one of entering it,
# as `systemctl status` shows it ("active (running) since ...").
SINCE_PROPERTY = {
    "active": "ActiveEnterTimestamp",
    "reloading": "ActiveEnterTimestamp",
    "activating": "InactiveExitTimestamp",
    "deactivating": "ActiveExitTimestamp",
    "inactive": "InactiveEnterTimestamp",
    "failed": "InactiveEnterTimestamp",
}
UP_STATES = ("active", "reloading")


@dataclass(frozen=True)
class UnitSummary:
    """A loaded unit as `ps` shows it.

    `active_since` is when it last became active, in seconds of CLOCK_MONOTONIC (as
    `time.monotonic()` counts them), or None while it is not up.
    """

    name: str
    active_state: str
    sub_state: str
    active_since: float | None


@dataclass(frozen=True)
class UnitDetails:
    """A loaded service as `status` shows it; None where systemd does not account it."""

    name: str
    active_state: str
    sub_state: str
    since: float | None  # seconds since the epoch, of entering `active_state`
    main_pid: int | None
    memory_bytes: int | None
    cpu_nanoseconds: int | None
    tasks: int | None
    restarts: int


def accounted(value: int) -> int | None:
    """A counter's value, or None where systemd reports it as not set."""
    return None if value == UNSET else value


def seconds(usec: int) -> float | None:
    """A timestamp in seconds, or None for systemd's 0, which means 'never'."""
    return usec / USEC_PER_SECOND if usec else None


def list_units(manager: Manager, pattern: str) -> list[UnitSummary]:
    """Every loaded unit matching `pattern`, with the time it became active."""
    summaries = []
    for unit in manager.list_units(pattern):
        active_since = None
        if unit.active_state in UP_STATES:
            usec = _get(manager, unit.name, UNIT_INTERFACE, "ActiveEnterTimestampMonotonic")
            if usec is None:
                continue
            active_since = seconds(usec)
        summaries.append(UnitSummary(unit.name, unit.active_state, unit.sub_state, active_since))
    return summaries


def read_service(manager: Manager, name: str) -> UnitDetails | None:
    """The state and accounting of the service `name`, or None where it is not loaded."""
    unit = _properties(manager, name, UNIT_INTERFACE, ("ActiveState", "SubState"))
    if unit is None:
        return None
    active_state = unit["ActiveState"]
    wanted = ("MainPID", "MemoryCurrent", "CPUUsageNSec", "TasksCurrent", "NRestarts")
    service = _properties(manager, name, SERVICE_INTERFACE, wanted)
    if service is None:
        return None
    since = _get(manager, name, UNIT_INTERFACE, SINCE_PROPERTY.get(active_state, ""))
    return UnitDetails(
        name=name,
        active_state=active_state,
        sub_state=unit["SubState"],
        since=seconds(since or 0),
        main_pid=service["MainPID"] or None,
        memory_bytes=accounted(service["MemoryCurrent"]),
        cpu_nanoseconds=accounted(service["CPUUsageNSec"]),
        tasks=accounted(service["TasksCurrent"]),
        restarts=service["NRestarts"],
    )


def manager_cgroup(manager: Manager) -> str | None:
    """The manager's own cgroup, as a path in the cgroup2 tree: the parent of its init.scope.

    Each manager keeps itself in `init.scope` (systemd.special(7)); for a user's manager
    that scope sits in `user@UID.service`, the cgroup that logind delegates to the user.
    """
    group = _get(manager, "init.scope", SCOPE_INTERFACE, "ControlGroup")
    if not group:
        return None
    parent = str(group).rsplit("/", 1)[0]
    return parent or "/"


def _properties(
    manager: Manager, name: str, interface: str, props: Iterable[str]
) -> dict[str, Any] | None:
    values = {}
    for prop in props:
        value = _get(manager, name, interface, prop)
        if value is None:
            return None
        values[prop] = value
    return values


def _get(manager: Manager, name: str, interface: str, prop: str) -> Any:
    """One property, or None where the unit is not loaded (any more)."""
    if not prop:
        return None
    try:
        return manager.unit_property(name, interface, prop)
    except DBusErrorResponse as error:
        if error.name in GONE:
            return None
        raise SystemdError(f"failed to read {prop} of {name}: {error}") from None
