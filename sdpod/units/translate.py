"""Translate a container of the model into the properties of its transient service.

A pure function: model in, D-Bus properties out, each value with its D-Bus signature as
`StartTransientUnit` takes them (org.freedesktop.systemd1(5), systemd 252). The tables
below map settings to properties one to one; the functions under them add what is
derived from several settings, and the fixed policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from sdpod.config.model import Container, Project, ReadyWhen

Property = tuple[str, tuple[str, Any]]
Row = tuple[str, str, str, Callable[[Any], Any]]
"""A model field, the property it sets, the property's D-Bus signature, the conversion."""

USEC_PER_SECOND = 1_000_000

# A container that keeps failing is started at most 10 times in 2 minutes, then left
# failed (`systemctl --user status` says start-limit-hit) instead of being restarted for
# ever: with the default restart_delay of 1 s that is about 10 s of tries. Restarts at a
# slower pace, fewer than 10 in any 2 minutes (a restart_delay of 12 s or more, or the
# health checker's restarts), never reach the limit. `sdpod up` resets the count.
START_LIMIT_INTERVAL_SECONDS = 120
START_LIMIT_BURST = 10
# systemd's own default start timeout (DefaultTimeoutStartSec=), the least a container
# gets; a health-gated start gets as long as its checks may take. It need not cover
# pulling the image: `sdpod up` pulls and unpacks it before it starts the unit.
START_TIMEOUT_SECONDS = 90

SLICE_PREFIX = "sdpod"


def _usec(seconds: float) -> int:
    return round(seconds * USEC_PER_SECOND)


CONTAINER_PROPERTIES: Final[tuple[Row, ...]] = (
    ("restart", "Restart", "s", lambda policy: policy.value),
    ("restart_delay", "RestartUSec", "t", _usec),
    ("stop_signal", "KillSignal", "i", int),
    ("stop_timeout", "TimeoutStopUSec", "t", _usec),
)

# What of CONTAINER_PROPERTIES a scope has: how its processes are stopped.
SCOPE_PROPERTIES: Final[tuple[Row, ...]] = tuple(
    row for row in CONTAINER_PROPERTIES if row[1] in ("KillSignal", "TimeoutStopUSec")
)

# Only the limits that are set become properties: the others keep systemd's defaults.
RESOURCE_PROPERTIES: Final[tuple[Row, ...]] = (
    ("memory_max", "MemoryMax", "t", int),
    ("memory_high", "MemoryHigh", "t", int),
    # CPUQuota= is CPU time per second of wall-clock time: 1.5 CPUs are 1.5 s per second.
    ("cpus", "CPUQuotaPerSecUSec", "t", _usec),
    ("cpu_weight", "CPUWeight", "t", int),
    ("pids_max", "TasksMax", "t", int),
    ("io_weight", "IOWeight", "t", int),
)


def unit_name(container: Container) -> str:
    return container.unit_name


def slice_name(project: Project) -> str:
    """`sdpod-NAME.slice`, a child of `sdpod.slice`; `sdpod.slice` for a nameless project.

    systemd.slice(5) makes each dash a level of the slice tree, so a dash inside the
    project's name is escaped as systemd-escape(1) does: `my-shop` gives
    `sdpod-my\\x2dshop.slice`, not a grandchild of `sdpod-my.slice`.
    """
    if not project.name:
        return f"{SLICE_PREFIX}.slice"
    escaped = project.name.replace("-", "\\x2d")
    return f"{SLICE_PREFIX}-{escaped}.slice"


def service_properties(
    container: Container, project: Project, exec_start: Sequence[str]
) -> list[Property]:
    """The properties of the service that runs `container` of `project` via `exec_start`."""
    return [
        *_identity(container),
        *_process(container, project, exec_start),
        ("Slice", ("s", slice_name(project))),
        *_table(CONTAINER_PROPERTIES, container),
        *_start_limit(),
        ("TimeoutStartUSec", ("t", _usec(start_timeout(container, project)))),
        # The stop signal goes to the container's init alone; whatever remains after it
        # exits (the network helper) is killed then.
        ("KillMode", ("s", "mixed")),
        *_stopped_cleanly(container),
        *_table(RESOURCE_PROPERTIES, container.resources),
        *_dependencies(container, project),
        ("SyslogIdentifier", ("s", container.name)),
    ]


def pod_unit_name(project: Project) -> str:
    return f"sdpod-{project.pod_name}.service"


def pod_properties(project: Project, exec_start: Sequence[str]) -> list[Property]:
    """The properties of the service that holds the network of `project`'s pod members
    (`sdpod.runtime.pod`), started by `exec_start`.

    It restarts whenever it ends but by a stop (its pause process or network helper
    killed), and its members, which require it, are restarted with it.
    """
    members = ", ".join(container.name for container in project.pod_members)
    return [
        ("Description", ("s", f"sdpod network shared by {members}")),
        *_launched_by(exec_start, "main"),
        ("Slice", ("s", slice_name(project))),
        ("Restart", ("s", "always")),
        *_start_limit(),
        ("TimeoutStartUSec", ("t", START_TIMEOUT_SECONDS * USEC_PER_SECOND)),
        ("KillMode", ("s", "mixed")),
        ("SyslogIdentifier", ("s", project.pod_name)),
    ]


def scope_name(container: Container) -> str:
    """`sdpod-NAME.scope`: the unit of a container that `sdpod run` runs in the foreground."""
    return f"sdpod-{container.name}.scope"


def scope_properties(container: Container, project: Project, pids: Sequence[int]) -> list[Property]:
    """The properties of the scope that takes the processes `pids` of `container`, run
    in the foreground (`sdpod run`): the manager accounts for them and can stop them,
    while the caller, outside the scope, stays attached to them.

    A scope has no command, restart or start timeout; what stops it is as for a service.
    """
    return [
        *_identity(container),
        ("PIDs", ("au", list(pids))),
        ("Slice", ("s", slice_name(project))),
        # The runtime makes the container's leaves in the scope, as in a service.
        ("Delegate", ("b", True)),
        *_table(SCOPE_PROPERTIES, container),
        # A scope whose processes were killed at its stop timeout ends failed: it goes
        # all the same, and its name is free for the next run.
        ("CollectMode", ("s", "inactive-or-failed")),
        *_table(RESOURCE_PROPERTIES, container.resources),
    ]


def _identity(container: Container) -> list[Property]:
    description = container.unit_description
    identity: list[Property] = [("Description", ("s", description))]
    if container.documentation:
        identity.append(("Documentation", ("as", list(container.documentation))))
    return identity


def _process(container: Container, project: Project, exec_start: Sequence[str]) -> list[Property]:
    # When the container itself reports readiness, or a health checker reports its
    # status, the message comes from a process other than the unit's main process:
    # systemd accepts it only with NotifyAccess=all (systemd.service(5)).
    others_notify = (
        project.ready_of(container) is not ReadyWhen.STARTED or container.health is not None
    )
    return [
        *_launched_by(exec_start, "all" if others_notify else "main"),
        # Containers get SIGPIPE's default action, as under docker and podman, rather than
        # systemd's default of ignoring it: then a container whose log relay has died
        # stops at its next line of output and is restarted, instead of writing on
        # into nothing.
        ("IgnoreSIGPIPE", ("b", False)),
    ]


def _launched_by(exec_start: Sequence[str], notify_access: str) -> list[Property]:
    return [
        ("ExecStart", ("a(sasb)", [(exec_start[0], list(exec_start), False)])),
        # The launcher hands over to the container's init with MAINPID= and READY=1.
        ("Type", ("s", "notify")),
        ("NotifyAccess", ("s", notify_access)),
        # The container manages its own sub-tree: the launcher makes its leaves there.
        ("Delegate", ("b", True)),
    ]


def _start_limit() -> list[Property]:
    return [
        ("StartLimitIntervalUSec", ("t", START_LIMIT_INTERVAL_SECONDS * USEC_PER_SECOND)),
        ("StartLimitBurst", ("u", START_LIMIT_BURST)),
    ]


def _stopped_cleanly(container: Container) -> list[Property]:
    # tini exits with 128 + the signal that ended the command, as a shell does: after a
    # stop that is the stop signal, and a stopped container is not a failed one.
    signal = container.stop_signal
    return [("SuccessExitStatus", ("(aiai)", ([128 + signal], [signal])))]


def start_timeout(container: Container, project: Project) -> float:
    """Seconds the start may take: for a health-gated start, time for every check it may
    need (the start period, then a first check and `retries` more, each waiting an
    interval and running up to its timeout)."""
    health = container.health
    if health is None or project.ready_of(container) is not ReadyWhen.HEALTHY:
        return START_TIMEOUT_SECONDS
    checks = health.start_period + (health.retries + 1) * (health.interval + health.timeout)
    return max(START_TIMEOUT_SECONDS, checks)


def _dependencies(container: Container, project: Project) -> list[Property]:
    # Requires= with After=: this container starts after the others are ready, does not
    # start when one of them fails to, and is stopped or restarted with them when they
    # are stopped or restarted on purpose. BindsTo= would also stop it whenever one of
    # them goes down on its own, even for a crash that systemd restarts at once, and
    # nothing starts it again afterwards (seen on systemd 252: a dependency killed and
    # restarted left its BindsTo= dependent inactive, its Requires= dependent running).
    # A web server had better outlive a short outage of its database.
    #
    # A member of the project's pod requires the holder of its network the same way:
    # when the holder restarts on its own, its members are restarted into its new
    # network, as a container that shares another's is.
    units = {other.name: other.unit_name for other in project.containers}
    needed = [units[dependency.name] for dependency in container.depends_on]
    members = {member.name for member in project.pod_members}
    holder = [pod_unit_name(project)] if container.name in members else []
    if not needed and not holder:
        return []
    return [("After", ("as", holder + needed)), ("Requires", ("as", holder + needed))]


def _table(rows: Sequence[Row], model: object) -> list[Property]:
    found: list[Property] = []
    for field, name, signature, to_dbus in rows:
        value = getattr(model, field)
        if value is not None:
            found.append((name, (signature, to_dbus(value))))
    return found
