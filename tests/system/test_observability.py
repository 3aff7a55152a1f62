"""`sdpod ps`, `ps --json`, `status` and `logs` against a running container.

What sdpod reports is checked against what systemd, the journal and the kernel say
through their own tools (`systemctl show`, `journalctl`, /proc), never against sdpod
alone. Other tests may leave containers of the same user behind: each test looks only
at its own row.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import selectors
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox import SandboxHost

from system.helpers import Project, container_toml, fetch, free_port, wait_for

pytestmark = pytest.mark.system

JOURNAL_TIMEOUT = 10.0
RESTART_TIMEOUT = 20.0
FOLLOW_TIMEOUT = 15.0
COLUMNS = ["NAME", "UNIT", "STATE", "HEALTH", "UPTIME", "PORTS", "IMAGE"]
Completed = subprocess.CompletedProcess[str]


def ok(result: Completed) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@dataclass
class Running:
    """A container that `up` started, and the time just before it did."""

    project: Project
    started: float

    def ps_json(self) -> dict[str, object]:
        result = self.project.sdpod("ps", "--json")
        assert result.returncode == 0, ok(result)
        ours = [row for row in json.loads(result.stdout) if row["name"] == self.project.name]
        assert len(ours) == 1, result.stdout
        row: dict[str, object] = ours[0]
        return row

    def ps_row(self) -> list[str]:
        result = self.project.sdpod("ps")
        assert result.returncode == 0, ok(result)
        lines = result.stdout.splitlines()
        assert lines[0].split() == COLUMNS, result.stdout
        ours = [line.split() for line in lines[1:] if line.split()[0] == self.project.name]
        assert len(ours) == 1, result.stdout
        return ours[0]

    def status(self) -> tuple[dict[str, str], list[str]]:
        """The `label: value` facts of `sdpod status`, and its log lines."""
        result = self.project.sdpod("status", self.project.name)
        assert result.returncode == 0, ok(result)
        head, _, log = result.stdout.partition("\n\n")
        lines = head.splitlines()
        assert lines[0] == self.project.name, result.stdout
        pairs = (line.split(":", 1) for line in lines[1:])
        facts = {label.strip(): value.strip() for label, value in pairs}
        return facts, [line.strip() for line in log.splitlines()[1:]]

    def show(self, *props: str) -> dict[str, str]:
        argv = ["systemctl", "--user", "show", "-p", ",".join(props), self.project.unit]
        out = self.project.run(argv)
        assert out.returncode == 0, ok(out)
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    @property
    def health_file(self) -> str:
        uid = self.project.sandbox.uid(self.project.user)
        return f"/run/user/{uid}/sdpod/{self.project.name}.health"

    def write_health(self, text: str) -> None:
        write = ["sh", "-c", 'cat > "$0"', self.health_file]
        self.project.sandbox.run_as_user(write, self.project.user, input=text)


@contextlib.contextmanager
def started(sandbox: SandboxHost, user_dir: Path, health: str = "") -> Iterator[Running]:
    """The busybox web server up as the test user, with the `[container.health]` lines
    `health` if given; brought down again afterwards."""
    name = f"obs-{secrets.token_hex(3)}"
    directory = user_dir / name
    directory.mkdir()
    project = Project.create(sandbox, sandbox.user, directory, name, free_port())
    if health:
        project.rewrite(container_toml(name, project.port) + f"\n[container.health]\n{health}")
    began = time.time()
    up = project.up()
    assert up.returncode == 0, ok(up)
    try:
        yield Running(project, began)
    finally:
        down = project.down()
        assert down.returncode == 0, ok(down)


@pytest.fixture
def running(sandbox: SandboxHost, user_dir: Path) -> Iterator[Running]:
    with started(sandbox, user_dir) as container:
        yield container


# -- ps -------------------------------------------------------------------------------


def test_ps_table_and_json_describe_the_running_container(running: Running) -> None:
    project = running.project
    state = project.show()
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state

    row = running.ps_row()
    assert row[:5] == [project.name, project.unit, "active", "(running)", "-"], row
    assert re.fullmatch(r"\d+[smhd]", row[5]), row
    assert f"127.0.0.1:{project.port}:80/tcp" in row
    assert f"oci:{project.directory}/image:latest" in row

    data = running.ps_json()
    uptime = data.pop("uptime")
    assert data == {
        "name": project.name,
        "unit": project.unit,
        "loaded": True,
        "state": "active",
        "sub_state": "running",
        "health": None,
        "ports": [
            {
                "host_ip": "127.0.0.1",
                "host_port": project.port,
                "container_port": 80,
                "protocol": "tcp",
            }
        ],
        "image": f"oci:{project.directory}/image:latest",
    }
    # The unit became active after `up` began, and whole seconds are rounded down.
    assert isinstance(uptime, int) and 0 <= uptime <= time.time() - running.started, uptime


def test_uptime_grows_while_the_container_runs(running: Running) -> None:
    def uptime() -> int:
        value = running.ps_json()["uptime"]
        assert isinstance(value, int), value
        return value

    first = uptime()
    wait_for(lambda: uptime() > first or None, 10.0, "the uptime to grow")


def test_health_is_shown_from_a_whole_file_and_a_dash_otherwise(running: Running) -> None:
    checked = time.time()
    healthy = {"status": "healthy", "failing_streak": 0, "checked_at": checked, "output": "ok\n"}
    try:
        running.write_health(json.dumps(healthy))
        assert running.ps_row()[4] == "healthy"
        assert running.ps_json()["health"] == "healthy"
        facts, _ = running.status()
        assert re.fullmatch(r"healthy, checked \d+[smhd]( \d+[smhd])? ago: ok", facts["health"])

        unhealthy = dict(healthy, status="unhealthy", failing_streak=3, output="refused\n")
        running.write_health(json.dumps(unhealthy))
        facts, _ = running.status()
        assert facts["health"].startswith("unhealthy, checked "), facts
        assert facts["health"].endswith(", 3 failing in a row: refused"), facts

        # A file caught halfway through its writing is no verdict.
        running.write_health(json.dumps(healthy)[:20])
        assert running.ps_row()[4] == "-"
        assert running.ps_json()["health"] is None
        assert running.status()[0]["health"] == "-"
    finally:
        running.project.run(["rm", "-f", running.health_file])
    assert running.ps_json()["health"] is None


# What real checks find, every second: a passing one, a failing one that counts at once
# and is only reported, and a failing one inside its start period.
REAL_CHECKS = {
    "healthy": 'command = ["true"]\ninterval = "1s"\n',
    "unhealthy": 'command = ["false"]\ninterval = "1s"\nretries = 1\non_unhealthy = "none"\n',
    "starting": 'command = ["false"]\ninterval = "1s"\nstart_period = "1h"\n',
}


@pytest.mark.parametrize("verdict", sorted(REAL_CHECKS))
def test_real_health_checks_show_in_ps_and_status(
    sandbox: SandboxHost, user_dir: Path, verdict: str
) -> None:
    with started(sandbox, user_dir, REAL_CHECKS[verdict]) as running:
        project = running.project
        path = f"/proc/{sandbox.pid}/root{running.health_file}"

        def checked() -> dict[str, object] | None:
            # The health file the checker wrote, once it holds the verdict expected.
            try:
                document: dict[str, object] = json.loads(Path(path).read_text())
            except (FileNotFoundError, ValueError):
                return None
            return document if document["status"] == verdict else None

        written = wait_for(checked, 20.0, f"a {verdict} health file of {project.name}")
        assert running.ps_row()[4] == verdict
        assert running.ps_json()["health"] == verdict
        facts, _ = running.status()
        assert facts["health"].startswith(f"{verdict}, checked "), (facts, written)
        if written["failing_streak"]:
            assert f", {written['failing_streak']} failing in a row" in facts["health"], facts


# -- status ---------------------------------------------------------------------------


def test_status_agrees_with_systemd_and_shows_the_journal(running: Running) -> None:
    project = running.project
    # The journal's last lines as journalctl shows them, waited for until the manager's
    # "Started" message is in (the journal is written asynchronously).
    journal = ["journalctl", "--user", "-u", project.unit, "-n", "10", "-o", "short-iso"]

    def agreeing() -> list[str] | None:
        _, log = running.status()
        direct = project.run(journal).stdout.splitlines()
        started = any(f"Started {project.unit}" in line for line in log)
        return log if started and log == [line.strip() for line in direct] else None

    log = wait_for(agreeing, JOURNAL_TIMEOUT, "`sdpod status` to show the unit's journal")
    assert 0 < len(log) <= 10, log
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in log), log

    facts, _ = running.status()
    shown = running.show("MainPID", "MemoryCurrent", "CPUUsageNSec", "TasksCurrent", "NRestarts")
    assert facts["unit"] == project.unit
    assert re.fullmatch(
        r"active \(running\) since .+ \(\d+[smhd]( \d+[smhd])? ago\)", facts["state"]
    )
    assert facts["main PID"] == shown["MainPID"]
    assert facts["restarts"] == shown["NRestarts"] == "0"
    # systemctl shows a counter systemd does not account as "[not set]"; on this
    # machine's cgroup tree without controllers that is memory and tasks.
    for label, prop in (("memory", "MemoryCurrent"), ("tasks", "TasksCurrent")):
        unset = shown[prop] == "[not set]"
        assert (facts[label] == "not accounted") == unset, (facts, shown)
    if shown["CPUUsageNSec"] == "[not set]":
        assert facts["CPU time"] == "not accounted"
    else:
        assert re.fullmatch(r"\d+\.\d{3}s|\d+[mhd] \d+[smh]", facts["CPU time"]), facts
    assert facts["ports"] == f"127.0.0.1:{project.port}:80/tcp"
    assert facts["image"] == f"oci:{project.directory}/image:latest"
    assert facts["health"] == "-"


def kill_main_process(running: Running) -> dict[str, str]:
    """kill -9 the container's init and wait for systemd to restart it; its new state."""
    before = running.show("MainPID", "NRestarts")
    kill = running.project.run(["kill", "-9", before["MainPID"]])
    assert kill.returncode == 0, ok(kill)

    def restarted() -> dict[str, str] | None:
        state = running.show("ActiveState", "SubState", "MainPID", "NRestarts")
        fresh = state["MainPID"] not in ("0", before["MainPID"])
        return state if state["SubState"] == "running" and fresh else None

    return wait_for(restarted, RESTART_TIMEOUT, f"{running.project.unit} to run again")


def test_a_killed_container_shows_its_restart(running: Running) -> None:
    project = running.project
    killed = time.time()
    after = kill_main_process(running)

    facts, _ = running.status()
    assert facts["restarts"] == after["NRestarts"] == "1", (facts, after)
    assert facts["main PID"] == after["MainPID"]
    wait_for(
        lambda: any("restart counter is at 1" in line for line in running.status()[1]) or None,
        JOURNAL_TIMEOUT,
        "systemd's restart message among the log lines of `sdpod status`",
    )

    data = running.ps_json()
    assert (data["state"], data["sub_state"]) == ("active", "running")
    # The uptime counts from the restart, not from `up`.
    uptime = data["uptime"]
    assert isinstance(uptime, int) and 0 <= uptime <= time.time() - killed, uptime
    fetch(project.url)


def test_an_unknown_name_is_refused_listing_the_known_containers(running: Running) -> None:
    project = running.project
    missing = f"no-such-{secrets.token_hex(3)}"
    for verb in ("status", "logs"):
        result = project.sdpod(verb, missing)
        assert result.returncode == 1, ok(result)
        assert "Traceback" not in result.stderr, ok(result)
        error = result.stderr.splitlines()[0]
        assert error.startswith("error: failed to "), ok(result)
        assert repr(missing) in error and "no such container" in error, ok(result)
        known = error.split("known containers: ", 1)[1].split(", ")
        assert project.name in known, ok(result)


# -- logs -----------------------------------------------------------------------------


def test_logs_shows_the_units_journal(running: Running) -> None:
    project = running.project
    # busybox httpd -v logs each request on stderr, which the unit's journal collects.
    fetch(project.url)
    direct = ["journalctl", "--user", "-u", project.unit, "-n", "5"]

    def agreeing() -> Completed | None:
        result = project.sdpod("logs", project.name, "-n", "5")
        served = "response:200" in result.stdout
        return result if served and result.stdout == project.run(direct).stdout else None

    result = wait_for(agreeing, JOURNAL_TIMEOUT, "`sdpod logs` to show the unit's journal")
    assert result.returncode == 0, ok(result)
    assert 0 < len(result.stdout.splitlines()) <= 5


def test_logs_follow_streams_as_journalctl_and_ends_on_ctrl_c(running: Running) -> None:
    project = running.project
    sandbox = project.sandbox
    # The shell prints its pid and execs sdpod: with exec all the way, journalctl keeps it.
    script = 'echo $$; exec sdpod logs "$0" -f -n 0'
    command = sandbox.user_command(["sh", "-c", script, project.name], project.user)
    follower = subprocess.Popen(
        command, env=sandbox.user_env(project.user), stdout=subprocess.PIPE, text=False
    )
    assert follower.stdout is not None
    try:
        lines = Lines(follower.stdout.fileno())
        pid = int(lines.until(lambda line: line.strip().isdigit(), FOLLOW_TIMEOUT))
        wait_for(
            lambda: project.comm(pid) == "journalctl" or None,
            FOLLOW_TIMEOUT,
            f"process {pid} to be journalctl",
        )
        # -n 0: nothing old is shown; what systemd logs about a crash now streams in.
        kill_main_process(running)
        lines.until(lambda line: "Main process exited, code=killed" in line, FOLLOW_TIMEOUT)
        # And the container's own output, from the restarted container.
        fetch(project.url)
        lines.until(lambda line: "response:200" in line, FOLLOW_TIMEOUT)

        interrupt = project.run(["kill", "-INT", str(pid)])
        assert interrupt.returncode == 0, ok(interrupt)
        follower.wait(timeout=FOLLOW_TIMEOUT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


class Lines:
    """Lines read from a pipe as they come, each wait bounded by a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(fd, selectors.EVENT_READ)

    def until(self, wanted: Callable[[str], bool], timeout: float) -> str:
        """The first line that `wanted(line)` accepts; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                line = raw.decode(errors="replace")
                seen.append(line)
                if wanted(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise AssertionError(f"timed out after {timeout:.0f} s; lines seen: {seen}")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"the output ended; lines seen: {seen}")
            self.buffer += chunk
