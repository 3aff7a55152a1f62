"""Checks on published ports that can be made before anything starts."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from sdpod.config.model import PortMapping, Protocol
from sdpod.errors import NetworkError


def host_address(port: PortMapping) -> str:
    """`127.0.0.1:8080`, `[::1]:8080`: where the host listens for a published port."""
    address = f"[{port.host_ip}]" if ":" in port.host_ip else port.host_ip
    return f"{address}:{port.host_port}"


def describe(port: PortMapping) -> str:
    """`127.0.0.1:8080/tcp`, `[::1]:8080/tcp`: a port as the host binds it."""
    return f"{host_address(port)}/{port.protocol.value}"


def check_free(ports: Iterable[PortMapping]) -> None:
    """Fail, naming the port, when another program already holds one of `ports`."""
    for port in ports:
        family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
        kind = socket.SOCK_STREAM if port.protocol is Protocol.TCP else socket.SOCK_DGRAM
        with socket.socket(family, kind) as probe:
            # Connections of an earlier run in TIME_WAIT must not count as "taken".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((port.host_ip, port.host_port))
            except OSError as error:
                raise NetworkError(
                    f"failed to publish port {describe(port)}: {error.strerror}",
                    hint=_hint(error.errno, port),
                ) from None


def _hint(code: int | None, port: PortMapping) -> str:
    if code == errno.EADDRINUSE:
        return f"another program listens on it (`ss -ltnup sport = {port.host_port}`)"
    if code == errno.EACCES:
        return (
            "ports below net.ipv4.ip_unprivileged_port_start (sysctl) need privileges; "
            "choose a higher host port"
        )
    if code == errno.EADDRNOTAVAIL:
        return f"{port.host_ip} is not an address of this machine"
    return "choose another host port"
