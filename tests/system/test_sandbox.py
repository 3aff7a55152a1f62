"""The throwaway systemd host itself behaves like a booted machine for its users."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
from pathlib import Path

import pytest
from sandbox import CGROUP_PREFIX, NOSUB_USER, SandboxHost, cgroup2_root, process_start_time

from system.helpers import fetch

pytestmark = pytest.mark.system


def test_system_manager_is_pid_1(sandbox: SandboxHost) -> None:
    assert sandbox.run_as_root(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert sandbox.state in ("running", "degraded"), sandbox.failed_units


def test_user_manager_answers(sandbox: SandboxHost) -> None:
    state = sandbox.run_as_user(["systemctl", "--user", "is-system-running"], check=False)
    assert state.stdout.strip() in ("running", "degraded")


def test_transient_user_unit_runs(sandbox: SandboxHost) -> None:
    sandbox.run_as_user(["systemd-run", "--user", "--wait", "--quiet", "true"])


def test_user_journal_shows_unit_output(sandbox: SandboxHost) -> None:
    unit = f"sandbox-echo-{secrets.token_hex(4)}"
    word = secrets.token_hex(8)
    argv = ["systemd-run", "--user", "--wait", "--quiet", "-u", unit]
    sandbox.run_as_user([*argv, "-p", f"SyslogIdentifier={unit}", "echo", word])

    # By identifier, not by unit: journald may not learn the unit of a process that has
    # already exited when its line is read, and then files the line under no unit.
    journal = sandbox.run_as_user(
        ["journalctl", "--user", "-t", unit, "-o", "cat", "--no-pager"]
    ).stdout
    assert word in journal.split()


def test_user_has_subordinate_ids(sandbox: SandboxHost) -> None:
    # newuidmap and newgidmap map the ranges into a user namespace, as sdpod will: the
    # user's own id on root, the first subordinate range on the ids after it.
    for kind in ("uid", "gid"):
        argv = ["unshare", "--map-auto", "--map-root-user", "cat", f"/proc/self/{kind}_map"]
        lines = sandbox.run_as_user(argv).stdout.splitlines()
        assert sum(int(line.split()[2]) for line in lines) >= 65536, lines


def test_nosub_user_has_none_but_a_manager(sandbox: SandboxHost) -> None:
    for argv in (["getsubids", NOSUB_USER], ["getsubids", "-g", NOSUB_USER]):
        assert sandbox.run_as_user(argv, NOSUB_USER, check=False).returncode != 0

    argv = ["systemctl", "--user", "is-system-running"]
    state = sandbox.run_as_user(argv, NOSUB_USER, check=False).stdout.strip()
    assert state in ("running", "degraded")


def test_commands_run_in_the_sandbox_cgroup(sandbox: SandboxHost) -> None:
    cgroup = sandbox.run_as_user(["cat", "/proc/self/cgroup"]).stdout
    assert "0::/sandbox-exec" in cgroup.splitlines()


def test_loopback_is_the_hosts(sandbox: SandboxHost, user_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (user_dir / "index.html").write_text("from inside\n")
    unit = f"sandbox-http-{secrets.token_hex(4)}"
    serve = ["/usr/bin/python3", "-m", "http.server", "-b", "127.0.0.1", "-d", str(user_dir)]
    sandbox.run_as_user(["systemd-run", "--user", "--quiet", "-u", unit, *serve, str(port)])

    try:
        assert fetch(f"http://127.0.0.1:{port}/index.html") == "from inside\n"
    finally:
        sandbox.run_as_user(["systemctl", "--user", "stop", unit], check=False)


def test_stop_leaves_nothing_behind() -> None:
    # A stale sandbox, as a crashed run leaves it: its owner is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = cgroup2_root() / f"{CGROUP_PREFIX}.{dead.pid}.1.000000"
    stale.mkdir()

    host = SandboxHost(nosub_user=None, checkout=None).start()
    assert not stale.exists()
    host.run_as_user(["systemd-run", "--user", "--quiet", "sleep", "600"])
    processes = {pid: process_start_time(pid) for pid in pids_under(host.cgroup)}
    mount_ns = os.readlink(f"/proc/{host.pid}/ns/mnt")
    host.stop()

    assert not host.cgroup.exists()
    assert not host.console_log.exists()
    assert [pid for pid, start in processes.items() if process_start_time(pid) == start] == []
    assert mount_ns not in namespaces_in_use("mnt")


def pids_under(cgroup: Path) -> list[int]:
    return [int(pid) for f in cgroup.rglob("cgroup.procs") for pid in f.read_text().split()]


def namespaces_in_use(kind: str) -> set[str]:
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit():
                found.add(os.readlink(entry / "ns" / kind))
    return found
