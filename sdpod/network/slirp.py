"""User-mode networking through slirp4netns(1), and ports published through its API.

slirp4netns joins the container's network namespace from outside, creates `tap0` with
the address 10.0.2.100, and forwards host ports to it. DESIGN.md explains why it is the
default here: Debian 12's pasta stalls on uploads and holds ~20 MiB per instance.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from sdpod.config.model import PortMapping
from sdpod.errors import NetworkError

log = logging.getLogger(__name__)

CONTAINER_ADDRESS = "10.0.2.100"
DNS_ADDRESS = "10.0.2.3"
READY_TIMEOUT_SECONDS = 10


def _argv(pid: int, api_socket: Path, ready_fd: int) -> list[str]:
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise NetworkError(
            "failed to start the container's network: slirp4netns is not installed",
            hint="install Debian's package `slirp4netns`",
        )
    return [
        binary,
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        f"--ready-fd={ready_fd}",
        f"--api-socket={api_socket}",
        str(pid),
        "tap0",
    ]


def _bound_to_container(pid: int, argv: list[str]) -> list[str]:
    """`argv` run by a shell that kills the container's init if slirp4netns ever exits.

    systemd watches only the container's init: were slirp4netns to die alone, the unit
    would stay active with its ports dead. Killing the init instead fails the unit, and
    its restart policy brings the container and its network back together. The shell
    costs about 0.1 MiB; on a normal stop systemd kills it with the rest of the unit.
    """
    script = f'"$@"; kill -KILL {pid}'
    return ["/bin/sh", "-c", script, "slirp4netns", *argv]


def start(pid: int, api_socket: Path) -> subprocess.Popen[bytes]:
    """Start slirp4netns for the network namespace of `pid`; return once tap0 is up.

    Its chatter at every start would fill the unit's journal, so it goes to a log file
    beside the API socket, which is quoted when the helper fails.
    """
    api_socket.unlink(missing_ok=True)
    log_path = api_socket.with_suffix(".log")
    ready_r, ready_w = os.pipe()
    argv = _bound_to_container(pid, _argv(pid, api_socket, ready_w))
    log.debug("running %s", subprocess.list2cmdline(argv))
    with log_path.open("wb") as log_file:
        helper = subprocess.Popen(
            argv, pass_fds=[ready_w], stdout=log_file, stderr=subprocess.STDOUT
        )
    os.close(ready_w)
    try:
        _wait_ready(ready_r, helper, log_path)
    finally:
        os.close(ready_r)
    return helper


def _wait_ready(ready_r: int, helper: subprocess.Popen[bytes], log_path: Path) -> None:
    readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT_SECONDS)
    if readable and os.read(ready_r, 1) == b"1":
        return
    helper.kill()
    helper.wait()
    said = log_path.read_text(errors="replace").strip().splitlines()[-3:]
    raise NetworkError(
        "failed to start the container's network: slirp4netns exited with status "
        f"{helper.returncode} before it was ready: {' / '.join(said) or 'no message'}",
        hint="check that /dev/net/tun exists and is readable and writable by this user",
    )


def publish(api_socket: Path, ports: Iterable[PortMapping]) -> None:
    """Forward each host address and port to the container, through slirp4netns's API."""
    for port in ports:
        request = {
            "execute": "add_hostfwd",
            "arguments": {
                "proto": port.protocol.value,
                "host_addr": port.host_ip,
                "host_port": port.host_port,
                "guest_addr": CONTAINER_ADDRESS,
                "guest_port": port.container_port,
            },
        }
        reply = _call(api_socket, request)
        if "error" in reply:
            reason = reply["error"].get("desc", reply["error"])
            raise NetworkError(
                f"failed to publish port {port.host_ip}:{port.host_port}/"
                f"{port.protocol.value}: {reason}",
                hint="another program may be using that port; `ss -ltnup` shows which",
            )


def _call(api_socket: Path, request: Mapping[str, object]) -> dict[str, dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(api_socket))
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    reply: dict[str, dict[str, object]] = json.loads(data or b"{}")
    return reply
