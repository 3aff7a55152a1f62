"""User-mode networking through pasta(1), which publishes the ports itself.

pasta enters the user and network namespaces of the container's init from outside (by
its PID), makes the container's interface and gives it the addresses, route and MTU of
`sdpod.network.addresses` (`--config-net`); it answers DNS queries sent to the DNS
address with the host's resolvers' answers, and listens on each published host port.
A connection from the host's loopback reaches the container's loopback through pasta's
splice path, and the container sees it come from 127.0.0.1 or ::1; any other through its
tap path, with the client's own address. Nothing else is forwarded: no port the
container happens to bind, and no port of the host's into the container.

pasta stays in the foreground under the same shell as slirp4netns (`helper.bound_to`), so
that a dead pasta takes the container down and systemd restarts both. It writes its PID
file once the namespace is configured and its ports are bound: that file is a pipe here,
the readiness signal. Its output goes to a log file beside the API socket slirp4netns
would have, quoted when it fails; its warnings and errors also reach the unit's journal
through syslog.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from sdpod.config.model import PortMapping, Protocol
from sdpod.errors import NetworkError
from sdpod.network import helper
from sdpod.network.addresses import (
    CONTAINER_ADDRESS,
    DNS_ADDRESS,
    GATEWAY_ADDRESS,
    MTU,
    NETWORK_PREFIX,
)

log = logging.getLogger(__name__)

_PORT_OPTIONS = {Protocol.TCP: "--tcp-ports", Protocol.UDP: "--udp-ports"}


def port_specs(ports: Iterable[PortMapping]) -> list[str]:
    """pasta's `-t`/`-u` specs of `ports` (one protocol): `ADDRESS/HOST:CONTAINER`, runs of
    consecutive ports with the same address and offset as one range, `none` for none."""
    specs = [_spec(run) for run in _runs(sorted(ports, key=_order))]
    return specs or ["none"]


def _order(port: PortMapping) -> tuple[str, int]:
    return port.host_ip, port.host_port


def _runs(ports: list[PortMapping]) -> Iterator[list[PortMapping]]:
    run: list[PortMapping] = []
    for port in ports:
        if run and not _continues(run[-1], port):
            yield run
            run = []
        run.append(port)
    if run:
        yield run


def _continues(last: PortMapping, port: PortMapping) -> bool:
    return (
        port.host_ip == last.host_ip
        and port.host_port == last.host_port + 1
        and port.container_port == last.container_port + 1
    )


def _spec(run: list[PortMapping]) -> str:
    first, last = run[0], run[-1]
    if first is last:
        return f"{first.host_ip}/{first.host_port}:{first.container_port}"
    hosts = f"{first.host_port}-{last.host_port}"
    return f"{first.host_ip}/{hosts}:{first.container_port}-{last.container_port}"


def argv(binary: str, pid: int, ports: Iterable[PortMapping], ready: str) -> list[str]:
    """pasta's command line for the namespaces of `pid`; `ready` is where it writes its PID."""
    published = list(ports)
    command = [
        binary,
        "--foreground",
        "--quiet",
        f"--pid={ready}",
        "--config-net",
        f"--mtu={MTU}",
        f"--address={CONTAINER_ADDRESS}",
        f"--netmask={NETWORK_PREFIX}",
        f"--gateway={GATEWAY_ADDRESS}",
        # As slirp4netns's --disable-host-loopback: the gateway is not the host's loopback.
        "--no-map-gw",
        f"--dns-forward={DNS_ADDRESS}",
    ]
    for protocol, option in _PORT_OPTIONS.items():
        for spec in port_specs(p for p in published if p.protocol is protocol):
            command += [option, spec]
    command += ["--tcp-ns=none", "--udp-ns=none"]
    # As root pasta would switch to nobody, who may not open the namespaces of a
    # container that root made.
    if os.geteuid() == 0:
        command.append("--runas=0")
    return [*command, str(pid)]


def start(pid: int, ports: Iterable[PortMapping], log_path: Path) -> subprocess.Popen[bytes]:
    """Start pasta for the namespaces of `pid`, publishing `ports`; return once it is ready."""
    binary = shutil.which("pasta")
    if binary is None:
        raise NetworkError(
            "failed to start the container's network: pasta is not installed",
            hint="install Debian's package `passt`",
        )
    ready_r, ready_w = os.pipe()
    command = helper.bound_to(pid, argv(binary, pid, ports, f"/dev/fd/{ready_w}"), "pasta")
    log.debug("running %s", subprocess.list2cmdline(command))
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, pass_fds=[ready_w], stdout=log_file, stderr=subprocess.STDOUT
        )
    os.close(ready_w)
    try:
        helper.wait_ready(ready_r, process, log_path, "pasta", lambda said: said.strip().isdigit())
    finally:
        os.close(ready_r)
    return process
