"""A container's health: what the last check found, kept in `$XDG_RUNTIME_DIR/sdpod/NAME.health`.

The file is JSON of exactly this shape, which `sdpod ps` and `sdpod status` read:
`{"status": "starting"|"healthy"|"unhealthy", "failing_streak": N, "checked_at": <unix
time>, "output": "<last 4 KiB of output>"}`. It is replaced atomically, so a reader sees
the old state or the new one. The launcher removes it at every start of the container:
no file means "starting", with nothing checked yet.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path

from sdpod.runtime.bundle import write_atomically

OUTPUT_LIMIT = 4096


class Status(enum.Enum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class HealthState:
    status: Status = Status.STARTING
    failing_streak: int = 0
    checked_at: float = 0.0
    output: str = ""

    def to_json(self) -> str:
        document = {
            "status": self.status.value,
            "failing_streak": self.failing_streak,
            "checked_at": self.checked_at,
            "output": self.output,
        }
        return json.dumps(document) + "\n"


def read(path: Path) -> HealthState | None:
    """The state in `path`, or None where there is none or it cannot be understood."""
    try:
        document = json.loads(path.read_text())
        return HealthState(
            status=Status(document["status"]),
            failing_streak=int(document["failing_streak"]),
            checked_at=float(document["checked_at"]),
            output=str(document["output"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(path: Path, state: HealthState) -> None:
    write_atomically(path, state.to_json())


def tail(output: bytes) -> str:
    """The last 4 KiB of a check's output, as text."""
    return output[-OUTPUT_LIMIT:].decode(errors="replace")


@dataclass(frozen=True)
class Outcome:
    """One check: whether it passed, what it printed, and whether a failure counts."""

    passed: bool
    output: str
    checked_at: float
    in_start_period: bool = False


def advance(previous: HealthState | None, outcome: Outcome, retries: int) -> HealthState:
    """The state after `outcome`, as Docker defines health: a pass makes the container
    healthy; a failure in the start period does not count while it has never been
    healthy; `retries` counted failures in a row make it unhealthy."""
    before = previous or HealthState()
    if outcome.passed:
        return HealthState(Status.HEALTHY, 0, outcome.checked_at, outcome.output)
    if outcome.in_start_period and before.status is Status.STARTING:
        return HealthState(Status.STARTING, 0, outcome.checked_at, outcome.output)
    streak = before.failing_streak + 1
    status = Status.UNHEALTHY if streak >= retries else before.status
    return HealthState(status, streak, outcome.checked_at, outcome.output)


def failures(count: int) -> str:
    """`1 failure`, `3 failures`: a streak as a status line says it."""
    return f"{count} failure" if count == 1 else f"{count} failures"
