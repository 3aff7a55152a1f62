"""A container reaches the host by name, and sends to it at full speed, through `up`.

The server is this test's own, listening on the host's address on its default route
(the sandbox shares the host's network): traffic goes from the container's namespace to
this machine's own address, and no further.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from sandbox import SandboxHost

from sdpod.network.addresses import host_address
from system.helpers import Project, free_port

pytestmark = pytest.mark.system

UPLOAD_MIB = 64


class Receiver:
    """Counts the bytes of one connection to `address`, until its sender closes it."""

    def __init__(self, address: str) -> None:
        self.listener = socket.create_server((address, 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        self.listener.settimeout(60)
        connection, _ = self.listener.accept()
        with connection:
            while chunk := connection.recv(1 << 20):
                self.received += len(chunk)

    def close(self) -> None:
        self.listener.close()


def test_a_container_uploads_to_the_host_by_its_name(sandbox: SandboxHost, user_dir: Path) -> None:
    address = host_address()
    assert address is not None, "the machine has no default route"
    receiver = Receiver(address)
    sleep = ("sleep", "600")
    project = Project.create(sandbox, sandbox.user, user_dir, "to-host", free_port(), command=sleep)
    try:
        assert project.up().returncode == 0
        hosts = project.sdpod("exec", project.name, "cat", "/etc/hosts").stdout
        for name in ("host.containers.internal", "host.docker.internal"):
            assert f"{address}\t{name}\n" in hosts, hosts

        send = f"dd if=/dev/zero bs=1M count={UPLOAD_MIB} | nc -w 5 host.containers.internal $0"
        sent = project.sdpod("exec", project.name, "sh", "-c", send, str(receiver.port))
        receiver.thread.join(timeout=60)

        assert sent.returncode == 0, sent.stderr
        assert receiver.received == UPLOAD_MIB << 20
    finally:
        receiver.close()
        project.down()
