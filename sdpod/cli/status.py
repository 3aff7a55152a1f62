"""`sdpod status NAME`: one container's unit, accounting, ports, image, health and log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from sdpod.cli.ps import duration, port_text, state_text

if TYPE_CHECKING:
    from sdpod.health.state import HealthState
    from sdpod.observe import ContainerStatus
    from sdpod.units.status import UnitDetails

NOT_ACCOUNTED = "not accounted"


@click.command()
@click.argument("name")
def status(name: str) -> None:
    """Show container NAME: its unit, accounting, health and last log lines."""
    from sdpod import observe

    for line in report(observe.status(name), time.time()):
        click.echo(line)


def report(found: ContainerStatus, now: float) -> list[str]:
    """The lines `status` prints; `now` is the time of asking, in seconds since the epoch."""
    row, details = found.row, found.details
    facts = [
        ("unit", row.unit),
        ("state", state_text(row) + _since(details, now)),
        *_accounting(details),
        ("health", health_text(row.health, now)),
        ("ports", ", ".join(port_text(port) for port in row.ports) or "-"),
        ("image", row.image),
    ]
    width = max(len(label) for label, _ in facts) + 1
    lines = [row.name, *(f"  {label + ':':<{width}} {value}" for label, value in facts)]
    lines += ["", f"last {len(found.log)} log lines:" if found.log else "no log lines"]
    lines += [f"  {line}" for line in found.log]
    if found.log_error:
        lines.append(f"  ({found.log_error})")
    return lines


def _since(details: UnitDetails | None, now: float) -> str:
    if details is None or details.since is None:
        return ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(details.since))
    return f" since {stamp} ({duration(max(0.0, now - details.since))} ago)"


def _accounting(details: UnitDetails | None) -> list[tuple[str, str]]:
    if details is None:
        return [("main PID", "-")]
    return [
        ("main PID", str(details.main_pid or "-")),
        ("memory", NOT_ACCOUNTED if details.memory_bytes is None else size(details.memory_bytes)),
        (
            "CPU time",
            NOT_ACCOUNTED if details.cpu_nanoseconds is None else cpu_time(details.cpu_nanoseconds),
        ),
        ("tasks", NOT_ACCOUNTED if details.tasks is None else str(details.tasks)),
        ("restarts", str(details.restarts)),
    ]


def size(count: int) -> str:
    """Bytes in binary units, as systemd shows them: 512B, 1.5K, 12.3M."""
    if count < 1024:
        return f"{count}B"
    value = float(count)
    for unit in ("K", "M", "G"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f}{unit}"
    return f"{value / 1024:.1f}T"


def cpu_time(nanoseconds: int) -> str:
    seconds = nanoseconds / 1e9
    if seconds < 60:
        return f"{seconds:.3f}s"
    return duration(seconds)


def health_text(health: HealthState | None, now: float) -> str:
    if health is None:
        return "-"
    # A verdict that sdpod made up for a container whose first check has not run yet.
    if not health.checked_at:
        return f"{health.status.value}, not checked yet"
    ago = duration(max(0.0, now - health.checked_at))
    text = f"{health.status.value}, checked {ago} ago"
    if health.failing_streak:
        text += f", {health.failing_streak} failing in a row"
    output = health.output.strip().splitlines()
    return f"{text}: {output[-1]}" if output else text
