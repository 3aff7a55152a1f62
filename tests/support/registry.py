"""A real registry on loopback for tests: Debian's `docker-registry` (distribution 2.8).

`start_registry` runs one instance on 127.0.0.1 with a free port and a configuration
written here; `stop_registry` ends it by its process. The pull tests (tests/registry/)
and the system tests of registry images (tests/system/) both use it; skopeo pushes the
test images.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REGISTRY = shutil.which("docker-registry")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    probe: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Instance:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_registry(
    directory: Path, name: str, storage: Path, auth: str = "", tls: str = ""
) -> Instance:
    port = free_port()
    config = directory / f"{name}.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n{tls}" + auth
    )
    assert REGISTRY is not None
    log = (directory / f"{name}.log").open("wb")
    process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=log)
    instance = Instance(name, port, process)
    wait_until(lambda: answers(port) or process.poll() is not None, START_TIMEOUT, name)
    if process.poll() is not None:
        raise AssertionError(f"registry {name} exited: {(directory / f'{name}.log').read_text()}")
    return instance


def stop_registry(instance: Instance) -> None:
    instance.process.terminate()
    try:
        instance.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        instance.process.kill()
        instance.process.wait()


def skopeo_push(source: str, dest: str, *extra: str) -> None:
    argv = ["skopeo", "copy", "--dest-tls-verify=false", *extra, source, f"docker://{dest}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
