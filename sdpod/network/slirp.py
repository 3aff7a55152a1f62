"""User-mode networking through slirp4netns(1), and ports published through its API.

slirp4netns joins the container's network namespace from outside, creates `tap0` with
the address 10.0.2.100, and forwards host ports to it. It is the default where pasta is
older than its 2023-12-04 build (`sdpod.network.backends`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from sdpod.config.model import PortMapping
from sdpod.errors import NetworkError
from sdpod.network import helper
from sdpod.network.addresses import CONTAINER_ADDRESS, MTU
from sdpod.network.ports import describe

log = logging.getLogger(__name__)


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
        f"--mtu={MTU}",
        "--disable-host-loopback",
        f"--ready-fd={ready_fd}",
        f"--api-socket={api_socket}",
        str(pid),
        "tap0",
    ]


def start(pid: int, api_socket: Path) -> subprocess.Popen[bytes]:
    """Start slirp4netns for the network namespace of `pid`; return once tap0 is up.

    Its chatter at every start would fill the unit's journal, so it goes to a log file
    beside the API socket, which is quoted when the helper fails.
    """
    api_socket.unlink(missing_ok=True)
    log_path = api_socket.with_suffix(".log")
    ready_r, ready_w = os.pipe()
    argv = helper.bound_to(pid, _argv(pid, api_socket, ready_w), "slirp4netns")
    log.debug("running %s", subprocess.list2cmdline(argv))
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv, pass_fds=[ready_w], stdout=log_file, stderr=subprocess.STDOUT
        )
    os.close(ready_w)
    try:
        helper.wait_ready(ready_r, process, log_path, "slirp4netns", lambda said: said == b"1")
    finally:
        os.close(ready_r)
    return process


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
                f"failed to publish port {describe(port)}: {reason}",
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
