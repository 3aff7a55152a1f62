"""Which user-mode backend runs a container's network, pasta or slirp4netns, and what
each can publish.

The choice is made on the host by `up`, before the unit starts, from the TOML's
`network` and the installed pasta's build, and is recorded in the container's
config.json (`io.sdpod.network`): the launcher starts what it says, and a change of
backend changes the container's definition, which `up` then replaces. Configuration
knows only what the TOML says.

pasta builds older than 2023-12-04 (Debian 12 ships 2023-03-09) stall when the container
sends through their tap path and hold 20 to 30 MiB each (DESIGN.md; bench item 6 measures
29 MiB PSS): there slirp4netns is the default and pasta runs only where a file asks for
it, with a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sdpod.config.model import (
    SOCKET_PORTS_MAX,
    Container,
    Network,
    NetworkMode,
    PortMapping,
    Protocol,
)
from sdpod.errors import NetworkError
from sdpod.network.ports import describe

PASTA_OLDEST = date(2023, 12, 4)
# Where dpkg lists the files of Debian's package `passt`, which holds pasta.
PASST_FILE_LIST = Path("/var/lib/dpkg/info/passt.list")
_BUILD_DATE = re.compile(r"(?<!\d)(20\d\d)_?(\d\d)_?(\d\d)(?!\d)")


@dataclass(frozen=True)
class Pasta:
    """The installed pasta: its path (None where there is none), the version it states,
    and the date of its build where that can be told."""

    path: str | None
    version: str = ""
    build: date | None = None

    @property
    def recent(self) -> bool:
        """Built on or after PASTA_OLDEST; an unknown build counts as older."""
        return self.build is not None and self.build >= PASTA_OLDEST


def pasta_build(version: str) -> date | None:
    """The build date in a pasta version ("pasta 2024_06_24.1ee2eca"), None if unknown.

    Upstream builds name the date with underscores; packagers join its digits, as in
    Debian's "0.0~git20230309.7c7625d-1" or Fedora's "0^20240821.g1d6142f".
    """
    found = _BUILD_DATE.search(version)
    if found is None:
        return None
    try:
        return date(*map(int, found.groups()))
    except ValueError:
        return None


@functools.cache
def installed_pasta() -> Pasta:
    """The pasta on PATH, asked once per process.

    Debian's build states "pasta unknown version"; its package's version, which holds
    the date of the upstream commit, stands in for it.
    """
    path = shutil.which("pasta")
    if path is None:
        return Pasta(None)
    said = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    lines = said.stdout.strip().splitlines()
    version = lines[0] if lines else "no version output"
    build = pasta_build(version)
    packaged = None if build is not None else _packaged_version(path)
    if packaged is not None:
        version = f"{version} (Debian's passt {packaged})"
        build = pasta_build(packaged)
    return Pasta(path, version, build)


def _packaged_version(path: str) -> str | None:
    """The version of Debian's package `passt` where it holds `path`, else None."""
    try:
        listed = set(PASST_FILE_LIST.read_text().split())
    except OSError:
        return None
    if path not in listed and os.path.realpath(path) not in listed:
        return None
    query = ["dpkg-query", "--show", "--showformat=${Version}", "passt"]
    result = subprocess.run(query, capture_output=True, text=True, check=False)
    return result.stdout.strip() or None


def choose(mode: NetworkMode, pasta: Pasta) -> tuple[NetworkMode, str | None]:
    """The backend of a user-mode `mode` (PASTA or SLIRP4NETNS) and a warning, if any."""
    if mode is NetworkMode.SLIRP4NETNS:
        return mode, None
    if mode is NetworkMode.PRIVATE:
        default = NetworkMode.PASTA if pasta.path and pasta.recent else NetworkMode.SLIRP4NETNS
        return default, None
    if mode is not NetworkMode.PASTA:
        raise ValueError(f"network mode {mode.value} has no user-mode backend")
    if pasta.path is None:
        raise NetworkError(
            'failed to set up network = "pasta": pasta is not installed',
            hint='install Debian\'s package `passt`, or use network = "slirp4netns"',
        )
    if pasta.recent:
        return mode, None
    return mode, (
        f"pasta ({pasta.path}: {pasta.version}) is older than its "
        f"{PASTA_OLDEST:%Y-%m-%d} build: it stalls when the container sends to the network "
        'and holds about 30 MiB per container; network = "private" uses slirp4netns with it'
    )


def resolve(container: Container, pasta: Pasta) -> tuple[Container, list[str]]:
    """`container` with the backend of its user-mode network chosen, and warnings; one of
    another network mode as it is. Refuse ports the backend would have to publish but
    cannot."""
    if not container.network.mode.user_mode:
        return container, []
    mode, warning = choose(container.network.mode, pasta)
    resolved = dataclasses.replace(container, network=Network(mode))
    # systemd's sockets publish the others (`Container.socket_ports`).
    helper_ports = resolved.helper_ports
    check_ports(mode, helper_ports, pasta)
    warnings = [warning] if warning else []
    warnings += [_half_answered(port) for port in helper_ports if _loopback_unanswered(mode, port)]
    return resolved, warnings


def check_ports(mode: NetworkMode, ports: Iterable[PortMapping], pasta: Pasta) -> None:
    """Refuse, naming the port and the backend, a port that `mode` cannot publish."""
    published: dict[tuple[int, Protocol], PortMapping] = {}
    for port in ports:
        problem, hint = _unpublishable(mode, port, pasta)
        # pasta keeps one forwarding entry per port number and protocol, whatever the
        # address: a second address for the same number is "Overlapping port specifier".
        other = published.setdefault((port.host_port, port.protocol), port)
        if mode is NetworkMode.PASTA and other is not port and not problem:
            problem = f"pasta publishes a port number on one host address, {describe(other)}"
            hint = "publish the other address on another port number"
        if problem:
            raise NetworkError(f"failed to publish port {describe(port)}: {problem}", hint=hint)


def _unpublishable(mode: NetworkMode, port: PortMapping, pasta: Pasta) -> tuple[str, str]:
    # slirp4netns 1.2's add_hostfwd answers "bad arguments.host_addr" for an IPv6
    # address, with --enable-ipv6 too.
    if mode is NetworkMode.SLIRP4NETNS and ":" in port.host_ip:
        systemd = (
            'systemd publishes TCP on IPv6, unless port_proxy = "helper" or the container '
            f"(with the file's others on its shared network) has more than {SOCKET_PORTS_MAX} "
            "container ports"
        )
        return (
            "slirp4netns publishes on IPv4 host addresses only",
            f'publish it on an IPv4 address, or set network = "pasta"; {systemd}',
        )
    # The container may not reach the host's loopback (--disable-host-loopback), and
    # libslirp holds a UDP reply to a loopback client to that rule: it drops it.
    loopback = ipaddress.ip_address(port.host_ip).is_loopback
    if mode is NetworkMode.SLIRP4NETNS and port.protocol is Protocol.UDP and loopback:
        return (
            "slirp4netns drops the container's replies to clients on the host's loopback",
            'publish UDP on loopback with network = "pasta"',
        )
    # Older pasta forwards a datagram to the container's port but drops the reply when
    # the two port numbers differ (seen with Debian 12's 2023-03-09 build).
    old_pasta = mode is NetworkMode.PASTA and not pasta.recent
    if old_pasta and port.protocol is Protocol.UDP and port.host_port != port.container_port:
        return (
            f"pasta older than its {PASTA_OLDEST:%Y-%m-%d} build loses the replies of UDP "
            "published on another port number",
            f'publish it on the same number, "{port.container_port}:{port.container_port}/udp"',
        )
    return "", ""


def _loopback_unanswered(mode: NetworkMode, port: PortMapping) -> bool:
    """UDP on every address through slirp4netns: answered, but not on the loopback."""
    unspecified = ipaddress.ip_address(port.host_ip).is_unspecified
    return mode is NetworkMode.SLIRP4NETNS and port.protocol is Protocol.UDP and unspecified


def _half_answered(port: PortMapping) -> str:
    return (
        f"{describe(port)} through slirp4netns answers other machines only: the replies to "
        "a client on this machine's loopback are dropped, as the container may not reach "
        'it; network = "pasta" answers both'
    )
