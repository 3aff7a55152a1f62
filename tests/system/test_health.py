"""Readiness, health checks, start order and `sdpod exec`, against a real systemd user manager.

Each test drives the installed `sdpod` as the sandbox's test user and checks what
systemd, the journal and the health file say. Checks run every second, so that a test
sees several of them; gates (files the test creates in a container's volume) decide when
a check or an application may succeed, so that "not before" can be observed without
timing anything.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sandbox import SandboxHost
from support.mkimage import File

from system.helpers import SDPOD_TIMEOUT, Project, fetch, free_port, wait_for

pytestmark = pytest.mark.system

START_TIMEOUT = 30.0
HTTPD = '["httpd", "-f", "-p", "80", "-h", "/www"]'
WGET = '["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]'
# Passes once the test has created www/open, and the page is served.
GATED_WGET = '["sh", "-c", "test -e /www/open && wget -q -O /dev/null http://127.0.0.1/"]'
# An image user other than root, for an application that drops its privileges.
APP_USER = [
    File("etc/passwd", b"root:x:0:0:root:/:/bin/sh\napp:x:1000:1000:app:/:/bin/sh\n"),
    File("etc/group", b"root:x:0:\napp:x:1000:\n"),
]

MakeProject = Callable[..., Project]
Completed = subprocess.CompletedProcess[str]


def unique(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


def ok(result: Completed) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@pytest.fixture
def make_project(sandbox: SandboxHost, user_dir: Path) -> Iterator[MakeProject]:
    """Projects of the test user whose TOML the test writes; brought down at teardown."""
    made: list[Project] = []

    def make(name: str, toml: str, port: int = 0, extra: Sequence[File] = ()) -> Project:
        directory = user_dir / name
        directory.mkdir()
        project = Project.create(sandbox, sandbox.user, directory, name, port, extra=extra)
        project.rewrite(toml)
        made.append(project)
        return project

    yield make
    for project in made:
        project.down()


def health_toml(name: str, port: int, check: str, **health: str) -> str:
    """One health-gated web server, checked every second."""
    settings = {"interval": '"1s"', "timeout": '"2s"', "retries": "2", **health}
    lines = [f"{key} = {value}" for key, value in settings.items()]
    return (
        f'[container]\nname = "{name}"\nimage = "oci:image:latest"\ncommand = {HTTPD}\n'
        f'ports = ["127.0.0.1:{port}:80"]\nvolumes = ["./www:/www"]\nready = "healthy"\n\n'
        f"[container.health]\ncommand = {check}\n" + "\n".join(lines) + "\n"
    )


# -- what the tests read ----------------------------------------------------------------------


def show(project: Project, unit: str, *props: str) -> dict[str, str]:
    out = project.run(["systemctl", "--user", "show", "-p", ",".join(props), unit])
    assert out.returncode == 0, ok(out)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def health_of(project: Project, name: str) -> dict[str, object] | None:
    """The container's health file, read through the sandbox's own /run."""
    uid = project.sandbox.uid(project.user)
    path = Path(f"/proc/{project.sandbox.pid}/root/run/user/{uid}/sdpod/{name}.health")
    try:
        document: dict[str, object] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return document


def start_up(project: Project) -> subprocess.Popen[str]:
    """`sdpod up` in the background, for a test that looks while it waits."""
    sandbox = project.sandbox
    command = sandbox.user_command(["sdpod", "up", project.toml], project.user, project.directory)
    return subprocess.Popen(
        command,
        env=sandbox.user_env(project.user),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(up: subprocess.Popen[str]) -> Completed:
    stdout, stderr = up.communicate(timeout=SDPOD_TIMEOUT)
    return subprocess.CompletedProcess(up.args, up.returncode, stdout, stderr)


def open_gate(project: Project) -> float:
    gate = project.www / "open"
    gate.touch()
    return time.time()


def checked_while_starting(project: Project, name: str) -> dict[str, object]:
    """Wait for a first, failing, check: the health file exists and says starting."""

    def probe() -> dict[str, object] | None:
        health = health_of(project, name)
        return health if health and health["status"] == "starting" else None

    return wait_for(probe, START_TIMEOUT, f"a first check of {name}")


def journal_of(project: Project, since: float, *units: str) -> list[str]:
    argv = ["journalctl", "--user", "-o", "cat", "--no-pager", f"--since=@{since:.6f}"]
    for unit in units:
        argv += ["-u", unit]
    return project.run(argv).stdout.splitlines()


def logged(project: Project, since: float, name: str, text: str) -> list[str]:
    """The health service's journal lines, once one of them starts with `text`."""

    # By the checker's identifier rather than its unit: journald takes a line's unit from
    # the writer's cgroup, and the checker has often exited by the time it looks.
    argv = ["journalctl", "--user", "-o", "cat", "--no-pager", f"--since=@{since:.6f}"]

    def probe() -> list[str] | None:
        lines = project.run([*argv, "-t", f"{name}-health"]).stdout.splitlines()
        return lines if any(line.startswith(text) for line in lines) else None

    return wait_for(probe, START_TIMEOUT, f"{text!r} in the health service's journal")


def health_units(name: str) -> tuple[str, str, str]:
    stem = f"sdpod-{name}"
    return f"{stem}.service", f"{stem}-health.service", f"{stem}-health.timer"


# -- 0. a checked container that is not health-gated still shows its health ---------------


def test_health_of_a_started_container_reaches_its_status_text(make_project: MakeProject) -> None:
    # Its checker is not the unit's main process: without NotifyAccess=all systemd drops
    # the checker's STATUS= and `systemctl status` keeps saying what the launcher said.
    name = unique("started")
    port = free_port()
    toml = health_toml(name, port, WGET).replace('ready = "healthy"\n', "")
    project = make_project(name, toml, port)

    up = project.up()
    assert up.returncode == 0, ok(up)

    def healthy_status() -> dict[str, str] | None:
        state = show(project, project.unit, "StatusText")
        return state if state["StatusText"] == "healthy" else None

    wait_for(healthy_status, 20, f"{project.unit} to say healthy")
    down = project.down()
    assert down.returncode == 0, ok(down)


# -- 1. up returns once healthy ---------------------------------------------------------------


def test_up_returns_only_once_the_first_check_passes(make_project: MakeProject) -> None:
    name = unique("gated")
    port = free_port()
    # Failures in the start period do not count: the container waits for the gate.
    project = make_project(name, health_toml(name, port, GATED_WGET, start_period='"60s"'), port)

    up = start_up(project)
    try:
        checked_while_starting(project, name)
        assert up.poll() is None, "sdpod up returned before the first check passed"
        state = show(project, project.unit, "ActiveState", "StatusText")
        assert state == {"ActiveState": "activating", "StatusText": "starting"}
        open_gate(project)
    finally:
        result = finish(up)
    assert result.returncode == 0, ok(result)
    assert f"{name}: running as {project.unit}" in result.stdout

    health = health_of(project, name)
    assert health is not None
    assert (health["status"], health["failing_streak"]) == ("healthy", 0)
    state = show(project, project.unit, "ActiveState", "StatusText")
    assert state == {"ActiveState": "active", "StatusText": "healthy"}
    assert fetch(project.url) == project.index_html

    down = project.down()
    assert down.returncode == 0, ok(down)
    left = [unit for unit in project.sdpod_units() if name in unit]
    assert left == [], left
    assert project.runtime_files() == []


# -- 2. dependency order ----------------------------------------------------------------------


def two_containers_toml(db: str, web: str, port: int) -> str:
    """`web` waits for `db` to be healthy; `db`'s own `ready` is left at its default."""
    return (
        f'[containers.db]\nname = "{db}"\nimage = "oci:image:latest"\ncommand = {HTTPD}\n'
        'volumes = ["./www:/www"]\n'
        f'health = {{ command = {GATED_WGET}, interval = "1s", start_period = "60s" }}\n\n'
        f'[containers.web]\nname = "{web}"\nimage = "oci:image:latest"\ncommand = {HTTPD}\n'
        f'ports = ["127.0.0.1:{port}:80"]\nvolumes = ["./www:/www:ro"]\n'
        f'depends_on = {{ {json.dumps(db)} = "healthy" }}\n'
    )


def test_a_dependent_starts_after_its_dependency_is_healthy(make_project: MakeProject) -> None:
    db, web = unique("db"), unique("web")
    port = free_port()
    project = make_project(web, two_containers_toml(db, web, port), port)
    db_unit, web_unit = f"sdpod-{db}.service", f"sdpod-{web}.service"

    up = start_up(project)
    try:
        checked_while_starting(project, db)
        assert up.poll() is None
        assert show(project, db_unit, "ActiveState")["ActiveState"] == "activating"
        assert show(project, web_unit, "LoadState")["LoadState"] == "not-found"
        opened = open_gate(project)
    finally:
        result = finish(up)
    assert result.returncode == 0, ok(result)
    assert result.stdout.index(db) < result.stdout.index(web), result.stdout

    db_state = show(project, db_unit, "ActiveEnterTimestampMonotonic", "StatusText")
    web_state = show(project, web_unit, "InactiveExitTimestampMonotonic", "InactiveExitTimestamp")
    assert db_state["StatusText"] == "healthy"
    # The dependent's start began after the dependency became active, which a health-gated
    # unit does on its first passing check, and after the test opened the gate.
    assert int(web_state["InactiveExitTimestampMonotonic"]) >= int(
        db_state["ActiveEnterTimestampMonotonic"]
    )
    # The timestamp is shown to the second.
    web_started = project.run(["date", "-d", web_state["InactiveExitTimestamp"], "+%s"])
    assert int(web_started.stdout) >= int(opened), (web_state, opened)

    down = project.down()
    assert down.returncode == 0, ok(down)
    assert down.stdout.index(web) < down.stdout.index(db), down.stdout


# -- 3. a failing check acted on --------------------------------------------------------------


def served_and_healthy(project: Project, name: str) -> dict[str, str]:
    up = project.up()
    assert up.returncode == 0, ok(up)
    state = show(project, project.unit, "ActiveState", "StatusText", "MainPID", "InvocationID")
    assert (state["ActiveState"], state["StatusText"]) == ("active", "healthy"), state
    return state


def break_the_page(project: Project) -> float:
    since = time.time()
    (project.www / "index.html").rename(project.www / "index.html.away")
    return since


def test_an_unhealthy_container_is_restarted(make_project: MakeProject) -> None:
    """systemd counts only its own automatic restarts in NRestarts; a restart that the
    checker asks for is seen as a new invocation with a new main process instead."""
    name = unique("restart")
    port = free_port()
    project = make_project(name, health_toml(name, port, WGET, on_unhealthy='"restart"'), port)
    before = served_and_healthy(project, name)

    since = break_the_page(project)

    def restarted() -> dict[str, str] | None:
        state = show(project, project.unit, "InvocationID", "MainPID")
        return state if state["InvocationID"] not in ("", before["InvocationID"]) else None

    after = wait_for(restarted, START_TIMEOUT, f"{project.unit} to be restarted")
    assert after["MainPID"] != before["MainPID"]
    said = logged(project, since, name, f"restarting {project.unit}")
    assert "unhealthy (2 failures: wget: server returned error: HTTP/1.1 404 Not Found)" in said
    assert f"restarting {project.unit}, as its health check's on_unhealthy asks" in said

    # Fixed, the new start becomes healthy again, and `up` has nothing to do.
    (project.www / "index.html.away").rename(project.www / "index.html")

    def healthy() -> str | None:
        state = show(project, project.unit, "ActiveState", "StatusText")
        return "yes" if state == {"ActiveState": "active", "StatusText": "healthy"} else None

    wait_for(healthy, START_TIMEOUT, f"{project.unit} to be healthy again")
    assert fetch(project.url) == project.index_html


def test_an_unhealthy_container_is_stopped(make_project: MakeProject) -> None:
    name = unique("stop")
    port = free_port()
    project = make_project(name, health_toml(name, port, WGET, on_unhealthy='"stop"'), port)
    served_and_healthy(project, name)

    since = break_the_page(project)

    def stopped() -> str | None:
        state = show(project, project.unit, "ActiveState", "LoadState")
        return (
            "yes"
            if state["LoadState"] == "not-found"
            or state["ActiveState"]
            in (
                "inactive",
                "failed",
            )
            else None
        )

    wait_for(stopped, START_TIMEOUT, f"{project.unit} to be stopped")
    said = logged(project, since, name, f"stopping {project.unit}")
    assert f"stopping {project.unit}, as its health check's on_unhealthy asks" in said
    # The timer stopped with the unit it is bound to.
    timer = f"sdpod-{name}-health.timer"
    assert show(project, timer, "ActiveState")["ActiveState"] == "inactive"


def test_an_unhealthy_container_with_no_action_is_only_reported(make_project: MakeProject) -> None:
    name = unique("none")
    port = free_port()
    project = make_project(name, health_toml(name, port, WGET, on_unhealthy='"none"'), port)
    before = served_and_healthy(project, name)

    break_the_page(project)

    def reported() -> dict[str, str] | None:
        state = show(project, project.unit, "ActiveState", "StatusText", "InvocationID")
        return state if state["StatusText"].startswith("unhealthy (2 failures: ") else None

    state = wait_for(reported, START_TIMEOUT, f"{project.unit} to be reported unhealthy")
    assert (state["ActiveState"], state["InvocationID"]) == ("active", before["InvocationID"])
    health = health_of(project, name)
    assert health is not None and health["status"] == "unhealthy", health
    assert "404 Not Found" in str(health["output"])


# -- 4. passing checks are quiet ---------------------------------------------------------------


def test_passing_checks_leave_the_journal_flat(make_project: MakeProject) -> None:
    name = unique("quiet")
    port = free_port()
    project = make_project(name, health_toml(name, port, WGET), port)
    since = time.time()
    served_and_healthy(project, name)
    units = health_units(name)

    # Each check rewrites the health file's checked_at.
    seen: set[object] = set()

    def checks(count: int) -> Callable[[], int | None]:
        def probe() -> int | None:
            health = health_of(project, name)
            if health is not None and health["status"] == "healthy":
                seen.add(health["checked_at"])
            return len(seen) if len(seen) >= count else None

        return probe

    # The baseline after two checks, by when the journal holds what the start logged.
    wait_for(checks(2), START_TIMEOUT, "two passing checks")
    baseline = journal_of(project, since, *units)
    wait_for(checks(7), START_TIMEOUT, "five more passing checks")
    assert journal_of(project, since, *units) == baseline


# -- 5. sdpod exec --------------------------------------------------------------------------------


def test_exec_runs_commands_inside_the_container(make_project: MakeProject) -> None:
    name = unique("exec")
    toml = (
        f'[container]\nname = "{name}"\nimage = "oci:image:latest"\ncommand = {HTTPD}\n'
        'volumes = ["./www:/www:ro"]\nenv = { GREETING = "hello" }\n'
    )
    project = make_project(name, toml)
    up = project.up()
    assert up.returncode == 0, ok(up)

    probe = 'echo "$(hostname) $(id -u) $GREETING $$ $(grep ^0:: /proc/self/cgroup)"'
    seen = project.sdpod("exec", name, "sh", "-c", probe)
    assert seen.returncode == 0, ok(seen)
    hostname, uid, greeting, pid, cgroup = seen.stdout.split()
    assert (hostname, uid, greeting, cgroup) == (name, "0", "hello", "0::/")
    assert int(pid) < 100  # the container's own PID namespace, not the host's

    assert project.sdpod("exec", name, "sh", "-c", "exit 3").returncode == 3
    assert project.sdpod("exec", name, "cat", "/www/index.html").stdout == project.index_html

    missing = project.sdpod("exec", name, "no-such-command")
    assert missing.returncode == 1
    assert "'no-such-command' not found in the container" in missing.stderr

    down = project.down()
    assert down.returncode == 0, ok(down)
    stopped = project.sdpod("exec", name, "true")
    assert stopped.returncode == 1
    assert f"error: failed to find container {name}" in stopped.stderr, ok(stopped)


# -- 6. the application says when it is ready ------------------------------------------------


# busybox has no sd_notify client, but its logger sends a datagram to /dev/log, and systemd
# reads each line of a notify message as an assignment. The message goes out as the image's
# `app` user once the gate is open. systemd 252 finds a notification's unit through the
# sender's cgroup, which it cannot once the sender has been reaped: the shell is exec'd into
# sleep, which never reaps the logger, whose zombie stays in the container's cgroup.
NOTIFY_COMMAND = (
    "busybox ln -s /run/sdpod/notify /dev/log; "
    "while [ ! -e /www/open ]; do sleep 0.1; done; "
    "busybox start-stop-daemon -S -p /nonexistent -c app -x /bin/busybox -- "
    "logger \"$(printf 'listening\\nREADY=1')\" & exec sleep 600"
)


def test_notify_waits_for_the_applications_ready(make_project: MakeProject) -> None:
    name = unique("notify")
    toml = (
        f'[container]\nname = "{name}"\nimage = "oci:image:latest"\n'
        f"command = {json.dumps(['sh', '-c', NOTIFY_COMMAND])}\n"
        'volumes = ["./www:/www"]\nready = "notify"\n'
    )
    project = make_project(name, toml, extra=APP_USER)

    up = start_up(project)
    try:
        # The unit's main process is the launcher at first: the container can be entered
        # once the launcher has written its init's PID, which a bounded poll waits for.
        def entered() -> Completed | None:
            listing = project.sdpod("exec", name, "ls", "-l", "/run/sdpod/notify")
            return listing if listing.returncode == 0 else None

        socket = wait_for(entered, START_TIMEOUT, f"{name} to be entered")
        assert socket.stdout.startswith("s"), ok(socket)
        assert show(project, project.unit, "ActiveState")["ActiveState"] == "activating"
        assert up.poll() is None, "sdpod up returned before the application was ready"
        open_gate(project)
    finally:
        result = finish(up)
    assert result.returncode == 0, ok(result)
    assert show(project, project.unit, "ActiveState")["ActiveState"] == "active"
