"""A loopback `docker-registry` for the image item, started and stopped by this process.

Like tests/registry/conftest.py: Debian's distribution 2.8 on 127.0.0.1 and a free port,
with a configuration and storage written here, no authentication, plain HTTP.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bench.host import BenchError, free_port

START_TIMEOUT = 20.0


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Registry:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise BenchError("missing: docker-registry is not installed")
        self.port = free_port()
        config = directory / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'storage'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {secrets.token_hex(16)}\n"
        )
        self.log = directory / "registry.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"failed to start docker-registry: {self.log.read_text()}")
            time.sleep(0.05)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def push(self, layout: Path, name: str) -> str:
        """Push `layout`'s `latest` with skopeo; the reference to pull it by."""
        reference = f"{self.host}/bench/{name}:1"
        argv = ["skopeo", "copy", "--dest-tls-verify=false"]
        argv += [f"oci:{layout}:latest", f"docker://{reference}"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"failed to push {name} with skopeo: {done.stderr.strip()}")
        return reference

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
