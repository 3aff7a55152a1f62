"""The readiness and health part of `up` and `down`: a container's unit with its checks.

`up` starts a container's unit together with its health timer and service, as auxiliary
units of one StartTransientUnit call, and returns when the unit is ready: for a
health-gated container, once its first check has passed. `down` stops them and removes
the files the launcher and the checker wrote.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from sdpod import paths
from sdpod.config.model import Container
from sdpod.errors import SystemdError
from sdpod.health import state
from sdpod.units import health
from sdpod.units.manager import Manager
from sdpod.units.translate import Property


def checker_argv(bundle: Path) -> list[str]:
    """The health service's command: this Python, running only the checker."""
    return [sys.executable, "-m", "sdpod.health", "check", str(bundle)]


def start(
    manager: Manager,
    container: Container,
    properties: Sequence[Property],
    bundle: Path,
    others: Sequence[tuple[str, Sequence[Property]]] = (),
) -> None:
    """Start `container`'s unit with its health units and the `others` it pulls in (its
    ports' sockets); return once it is ready.

    A start that fails leaves no health unit behind, and its error says what the last
    health check found, which the unit's own log does not show.
    """
    slice_name = next((value for key, (_, value) in properties if key == "Slice"), None)
    aux: list[tuple[str, Sequence[Property]]] = [
        *health.health_units(container, checker_argv(bundle), slice_name),
        *others,
    ]
    own = [*properties, *health.main_unit_properties(container)]
    try:
        manager.start_transient(container.unit_name, own, aux)
    except SystemdError as error:
        stop_checks(manager, container)
        raise _with_last_check(error, container) from None


def stop_checks(manager: Manager, container: Container) -> None:
    """Stop the health timer and any check that runs; both are then collected.

    Stopping the container's unit stops the timer already (BindsTo=); this also covers
    a unit that never started, and a check still running.
    """
    manager.stop(health.timer_name(container))
    manager.stop(health.service_name(container))


def remove_files(name: str) -> None:
    paths.pid_file(name).unlink(missing_ok=True)
    paths.health_file(name).unlink(missing_ok=True)


def _with_last_check(error: SystemdError, container: Container) -> SystemdError:
    last = state.read(paths.health_file(container.name))
    if container.health is None or last is None:
        return error
    output = last.output.strip() or "no output"
    text = (
        f"{error}\nits last health check ({last.status.value}, "
        f"{state.failures(last.failing_streak)} in a row) said:\n"
        + "\n".join(f"  {line}" for line in output.splitlines()[-5:])
    )
    return SystemdError(text, error.hint)
