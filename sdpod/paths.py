"""Where sdpod keeps its files: the XDG base directories of the user (or /var/lib as root)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Images and containers: `$XDG_DATA_HOME/sdpod`, `~/.local/share/sdpod` by default."""
    if os.geteuid() == 0:
        return Path("/var/lib/sdpod")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(base) / "sdpod"


def containers_dir() -> Path:
    return data_dir() / "containers"


def container_dir(name: str) -> Path:
    return containers_dir() / name


def volumes_dir() -> Path:
    """Named volumes, kept when their containers are removed."""
    return data_dir() / "volumes"


def runtime_dir() -> Path:
    """Sockets and logs that live as long as the boot: `$XDG_RUNTIME_DIR/sdpod`."""
    base = os.environ.get("XDG_RUNTIME_DIR") or ("/run" if os.geteuid() == 0 else None)
    if base is None:
        return data_dir() / "run"
    return Path(base) / "sdpod"


def network_socket(name: str) -> Path:
    """The API socket of a container's network helper; its log sits beside it."""
    return runtime_dir() / f"{name}.slirp4netns"


def pid_file(name: str) -> Path:
    """The host PID of a container's init, written by the launcher at each start."""
    return runtime_dir() / f"{name}.pid"


def namespace_link(name: str, kind: str) -> Path:
    """A link to a namespace of a container's init (`kind` as in /proc/PID/ns: user,
    net), written by the launcher at each start for containers that share it."""
    return runtime_dir() / f"{name}.{kind}ns"


def health_file(name: str) -> Path:
    """A container's last health check, as JSON (`sdpod.health.state`)."""
    return runtime_dir() / f"{name}.health"
