"""How a container's readiness reaches systemd, as its spec's `io.sdpod.ready` asks.

- `started`: the launcher sends `MAINPID=` and `READY=1` once the command has been exec'd.
- `notify`: the launcher sends only `MAINPID=`; the application sends `READY=1` itself,
  through the manager's own notify socket, bound into the container at
  `/run/sdpod/notify` and named by `NOTIFY_SOCKET` there (systemd accepts it from any
  process of the unit with NotifyAccess=all).
- `healthy`: the launcher sends `MAINPID=` and `STATUS=starting`; the first passing health
  check sends `READY=1` (`sdpod.health.check`).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from sdpod.config.model import ReadyWhen
from sdpod.errors import RuntimeSetupError
from sdpod.health.annotate import check_of, readiness_of

log = logging.getLogger(__name__)

CONTAINER_NOTIFY_DIR = "/run/sdpod"
CONTAINER_NOTIFY_SOCKET = f"{CONTAINER_NOTIFY_DIR}/notify"


def ready_message(spec: dict[str, Any], init: int, name: str) -> str:
    """What the launcher tells the manager once the container's command runs."""
    ready = readiness_of(spec)
    if ready is ReadyWhen.STARTED:
        status = "starting" if check_of(spec) else f"container {name} is running"
        return f"MAINPID={init}\nREADY=1\nSTATUS={status}"
    if ready is ReadyWhen.NOTIFY:
        # No STATUS=: it would outlast the application's READY=1, which it cannot clear.
        return f"MAINPID={init}"
    return f"MAINPID={init}\nSTATUS=starting"


def give_notify_socket(spec: dict[str, Any], environ: dict[str, str]) -> None:
    """For `ready = "notify"`, add the manager's socket and NOTIFY_SOCKET to `spec`.

    A small tmpfs at /run/sdpod holds the mount point, so that nothing is written into
    the container's own files.
    """
    if readiness_of(spec) is not ReadyWhen.NOTIFY:
        return
    raw = environ.get("NOTIFY_SOCKET", "")
    if not raw.startswith("/"):
        what = "not set" if not raw else f"the abstract socket {raw!r}, which cannot be mounted"
        raise RuntimeSetupError(
            f"failed to give the container the manager's notify socket: NOTIFY_SOCKET is {what}",
            hint='ready = "notify" works only when the container runs as a unit of systemd',
        )
    _let_container_send(Path(raw))
    spec.setdefault("mounts", []).extend(
        [
            {
                "destination": CONTAINER_NOTIFY_DIR,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "mode=755", "size=64k"],
            },
            {
                "destination": CONTAINER_NOTIFY_SOCKET,
                "type": "bind",
                "source": raw,
                "options": ["bind"],
            },
        ]
    )
    env = spec["process"].setdefault("env", [])
    env[:] = [entry for entry in env if not entry.startswith("NOTIFY_SOCKET=")]
    env.append(f"NOTIFY_SOCKET={CONTAINER_NOTIFY_SOCKET}")


def _let_container_send(socket: Path) -> None:
    """Let every user of the container write to `socket`, which sending needs (unix(7)).

    A user manager makes its socket writable by its owner only, who is the container's
    root; the application that reports readiness often runs as another user, dropped to
    by its entrypoint. The socket's directory, $XDG_RUNTIME_DIR, is the owner's alone,
    so write access for others lets in only the containers it is bound into, as the
    system manager's own socket (mode 0777) and the notify sockets of runc and crun
    allow everyone.
    """
    try:
        mode = stat.S_IMODE(socket.stat().st_mode)
        if not mode & stat.S_IWOTH:
            os.chmod(socket, mode | stat.S_IWOTH)
            log.debug("made %s writable for every user of the container", socket)
    except OSError as error:
        raise RuntimeSetupError(
            f"failed to let the container's users write to the notify socket {socket}: "
            f"{error.strerror}"
        ) from None
