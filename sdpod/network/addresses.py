"""The IPv4 addresses a container with a user-mode network has, whichever backend runs it.

These are slirp4netns's own defaults (slirp4netns(1), `--configure`), and pasta is given
the same ones: the container's /etc/hosts and resolv.conf then do not depend on the
backend, and a container moved from one backend to the other keeps its addresses.
"""

from __future__ import annotations

NETWORK_PREFIX = 24
CONTAINER_ADDRESS = "10.0.2.100"
GATEWAY_ADDRESS = "10.0.2.2"
# The helper answers DNS queries sent here with the host's resolvers' answers, which
# also works where the host's resolv.conf names a loopback resolver the container
# cannot reach.
DNS_ADDRESS = "10.0.2.3"
MTU = 65520
