"""Translate a container of the model into the properties of its transient service.

A pure function: model in, D-Bus properties out, each value with its D-Bus signature as
`StartTransientUnit` takes them (org.freedesktop.systemd1(5)). The table below is the
whole mapping of settings to properties; everything else is fixed policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdpod.config.model import Container, RestartPolicy

Property = tuple[str, tuple[str, Any]]

USEC_PER_SECOND = 1_000_000

# How long a container gets to stop on its stop signal before systemd kills it, the
# default of docker and podman.
STOP_TIMEOUT_SECONDS = 10
# A crashing container is restarted after a pause, so that a restart loop costs little
# and systemd's start-rate limit (5 starts in 10 s) is not reached by a brief outage.
RESTART_DELAY_SECONDS = 1

RESTART_VALUES = {
    RestartPolicy.NO: "no",
    RestartPolicy.ON_FAILURE: "on-failure",
    RestartPolicy.ALWAYS: "always",
}


def unit_name(container: Container) -> str:
    return container.unit_name


def service_properties(container: Container, exec_start: Sequence[str]) -> list[Property]:
    """The properties of the service that runs `container` through `exec_start`."""
    return [
        ("Description", ("s", f"sdpod container {container.name} ({container.image})")),
        ("ExecStart", ("a(sasb)", [(exec_start[0], list(exec_start), False)])),
        # The launcher hands over to the container's init with MAINPID= and READY=1.
        ("Type", ("s", "notify")),
        ("NotifyAccess", ("s", "main")),
        # The container manages its own sub-tree: the launcher makes its leaves there.
        ("Delegate", ("b", True)),
        ("Restart", ("s", RESTART_VALUES[container.restart])),
        ("RestartUSec", ("t", RESTART_DELAY_SECONDS * USEC_PER_SECOND)),
        # The stop signal goes to the container's init alone; whatever remains after it
        # exits (the network helper) is killed then.
        ("KillMode", ("s", "mixed")),
        ("TimeoutStopUSec", ("t", STOP_TIMEOUT_SECONDS * USEC_PER_SECOND)),
        ("SyslogIdentifier", ("s", container.name)),
    ]
