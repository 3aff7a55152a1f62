"""The IPv4 addresses a container with a user-mode network has, whichever backend runs it.

These are slirp4netns's own defaults (slirp4netns(1), `--configure`), and pasta is given
the same ones: the container's /etc/hosts and resolv.conf then do not depend on the
backend, and a container moved from one backend to the other keeps its addresses.
"""

from __future__ import annotations

import socket

NETWORK_PREFIX = 24
CONTAINER_ADDRESS = "10.0.2.100"
GATEWAY_ADDRESS = "10.0.2.2"
# The helper answers DNS queries sent here with the host's resolvers' answers, which
# also works where the host's resolv.conf names a loopback resolver the container
# cannot reach.
DNS_ADDRESS = "10.0.2.3"
MTU = 65520

# What a container calls the host, as podman and docker name it.
HOST_NAMES = ("host.containers.internal", "host.docker.internal")
# An address that only the default route leads to (TEST-NET-2, RFC 5737). connect(2) on
# a UDP socket chooses the source address for it, and sends nothing.
_ROUTE_PROBE = ("198.51.100.1", 9)


def host_address() -> str | None:
    """The host's IPv4 address on its default route, None without one.

    A container reaches the host there through its user-mode network, as podman's do:
    both backends keep it from the host's loopback, 10.0.2.2 included, so the host's
    services it can reach are those listening on that address or on all of them.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_ROUTE_PROBE)
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return address
