"""sd_notify(3) without libsystemd: tell the service manager who the main process is.

`BARRIER=1` with a pipe makes the manager confirm that it has handled every message
before it, so the launcher cannot exit before systemd has read `MAINPID=`.
"""

from __future__ import annotations

import os
import select
import socket

BARRIER_TIMEOUT_SECONDS = 5


def _address(raw: str) -> str:
    # An abstract socket is written with a leading "@" in the environment.
    return "\0" + raw[1:] if raw.startswith("@") else raw


def notify(state: str) -> bool:
    """Send `state` and wait for the manager to process it; False without NOTIFY_SOCKET."""
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw:
        return False

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(_address(raw))
        sock.sendall(state.encode())
        _barrier(sock)
    return True


def _barrier(sock: socket.socket) -> None:
    read_end, write_end = os.pipe()
    try:
        socket.send_fds(sock, [b"BARRIER=1"], [write_end])
        os.close(write_end)
        write_end = -1
        select.select([read_end], [], [], BARRIER_TIMEOUT_SECONDS)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
