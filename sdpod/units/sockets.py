"""Published TCP ports through systemd's socket activation: pure translation.

For each container port of `Container.socket_ports`, the manager listens on the host's
addresses in `sdpod-NAME:PORT.socket`. The first connection starts
`sdpod-NAME:PORT.service`, systemd-socket-proxyd run in the container's user and network
namespaces, which takes the listening socket and forwards each connection to the
container's loopback; it leaves after an idle minute, and the next connection starts it
again. Until then no process of ours runs for the port.

The container's unit requires its sockets, so that a port that cannot be bound fails
its start; the sockets are part of the container's unit (`PartOf=`), so that they stop
and restart with it. The proxy requires the container and starts after it: a connection
that comes while the container starts waits for it, and a proxy left in a restarted
container's old network is stopped with it. The container sees each client as
127.0.0.1, the proxy's own address in its network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from sdpod.config.model import PortMapping
from sdpod.units.translate import Property
from sdpod.units.unitfile import UnitSpec

# How long the proxy stays once its last connection has closed.
IDLE_EXIT_SECONDS: Final = 60
# Connections one proxy carries at once (systemd-socket-proxyd's default is 256), and
# the descriptors that takes, with room to spare.
PROXY_CONNECTIONS: Final = 2048
PROXY_FILES: Final = 8 * PROXY_CONNECTIONS


def container_ports(ports: Sequence[PortMapping]) -> list[int]:
    """The container ports of `ports`, each once, in order: one socket unit each."""
    return sorted({port.container_port for port in ports})


def units_glob(owner: str) -> str:
    """`sdpod-NAME:*`, the names of container `owner`'s socket and proxy units: a colon,
    which no container name holds, keeps them from matching another container's."""
    return f"sdpod-{owner}:*"


def socket_name(owner: str, container_port: int) -> str:
    return f"sdpod-{owner}:{container_port}.socket"


def proxy_name(owner: str, container_port: int) -> str:
    return f"sdpod-{owner}:{container_port}.service"


def owner_properties(owner: str, ports: Sequence[PortMapping]) -> list[Property]:
    """What the unit of the container `owner` adds to require its sockets."""
    if not ports:
        return []
    sockets = [socket_name(owner, number) for number in container_ports(ports)]
    return [("Requires", ("as", sockets))]


def listen_address(port: PortMapping) -> str:
    """ListenStream='s address: an IPv6 one in brackets (systemd.socket(5))."""
    host = f"[{port.host_ip}]" if ":" in port.host_ip else port.host_ip
    return f"{host}:{port.host_port}"


def socket_units(
    owner: str,
    owner_unit: str,
    ports: Sequence[PortMapping],
    proxy_argv: Callable[[int], list[str]],
    slice_name: str,
) -> list[UnitSpec]:
    """The proxy service and socket of each container port of `ports`, published for
    the container `owner` (unit `owner_unit`); `proxy_argv(port)` is the proxy's command.

    Each service comes before its socket, which names it once loaded.
    """
    units: list[UnitSpec] = []
    for number in container_ports(ports):
        published = [port for port in ports if port.container_port == number]
        units.append(
            (
                proxy_name(owner, number),
                "service",
                _proxy_properties(owner, owner_unit, number, proxy_argv(number), slice_name),
            )
        )
        units.append(
            (socket_name(owner, number), "socket", _socket_properties(owner_unit, published))
        )
    return units


def _socket_properties(owner_unit: str, published: Sequence[PortMapping]) -> list[Property]:
    listed = ", ".join(listen_address(port) for port in published)
    number = published[0].container_port
    return [
        ("Description", ("s", f"{owner_unit}: port {number}/tcp published on {listed}")),
        ("Listen", ("a(ss)", [("Stream", listen_address(port)) for port in published])),
        # "::" is the IPv6 addresses alone, as "0.0.0.0" is the IPv4 ones: each may be
        # published on its own.
        ("BindIPv6Only", ("s", "ipv6-only")),
        ("PartOf", ("as", [owner_unit])),
        # Restarted with the container, a socket would hit the default start-rate limit
        # (5 in 10 s) in a crash loop, and stay failed; a failed one is collected, so
        # that it keeps neither its port nor the container's name.
        ("StartLimitIntervalUSec", ("t", 0)),
        ("CollectMode", ("s", "inactive-or-failed")),
    ]


def _proxy_properties(
    owner: str, owner_unit: str, number: int, argv: list[str], slice_name: str
) -> list[Property]:
    return [
        ("Description", ("s", f"{owner_unit}: forwards port {number}/tcp into the container")),
        ("ExecStart", ("a(sasb)", [(argv[0], argv, False)])),
        ("Requires", ("as", [owner_unit])),
        ("After", ("as", [owner_unit])),
        ("Slice", ("s", slice_name)),
        ("SyslogIdentifier", ("s", f"{owner}-proxy")),
        # Each connection holds two sockets and two pipes (six descriptors): the default
        # soft limit of 1024 would end at about 170.
        ("LimitNOFILE", ("t", PROXY_FILES)),
        # Started by connections, and stopped with every restart of the container: the
        # default start-rate limit (5 in 10 s) would fail the proxy, and then its socket,
        # for good. The socket's own trigger limit still stops a proxy that cannot start.
        ("StartLimitIntervalUSec", ("t", 0)),
    ]


def proxy_argv(
    nsenter: str, proxy: str, user_link: str, net_link: str
) -> Callable[[int], list[str]]:
    """The proxy's command for a container port: systemd-socket-proxyd, entering the
    container's user namespace first (only there may it enter the network namespace that
    one owns, setns(2)), through the links its launcher records at each start.

    The links are current when the proxy starts: it starts after the container's unit is
    active, and the launcher writes them before it reports so.
    """

    def argv(number: int) -> list[str]:
        return [
            nsenter,
            f"--user={user_link}",
            f"--net={net_link}",
            # Keep the user's own ids: nsenter would otherwise switch to the namespace's
            # root and drop supplementary groups, which a rootless namespace refuses.
            "--preserve-credentials",
            "--",
            proxy,
            f"--exit-idle-time={IDLE_EXIT_SECONDS}s",
            f"--connections-max={PROXY_CONNECTIONS}",
            f"127.0.0.1:{number}",
        ]

    return argv
