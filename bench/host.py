"""The benchmark's own throwaway systemd host, its user and the way work is timed there.

One `SandboxHost` (tests/sandbox.py) with a user of its own, `sdpod-bench`, so that a
benchmark never meets the test suite's `sdpod-test`. Every timed command runs through
`probe.py` inside the sandbox: entering it (nsenter, setpriv) is outside the clock.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox import CHECKOUT_MOUNT, SandboxError, SandboxHost

__all__ = ["Bench", "BenchError", "SandboxError", "SandboxHost", "free_port", "machine"]

BENCH_USER = "sdpod-bench"
PROBE = f"{CHECKOUT_MOUNT}/bench/probe.py"
SYSTEM_PYTHON = "/usr/bin/python3"


class BenchError(RuntimeError):
    """A measurement could not be made; the message says which and why."""


# Ports handed out come from below Linux's default ephemeral range (32768-60999): a port
# the kernel picked, as bind(0) does, may be taken as the source port of a connection
# before the container that should listen on it starts (podman's 35th of 50 did).
_PORTS = itertools.count(random.randrange(20000, 26000))


def free_port() -> int:
    """A loopback port that nothing listens on now, never the same one twice in a run."""
    for port in _PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("ran out of ports")


class Bench:
    """The booted host, the user's work directory, and helpers that run things there."""

    def __init__(self, host: SandboxHost, rounds: int, quick: bool, sizes: Sequence[int]):
        self.host = host
        self.rounds = rounds
        self.quick = quick
        self.sizes = list(sizes)
        self.user = host.user
        entry = pwd.getpwnam(self.user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.work = Path(entry.pw_dir) / "bench"

    def prepare(self) -> None:
        """A fresh work directory under the user's home (both sides see it)."""
        if self.work.exists():
            self.run_root(["rm", "-rf", str(self.work)])
        self.work.mkdir(parents=True)
        self.give(self.work)

    def give(self, path: Path) -> None:
        """Hand `path` and everything beneath it to the benchmark user."""
        os.chown(path, self.uid, self.gid)
        for directory, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(Path(directory) / name, self.uid, self.gid)

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 300) -> str:
        """Run `argv` as the user inside the sandbox, untimed; its stdout."""
        done = self.host.run_as_user(argv, check=check, timeout=timeout)
        return done.stdout

    def run_root(self, argv: Sequence[str]) -> None:
        self.host.run_as_root(argv, check=False, timeout=300)

    def time(self, steps: Sequence[dict[str, Any]], timeout: float = 120) -> list[float]:
        """Time `steps` (see probe.py) inside the sandbox; seconds per step."""
        request = json.dumps({"timeout": timeout, "steps": list(steps)})
        done = self.host.run_as_user(
            [SYSTEM_PYTHON, PROBE], check=False, input=request, timeout=timeout + 30
        )
        try:
            answer = json.loads(done.stdout)
        except json.JSONDecodeError as e:
            raise BenchError(f"failed to time {steps[0]['argv']}: {done.stderr.strip()}") from e
        if "error" in answer:
            raise BenchError(f"failed to time a step: {answer['error']}")
        times: list[float] = answer["steps"]
        return times

    def has(self, tool: str) -> bool:
        return shutil.which(tool) is not None

    def cgroup(self) -> Path:
        """The user manager's cgroup, as the host sees it."""
        return self.host.cgroup / f"user.slice/user-{self.uid}.slice/user@{self.uid}.service"


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "kernel": os.uname().release,
        "os": _os_name(),
        "versions": _versions(),
    }


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "unknown"


def _versions() -> dict[str, str]:
    commands = {
        "podman": ["podman", "--version"],
        "crun": ["crun", "--version"],
        "runc": ["runc", "--version"],
        "skopeo": ["skopeo", "--version"],
        "umoci": ["umoci", "--version"],
        "slirp4netns": ["slirp4netns", "--version"],
        "systemd": ["systemctl", "--version"],
    }
    out = {}
    for name, argv in commands.items():
        if shutil.which(argv[0]) is None:
            out[name] = "missing"
            continue
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        out[name] = (done.stdout.strip().splitlines() or ["?"])[0]
    return out
