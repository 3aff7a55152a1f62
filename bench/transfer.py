"""Move bytes through one TCP connection and time it, from inside the sandbox.

    python3 transfer.py upload|download PORT BYTES LIMIT

`upload` connects to 127.0.0.1:PORT, sends BYTES zeros, closes its side and waits until
the server closes its own: the server (busybox `nc -e dd of=/dev/null`) closes once it
has read everything, so the clock covers every byte reaching it. `download` reads until
the server (`nc -e dd if=/dev/zero count=...`) closes. The clock starts before the
connection. A transfer that is not done after LIMIT seconds stops there: what moved so
far is reported, with "complete": false (a stall is a figure too). A connection that is
refused or dropped before any byte moved is tried again until LIMIT, as a forwarder may
accept before the container listens.

Output on stdout, JSON: {"seconds": s, "bytes": n, "complete": bool} or {"error": "..."}.
Standard library only: it runs under Debian's /usr/bin/python3.
"""

from __future__ import annotations

import json
import socket
import sys
import time

CHUNK = 1 << 20


def upload(sock: socket.socket, size: int, deadline: float) -> int:
    block = bytes(CHUNK)
    sent = 0
    while sent < size and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            sent += sock.send(block[: min(CHUNK, size - sent)])
        except TimeoutError:
            break
    if sent == size:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            while sock.recv(CHUNK):
                pass
        except TimeoutError:
            return sent - 1  # everything sent, not everything taken in time
    return sent


def download(sock: socket.socket, size: int, deadline: float) -> int:
    received = 0
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(CHUNK)
        except TimeoutError:
            break
        if not data:
            break
        received += len(data)
    return received


def transfer(direction: str, port: int, size: int, limit: float) -> dict[str, object]:
    move = upload if direction == "upload" else download
    began = time.monotonic()
    deadline = began + limit
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
                moved = move(sock, size, deadline)
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            moved = 0
        if moved > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
        began = time.monotonic()
    seconds = time.monotonic() - began
    return {"seconds": seconds, "bytes": max(moved, 0), "complete": moved == size}


def main(argv: list[str]) -> int:
    direction, port, size, limit = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    try:
        result = transfer(direction, port, size, limit)
    except OSError as e:
        json.dump({"error": f"{direction} through 127.0.0.1:{port}: {e}"}, sys.stdout)
        return 1
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
