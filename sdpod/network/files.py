"""The name-resolution files a container gets: /etc/hosts, /etc/hostname, /etc/resolv.conf.

Pure functions of the model: the caller reads the host's own files where a container
uses the host's network, and passes their text in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sdpod.config.model import Container, NetworkMode
from sdpod.network.addresses import CONTAINER_ADDRESS, DNS_ADDRESS, HOST_NAMES

LOOPBACK = "127.0.0.1"
_LOCALHOST = f"{LOOPBACK}\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# resolv.conf(5) keywords that each setting replaces: `domain` and `search` are one list.
_REPLACED = {"servers": ("nameserver",), "search": ("search", "domain"), "options": ("options",)}


@dataclass(frozen=True)
class HostFiles:
    """The host's /etc/hosts and /etc/resolv.conf, as a container on its network sees them."""

    hosts: str
    resolv_conf: str


def names_of(container: Container) -> list[str]:
    """The names a container answers to: its host name, then its container name."""
    return list(dict.fromkeys([container.host_name, container.name]))


def render_hosts(
    names: Sequence[str],
    address: str,
    extra: Sequence[tuple[str, str]] = (),
    base: str = _LOCALHOST,
) -> str:
    """`base` (localhost's lines, or the host's file), `names` on `address`, then `extra`
    as (name, address) pairs."""
    text = base if not base or base.endswith("\n") else base + "\n"
    lines = [f"{address}\t{' '.join(names)}", *(f"{ip}\t{name}" for name, ip in extra)]
    return text + "".join(f"{line}\n" for line in lines)


def hostname(name: str) -> str:
    return f"{name}\n"


def render_resolv_conf(
    servers: Sequence[str],
    search: Sequence[str] = (),
    options: Sequence[str] = (),
    base: str = "",
) -> str:
    """`base`'s lines but those a given setting replaces, then the settings' own lines."""
    given = {"servers": servers, "search": search, "options": options}
    dropped = {word for key, words in _REPLACED.items() if given[key] for word in words}
    kept = [line for line in base.splitlines() if _keyword(line) not in dropped]
    lines = [f"nameserver {server}" for server in servers]
    if search:
        lines.append(f"search {' '.join(search)}")
    if options:
        lines.append(f"options {' '.join(options)}")
    return "".join(f"{line}\n" for line in kept + lines)


def _with_host(
    extra: Sequence[tuple[str, str]], host_address: str | None
) -> Sequence[tuple[str, str]]:
    """The host's names on `host_address` before `extra`, unless `extra` names them."""
    if host_address is None:
        return extra
    given = {name for name, _ in extra}
    return [(name, host_address) for name in HOST_NAMES if name not in given] + list(extra)


def _keyword(line: str) -> str:
    words = line.split()
    return words[0] if words else ""


def etc_files(
    container: Container,
    owner: Container,
    host: HostFiles | None,
    neighbours: Sequence[str] = (),
    host_address: str | None = None,
) -> dict[str, str]:
    """The container's hosts, hostname and resolv.conf, keyed by their names under /etc.

    `owner` is the container whose network namespace `container` uses: itself, or the one
    whose network it shares, whose name-resolution settings are then the ones that count
    (configuration refuses them on a container that shares another's network). `host` is
    needed where `owner` uses the host's network. `neighbours` are the names of the
    containers that share the network with it, pod-style, on its own address.
    `host_address` is where a user-mode network reaches the host (`HOST_NAMES`).
    """
    names = names_of(owner) + [n for n in names_of(container) if n not in names_of(owner)]
    names += [n for n in neighbours if n not in names]
    resolver = (owner.dns, owner.dns_search, owner.dns_options)
    mode = owner.network.mode
    if mode is NetworkMode.HOST:
        if host is None:
            raise ValueError("the host's files are needed for a container on its network")
        # As podman does for host networking: the host's files, the container's names
        # on the loopback address it shares with the host.
        hosts_text = render_hosts(names, LOOPBACK, owner.extra_hosts, base=host.hosts)
        resolv_text = render_resolv_conf(*resolver, base=host.resolv_conf)
    elif mode is NetworkMode.NONE:
        # With loopback alone no name server outside can be reached. Without nameserver
        # lines the resolver asks 127.0.0.1 (resolv.conf(5)), the container's own
        # loopback: a lookup fails at once unless the container runs a resolver itself.
        hosts_text = render_hosts(names, LOOPBACK, owner.extra_hosts)
        resolv_text = render_resolv_conf(*resolver)
    else:
        # Either user-mode backend forwards DNS on its address to the host's resolvers,
        # which also works where the host's resolv.conf names a loopback resolver the
        # container cannot reach; name servers given in the TOML replace it.
        hosts_text = render_hosts(
            names, CONTAINER_ADDRESS, _with_host(owner.extra_hosts, host_address)
        )
        resolv_text = render_resolv_conf(
            owner.dns or (DNS_ADDRESS,), owner.dns_search, owner.dns_options
        )
    return {
        "hosts": hosts_text,
        "hostname": hostname(container.host_name),
        "resolv.conf": resolv_text,
    }
