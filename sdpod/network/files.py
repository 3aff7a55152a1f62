"""The name-resolution files a container gets: /etc/hosts, /etc/hostname, /etc/resolv.conf."""

from __future__ import annotations

from sdpod.network.slirp import CONTAINER_ADDRESS, DNS_ADDRESS


def hosts(name: str) -> str:
    return (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{CONTAINER_ADDRESS}\t{name}\n"
    )


def hostname(name: str) -> str:
    return f"{name}\n"


def resolv_conf() -> str:
    # slirp4netns forwards DNS on this address to the host's resolvers, which also works
    # where the host's resolv.conf names a loopback resolver the container cannot reach.
    return f"nameserver {DNS_ADDRESS}\n"
