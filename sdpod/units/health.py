"""Translate a container's health check into a timer and a oneshot service: pure.

`sdpod-NAME-health.timer` starts `sdpod-NAME-health.service`, which runs one check. Both
are created with the container's unit, which pulls the timer in (`Wants=`); the timer is
bound to that unit (`BindsTo=`), so it stops, and both are collected, with it. The timer
is not ordered after the unit: it must already run while the unit's start job waits for
the first passing check.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdpod.config.model import Container, HealthCheck
from sdpod.units.translate import Property

USEC_PER_SECOND = 1_000_000
# The first check comes after this, or after the interval if that is shorter, so that
# a health-gated start does not wait a whole interval.
FIRST_CHECK_SECONDS = 1.0
# A timer's default accuracy is one minute (systemd.timer(5)); a tenth of the interval,
# at most a second, keeps checks on time without waking the manager for nothing.
MAX_ACCURACY_SECONDS = 1.0
# What the checker needs beyond the command's own timeout: starting Python, entering
# the container, writing the state.
CHECKER_GRACE_SECONDS = 30.0
# syslog(3)'s LOG_NOTICE. As LogLevelMax=, it silences the manager's own "Starting" and
# "Finished" lines about every run (systemd 252 applies it to them, measured here),
# while the checker's changes of health, logged at notice or above, still appear.
LOG_NOTICE = 5


def timer_name(container: Container) -> str:
    return f"sdpod-{container.name}-health.timer"


def service_name(container: Container) -> str:
    return f"sdpod-{container.name}-health.service"


def _usec(seconds: float) -> int:
    return round(seconds * USEC_PER_SECOND)


def main_unit_properties(container: Container) -> list[Property]:
    """What the container's own unit adds to pull its health timer in."""
    if container.health is None:
        return []
    return [("Wants", ("as", [timer_name(container)]))]


def health_units(
    container: Container, check_argv: Sequence[str], slice_name: str | None = None
) -> list[tuple[str, list[Property]]]:
    """The timer and service of `container`'s health check, or none without one."""
    check = container.health
    if check is None:
        return []
    return [
        (timer_name(container), timer_properties(container, check)),
        (service_name(container), service_properties(container, check, check_argv, slice_name)),
    ]


def timer_properties(container: Container, check: HealthCheck) -> list[Property]:
    first = min(check.interval, FIRST_CHECK_SECONDS)
    accuracy = min(check.interval / 10, MAX_ACCURACY_SECONDS)
    # The first check soon after the unit starts, then one an interval after each.
    timers = [("OnActiveSec", _usec(first)), ("OnUnitActiveSec", _usec(check.interval))]
    return [
        ("Description", ("s", f"sdpod container {container.name}: health check timer")),
        ("TimersMonotonic", ("a(st)", timers)),
        ("AccuracyUSec", ("t", _usec(accuracy))),
        ("BindsTo", ("as", [container.unit_name])),
        # Bound to the container, the timer starts again with each of its restarts: five
        # quick ones would hit the default start-rate limit and end the checks for good.
        ("StartLimitIntervalUSec", ("t", 0)),
    ]


def service_properties(
    container: Container,
    check: HealthCheck,
    check_argv: Sequence[str],
    slice_name: str | None = None,
) -> list[Property]:
    properties: list[Property] = [
        ("Description", ("s", f"sdpod container {container.name}: health check")),
        ("Type", ("s", "oneshot")),
        ("ExecStart", ("a(sasb)", [(check_argv[0], list(check_argv), False)])),
        # Gives the checker NOTIFY_SOCKET; it reports to the container's unit from there.
        ("NotifyAccess", ("s", "main")),
        ("LogLevelMax", ("i", LOG_NOTICE)),
        # A check every second would hit the default start-rate limit (5 in 10 s).
        ("StartLimitIntervalUSec", ("t", 0)),
        # A failed run must not keep the unit loaded until `reset-failed`.
        ("CollectMode", ("s", "inactive-or-failed")),
        ("TimeoutStartUSec", ("t", _usec(check.timeout + CHECKER_GRACE_SECONDS))),
        ("SyslogIdentifier", ("s", f"{container.name}-health")),
    ]
    if slice_name:
        properties.append(("Slice", ("s", slice_name)))
    return properties
