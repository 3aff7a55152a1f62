"""What the two network helpers, slirp4netns and pasta, have in common: a shell that ties
the container's life to theirs, and a readiness pipe they write to once they are set up.
"""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Callable
from pathlib import Path

from sdpod.errors import NetworkError

READY_TIMEOUT_SECONDS = 10


def bound_to(pid: int, argv: list[str], name: str) -> list[str]:
    """`argv` run by a shell that kills the container's init, `pid`, if the helper exits.

    systemd watches only the container's init: were the helper to die alone, the unit
    would stay active with its network and ports dead. Killing the init instead fails
    the unit, and its restart policy brings the container and its network back together.
    The shell costs about 0.1 MiB; on a normal stop systemd kills it with the rest of the
    unit. It exits with the helper's status.
    """
    script = f'"$@"; status=$?; kill -KILL {pid}; exit $status'
    return ["/bin/sh", "-c", script, name, *argv]


def wait_ready(
    ready_r: int,
    helper: subprocess.Popen[bytes],
    log_path: Path,
    name: str,
    accept: Callable[[bytes], bool],
) -> None:
    """Return once the helper writes what `accept` takes as ready to `ready_r`; else kill
    it and fail, quoting the end of its log."""
    readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT_SECONDS)
    if readable and accept(os.read(ready_r, 64)):
        return
    helper.kill()
    helper.wait()
    said = log_path.read_text(errors="replace").strip().splitlines()[-3:]
    text = " / ".join(said)
    raise NetworkError(
        f"failed to start the container's network: {name} exited with status "
        f"{helper.returncode} before it was ready: {text or 'no message'}",
        hint=(
            "check that /dev/net/tun exists and is readable and writable by this user"
            if "tun" in text.lower() or not text
            else None
        ),
    )
