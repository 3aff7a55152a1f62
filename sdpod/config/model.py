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


class Ownership(enum.Enum):
    """Who owns a volume's files as the container sees them."""

    KEEP = "keep"  # as on the host, through the container's id mapping
    SHIFT = "shift"  # chowned once to the container's user, as podman's :U does
    IDMAP = "idmap"  # an idmapped mount shows the host ids unchanged inside (root only)


@dataclass(frozen=True)
class BindVolume:
    """A host directory or file mounted into the container."""

    source: Path
    target: PurePosixPath
    read_only: bool = False
    owner: Ownership = Ownership.KEEP
    create: bool = False  # make a missing source directory instead of refusing the file


@dataclass(frozen=True)
class NamedVolume:
    """A directory sdpod keeps under its data directory; while empty, it takes what the
    image holds at its target."""

    name: str
    target: PurePosixPath
    read_only: bool = False
    owner: Ownership = Ownership.KEEP


Volume = BindVolume | NamedVolume


@dataclass(frozen=True)
class Tmpfs:
    """An empty memory-backed file system, made afresh at each start."""

    target: PurePosixPath
    size: int | None = None  # bytes; None is the kernel's default, half of the RAM
    mode: int = 0o1777


@dataclass(frozen=True)
class Device:
    """A host device node made available inside the container."""

    source: PurePosixPath
    target: PurePosixPath
    read_only: bool = False


@dataclass(frozen=True)
class Secret:
    """A host file copied into a memory-backed file of the container at each start."""

    source: Path
    target: PurePosixPath
    mode: int = 0o400
    uid: int = 0
    gid: int = 0


class UsernsMode(enum.Enum):
    """How the container's ids map to the host's."""

    AUTO = "auto"  # root is the user, then the user's subordinate ids
    KEEP_ID = "keep-id"  # the user's own id is the same inside, root is subordinate
    MAP = "map"  # as `uid_map` and `gid_map` say


@dataclass(frozen=True)
class IdMap:
    """`count` ids from `container_id` inside are `host_id` and on outside."""

    container_id: int
    host_id: int
    count: int


@dataclass(frozen=True)
class UserNamespace:
    mode: UsernsMode = UsernsMode.AUTO
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()


POD_SUFFIX = "-pod"
NAMELESS_POD_STEM = "sdpod"  # the holder's name stem for a project without a name


class NetworkMode(enum.Enum):
    PRIVATE = "private"  # its own network namespace, reaching out through the default backend
    PASTA = "pasta"  # the same, through pasta
    SLIRP4NETNS = "slirp4netns"  # the same, through slirp4netns
    NONE = "none"  # its own network namespace with loopback alone
    HOST = "host"  # the host's network namespace
    CONTAINER = "container"  # the network namespace of another container of the file

    @property
    def user_mode(self) -> bool:
        """Whether the container has a network namespace of its own that a user-mode
        stack connects to the host's network, and so ports to publish."""
        return self in (NetworkMode.PRIVATE, NetworkMode.PASTA, NetworkMode.SLIRP4NETNS)


class PortProxy(enum.Enum):
    """What forwards the published TCP ports of a container on slirp4netns or "none"."""

    SYSTEMD = "systemd"  # socket units, and systemd-socket-proxyd from the first connection
    HELPER = "helper"  # the network helper, as it forwards UDP


# The networks whose published TCP ports systemd's socket activation forwards: one
# through slirp4netns, and one with loopback alone, which has no helper at all.
SOCKET_FORWARDED = (NetworkMode.SLIRP4NETNS, NetworkMode.NONE)
# Each container port forwarded so is a socket unit and a proxy service.
SOCKET_PORTS_MAX = 64


@dataclass(frozen=True)
class Network:
    mode: NetworkMode = NetworkMode.PRIVATE
    container: str | None = None  # the container whose network is shared, for CONTAINER

    @property
    def on_the_files_network(self) -> bool:
        """Whether it is the default, which the file's containers share where two or
        more have it (`Project.pod_members`)."""
        return self.mode is NetworkMode.PRIVATE


@dataclass(frozen=True)
class EnvFile:
    """A file of KEY=VALUE lines, and the variables read from it."""

    path: Path
    variables: tuple[tuple[str, str], ...]


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
    env_files: tuple[EnvFile, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    port_proxy: PortProxy = PortProxy.SYSTEMD
    volumes: tuple[Volume, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    secrets: tuple[Secret, ...] = ()
    devices: tuple[Device, ...] = ()
    hostname: str | None = None
    read_only: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    cap_add: tuple[str, ...] = ()  # capability names as the kernel spells them, CAP_...
    cap_drop: tuple[str, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    userns: UserNamespace = UserNamespace()
    network: Network = Network()
    dns: tuple[str, ...] = ()  # name servers; none means the user-mode stack's forwarder
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (name, address) lines of /etc/hosts
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

    @property
    def host_name(self) -> str:
        """The container's host name: its `hostname`, else its name."""
        return self.hostname or self.name

    @property
    def unit_description(self) -> str:
        """The unit's one-line description: its `description`, else what runs from what."""
        return self.description or f"sdpod container {self.name} ({self.image})"

    @property
    def socket_ports(self) -> tuple[PortMapping, ...]:
        """The published ports that systemd listens on, handing each connection into the
        container's network (`sdpod.units.sockets`); the network helper publishes the
        rest (`helper_ports`).

        Chosen by measurement (README, "Networking"): systemd's proxy carries 13.7 Gbit/s
        into a container here, slirp4netns's own forwarder 5.2, and it runs only once a
        connection comes. pasta forwards its own ports, which keeps the client's address.
        UDP has no proxy, and more than SOCKET_PORTS_MAX container ports would make too
        many units: the helper publishes those. `port_proxy = "helper"` leaves every port
        to the helper: systemd's proxy cannot half-close a connection.
        """
        if self.network.mode not in SOCKET_FORWARDED or self.port_proxy is PortProxy.HELPER:
            return ()
        tcp = tuple(port for port in self.ports if port.protocol is Protocol.TCP)
        if len({port.container_port for port in tcp}) > SOCKET_PORTS_MAX:
            return ()
        return tcp

    @property
    def helper_ports(self) -> tuple[PortMapping, ...]:
        """The published ports that the network helper forwards."""
        by_socket = self.socket_ports
        return tuple(port for port in self.ports if port not in by_socket)

    @property
    def environment(self) -> tuple[tuple[str, str], ...]:
        """The variables of `env_files` in their order, then `env`; a later one wins."""
        merged = dict(pair for file in self.env_files for pair in file.variables)
        merged.update(self.env)
        return tuple(merged.items())


@dataclass(frozen=True)
class Project:
    """Everything one TOML file describes."""

    source: Path
    containers: tuple[Container, ...]
    name: str = ""
    """The project's name, by default the file's name without `.toml`; its containers
    share the slice `sdpod-NAME.slice`."""

    @property
    def pod_members(self) -> tuple[Container, ...]:
        """The containers that share one network namespace, pod-style, and so reach each
        other by name: those on the default network ("private"), where there are two or
        more. A single one keeps its network to itself; one that names its backend
        ("pasta", "slirp4netns") has a network apart."""
        members = tuple(c for c in self.containers if c.network.on_the_files_network)
        return members if len(members) > 1 else ()

    @property
    def pod_name(self) -> str:
        """The name under which the project's shared network namespace is held, as a
        container's would be: `sdpod-NAME-pod.service`."""
        return f"{self.name or NAMELESS_POD_STEM}{POD_SUFFIX}"

    def ready_of(self, container: Container) -> ReadyWhen:
        """When `container` counts as started: as its `ready` says, but once healthy where
        another container of the project waits for it to be healthy."""
        waited_for = Dependency(container.name, DependencyCondition.HEALTHY)
        waits = any(waited_for in other.depends_on for other in self.containers)
        return ReadyWhen.HEALTHY if waits else container.ready
