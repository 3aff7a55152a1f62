"""The typed, frozen model that every layer after `config` trusts.

Nothing here is validated again downstream: `sdpod.config.load` only builds these
objects from values it has already checked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class RestartPolicy(enum.Enum):
    """When systemd restarts the container; the values are systemd's `Restart=` words."""

    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class PortMapping:
    """A container port published on an address of the host."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True)
class BindVolume:
    """A host directory or file mounted into the container."""

    source: Path
    target: PurePosixPath
    read_only: bool = False


@dataclass(frozen=True)
class LayoutImage:
    """An image read from an OCI image layout on disk (`skopeo copy ... oci:DIR:TAG`)."""

    path: Path
    tag: str

    def __str__(self) -> str:
        return f"oci:{self.path}:{self.tag}"


@dataclass(frozen=True)
class RegistryImage:
    """An image pulled from a registry, as the TOML names it.

    `reference` is fully qualified (`registry.example:5000/shop/web:2`), or a short name
    that the user's registries.conf has an alias for, which the image store expands.
    """

    reference: str

    def __str__(self) -> str:
        return self.reference


Image = LayoutImage | RegistryImage


class PullPolicy(enum.Enum):
    """When `sdpod up` asks the registry for a registry image."""

    MISSING = "missing"  # only when no stored image has the reference
    ALWAYS = "always"  # each time; only what changed is fetched
    NEVER = "never"  # use the stored image, or fail


class ReadyWhen(enum.Enum):
    """When systemd considers the container started, and `sdpod up` returns."""

    STARTED = "started"  # its command has been exec'd
    NOTIFY = "notify"  # the application sends READY=1 to $NOTIFY_SOCKET itself
    HEALTHY = "healthy"  # its first health check has passed


class UnhealthyAction(enum.Enum):
    """What happens once a health check has failed `retries` times in a row."""

    NONE = "none"
    RESTART = "restart"
    STOP = "stop"


class DependencyCondition(enum.Enum):
    """What a container waits for before it starts after another one."""

    STARTED = "started"  # the other is ready as its own `ready` setting says
    HEALTHY = "healthy"  # the other's health check passes


@dataclass(frozen=True)
class Dependency:
    name: str
    condition: DependencyCondition = DependencyCondition.STARTED


@dataclass(frozen=True)
class HealthCheck:
    """A command run inside the container; durations are in seconds."""

    command: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 0.0
    on_unhealthy: UnhealthyAction = UnhealthyAction.RESTART


@dataclass(frozen=True)
class Resources:
    """Limits systemd applies to the unit's cgroup; None leaves systemd's default."""

    memory_max: int | None = None  # bytes
    memory_high: int | None = None  # bytes
    cpus: float | None = None  # CPU time as a number of CPUs: 1.5 is CPUQuota=150%
    cpu_weight: int | None = None  # 1 to 10000
    pids_max: int | None = None
    io_weight: int | None = None  # 1 to 10000


@dataclass(frozen=True)
class Container:
    """One container. `command` is None when the image's own command should run.

    Durations are in seconds; `stop_signal` is a signal number.
    """

    name: str
    image: Image
    pull: PullPolicy = PullPolicy.MISSING
    tls_verify: bool = True
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str | None = None
    user: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortMapping, ...] = ()
    volumes: tuple[BindVolume, ...] = ()
    hostname: str | None = None
    read_only: bool = False
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    restart_delay: float = 1.0
    stop_signal: int = 15
    stop_timeout: float = 10.0
    resources: Resources = Resources()
    health: HealthCheck | None = None
    ready: ReadyWhen = ReadyWhen.STARTED
    depends_on: tuple[Dependency, ...] = ()
    description: str | None = None
    documentation: tuple[str, ...] = ()

    @property
    def unit_name(self) -> str:
        return f"sdpod-{self.name}.service"


@dataclass(frozen=True)
class Project:
    """Everything one TOML file describes."""

    source: Path
    containers: tuple[Container, ...]
    name: str = ""
    """The project's name, by default the file's name without `.toml`; its containers
    share the slice `sdpod-NAME.slice`."""

    def ready_of(self, container: Container) -> ReadyWhen:
        """When `container` counts as started: as its `ready` says, but once healthy where
        another container of the project waits for it to be healthy."""
        waited_for = Dependency(container.name, DependencyCondition.HEALTHY)
        waits = any(waited_for in other.depends_on for other in self.containers)
        return ReadyWhen.HEALTHY if waits else container.ready
