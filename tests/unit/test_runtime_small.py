"""cgroup paths and port checks (name-resolution files: test_network_files)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sdpod.config.model import PortMapping
from sdpod.errors import NetworkError
from sdpod.network import ports
from sdpod.runtime import cgroup

MOUNTINFO = (
    "25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw\n"
    "31 25 0:27 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n"
)


def test_cgroup2_mount_and_own_path_are_found() -> None:
    assert cgroup.cgroup2_mount(MOUNTINFO) == Path("/sys/fs/cgroup")
    assert cgroup.cgroup2_mount("25 30 0:22 / /sys rw - sysfs sysfs rw\n") is None
    own = cgroup.own_cgroup("1:name=systemd:/x\n0::/user.slice/sdpod-web.service\n")
    assert own == "/user.slice/sdpod-web.service"


def test_a_taken_port_is_refused_by_number() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(NetworkError, match=f"127.0.0.1:{taken}/tcp"):
            ports.check_free([PortMapping("127.0.0.1", taken, 80)])


def test_a_free_port_passes() -> None:
    with socket.socket() as finder:
        finder.bind(("127.0.0.1", 0))
        free = finder.getsockname()[1]
    ports.check_free([PortMapping("127.0.0.1", free, 80)])
