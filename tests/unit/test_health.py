"""Health state, readiness annotations, start order and the launcher's readiness: pure."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from sdpod import paths
from sdpod.config.model import (
    Container,
    Dependency,
    DependencyCondition,
    HealthCheck,
    LayoutImage,
    Project,
    ReadyWhen,
    UnhealthyAction,
)
from sdpod.errors import RuntimeSetupError
from sdpod.health import annotate, readiness, state
from sdpod.health.check import status_text
from sdpod.health.state import HealthState, Outcome, Status
from sdpod.runtime import exec
from sdpod.runtime.readiness import give_notify_socket, ready_message

IMAGE = LayoutImage(Path("/img"), "latest")
CHECK = HealthCheck(("wget", "-q", "http://127.0.0.1/"), interval=2.0, timeout=1.5, retries=3)


def container(name: str, *depends: Dependency, **fields: Any) -> Container:
    return Container(name, IMAGE, depends_on=depends, **fields)


def failed(at: float = 10.0, start_period: bool = False) -> Outcome:
    return Outcome(False, "refused", at, start_period)


def passed(at: float = 10.0) -> Outcome:
    return Outcome(True, "", at)


# -- the state's transitions ----------------------------------------------------------------


def test_no_state_yet_is_starting_and_a_pass_makes_it_healthy() -> None:
    assert state.advance(None, passed(5.0), retries=3) == HealthState(Status.HEALTHY, 0, 5.0, "")


def test_failures_count_up_to_retries_then_unhealthy() -> None:
    current = HealthState(Status.HEALTHY)
    for streak in (1, 2):
        current = state.advance(current, failed(), retries=3)
        assert (current.status, current.failing_streak) == (Status.HEALTHY, streak)
    current = state.advance(current, failed(), retries=3)
    assert (current.status, current.failing_streak) == (Status.UNHEALTHY, 3)
    assert current.output == "refused"


def test_a_pass_resets_the_streak() -> None:
    unhealthy = HealthState(Status.UNHEALTHY, 7)
    assert state.advance(unhealthy, passed(), retries=3).failing_streak == 0


def test_failures_in_the_start_period_do_not_count_before_a_first_pass() -> None:
    current = state.advance(None, failed(start_period=True), retries=1)
    assert (current.status, current.failing_streak) == (Status.STARTING, 0)


def test_failures_in_the_start_period_count_once_it_was_healthy() -> None:
    current = state.advance(HealthState(Status.HEALTHY), failed(start_period=True), retries=1)
    assert (current.status, current.failing_streak) == (Status.UNHEALTHY, 1)


def test_counted_failures_while_starting_make_it_unhealthy() -> None:
    current = state.advance(None, failed(), retries=2)
    assert (current.status, current.failing_streak) == (Status.STARTING, 1)
    assert state.advance(current, failed(), retries=2).status is Status.UNHEALTHY


# -- the state file -------------------------------------------------------------------------


def test_the_file_has_exactly_the_agreed_shape(tmp_path: Path) -> None:
    path = tmp_path / "web.health"
    state.write(path, HealthState(Status.UNHEALTHY, 2, 1700000000.5, "no route"))
    assert json.loads(path.read_text()) == {
        "status": "unhealthy",
        "failing_streak": 2,
        "checked_at": 1700000000.5,
        "output": "no route",
    }
    assert state.read(path) == HealthState(Status.UNHEALTHY, 2, 1700000000.5, "no route")


@pytest.mark.parametrize("text", ["", "{", '{"status": "fine"}', "[]", '{"status": "healthy"}'])
def test_a_missing_or_broken_file_reads_as_none(tmp_path: Path, text: str) -> None:
    path = tmp_path / "web.health"
    assert state.read(path) is None
    path.write_text(text)
    assert state.read(path) is None


def test_output_keeps_the_last_4_kib() -> None:
    output = b"a" * 5000 + b"end"
    kept = state.tail(output)
    assert len(kept) == 4096
    assert kept.endswith("end")


def test_status_text_names_the_streak_and_the_first_line() -> None:
    unhealthy = HealthState(Status.UNHEALTHY, 3, 1.0, "connection refused\n(exit status 1)")
    assert status_text(unhealthy) == "unhealthy (3 failures: connection refused)"
    assert status_text(HealthState(Status.UNHEALTHY, 1)) == "unhealthy (1 failure: no output)"
    assert status_text(HealthState(Status.HEALTHY)) == "healthy"


# -- what the bundle carries -----------------------------------------------------------------


def test_health_and_readiness_survive_the_trip_through_the_spec() -> None:
    check = HealthCheck(("true",), 0.5, 2.0, 4, 30.0, UnhealthyAction.STOP)
    spec = {
        "annotations": annotate.annotate(container("web", health=check, ready=ReadyWhen.HEALTHY))
    }
    assert annotate.check_of(spec) == check
    assert annotate.readiness_of(spec) is ReadyWhen.HEALTHY


def test_a_spec_without_them_is_started_and_unchecked() -> None:
    assert annotate.readiness_of({}) is ReadyWhen.STARTED
    assert annotate.check_of({"annotations": annotate.annotate(container("web"))}) is None


# -- order and effective readiness ----------------------------------------------------------


def test_start_order_puts_dependencies_first_and_keeps_the_files_order_otherwise() -> None:
    web = container("web", Dependency("db", DependencyCondition.HEALTHY), Dependency("cache"))
    cache = container("cache", Dependency("db"))
    db = container("db", health=CHECK)
    other = container("other")
    project = Project(Path("/p.toml"), (web, cache, other, db))

    names = [c.name for c in readiness.start_order(project)]
    assert names == ["other", "db", "cache", "web"]
    assert [c.name for c in readiness.stop_order(project)] == ["web", "cache", "db", "other"]


def test_a_container_waited_for_as_healthy_is_started_as_healthy() -> None:
    db = container("db", health=CHECK, ready=ReadyWhen.STARTED)
    web = container("web", Dependency("db", DependencyCondition.HEALTHY))
    started = readiness.start_order(Project(Path("/p.toml"), (web, db)))
    assert [(c.name, c.ready) for c in started] == [
        ("db", ReadyWhen.HEALTHY),
        ("web", ReadyWhen.STARTED),
    ]


def test_a_cycle_that_slipped_through_still_starts_everything_once() -> None:
    a, b = container("a", Dependency("b")), container("b", Dependency("a"))
    assert [c.name for c in readiness.start_order(Project(Path("/p.toml"), (a, b)))] == ["a", "b"]


# -- what the launcher tells systemd ---------------------------------------------------------


def spec_for(ready: ReadyWhen, check: HealthCheck | None = None) -> dict[str, Any]:
    annotations = annotate.annotate(container("web", ready=ready, health=check))
    return {
        "annotations": annotations,
        "process": {"env": ["PATH=/bin", "NOTIFY_SOCKET=/stale"], "user": {"uid": 0}},
        "mounts": [],
    }


def test_started_sends_ready_with_the_pid() -> None:
    message = ready_message(spec_for(ReadyWhen.STARTED), 42, "web")
    assert message.splitlines() == ["MAINPID=42", "READY=1", "STATUS=container web is running"]
    checked = ready_message(spec_for(ReadyWhen.STARTED, CHECK), 42, "web")
    assert checked.splitlines() == ["MAINPID=42", "READY=1", "STATUS=starting"]


def test_notify_and_healthy_leave_ready_to_others() -> None:
    assert ready_message(spec_for(ReadyWhen.NOTIFY), 42, "web") == "MAINPID=42"
    healthy = ready_message(spec_for(ReadyWhen.HEALTHY, CHECK), 42, "web")
    assert healthy.splitlines() == ["MAINPID=42", "STATUS=starting"]


@pytest.fixture
def manager_socket(tmp_path: Path) -> Any:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        os.chmod(path, 0o755)  # as a user manager makes its socket
        yield path


def test_notify_binds_the_managers_socket_and_lets_every_user_send(manager_socket: Path) -> None:
    spec = spec_for(ReadyWhen.NOTIFY)
    give_notify_socket(spec, {"NOTIFY_SOCKET": str(manager_socket)})

    assert [m["destination"] for m in spec["mounts"]] == ["/run/sdpod", "/run/sdpod/notify"]
    assert spec["mounts"][1]["source"] == str(manager_socket)
    assert spec["process"]["env"] == ["PATH=/bin", "NOTIFY_SOCKET=/run/sdpod/notify"]
    assert stat.S_IMODE(manager_socket.stat().st_mode) == 0o757


def test_other_readiness_leaves_the_spec_alone(manager_socket: Path) -> None:
    spec = spec_for(ReadyWhen.HEALTHY, CHECK)
    give_notify_socket(spec, {"NOTIFY_SOCKET": str(manager_socket)})
    assert spec == spec_for(ReadyWhen.HEALTHY, CHECK)
    assert stat.S_IMODE(manager_socket.stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("environ", "reason"),
    [({}, "NOTIFY_SOCKET is not set"), ({"NOTIFY_SOCKET": "@abstract"}, "cannot be mounted")],
)
def test_notify_without_a_socket_to_mount_is_refused(environ: dict[str, str], reason: str) -> None:
    with pytest.raises(RuntimeSetupError, match=reason):
        give_notify_socket(spec_for(ReadyWhen.NOTIFY), environ)


# -- exec's small parts ---------------------------------------------------------------------


def test_exit_status_is_what_a_shell_reports() -> None:
    assert exec.exit_status(3 << 8) == 3
    assert exec.exit_status(9) == 128 + 9


def test_a_container_without_a_bundle_or_pid_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "data_dir", lambda: tmp_path)
    monkeypatch.setattr(paths, "runtime_dir", lambda: tmp_path / "run")
    with pytest.raises(RuntimeSetupError, match="failed to find container ghost"):
        exec.find_running("ghost")

    (tmp_path / "containers/web").mkdir(parents=True)
    (tmp_path / "containers/web/config.json").write_text("{}")
    with pytest.raises(RuntimeSetupError, match="container web: it is not running"):
        exec.find_running("web")

    # A PID file naming a process outside the container's unit is not trusted.
    (tmp_path / "run").mkdir()
    (tmp_path / "run/web.pid").write_text(f"{os.getpid()}\n")
    with pytest.raises(RuntimeSetupError, match="it is not running"):
        exec.find_running("web")


def test_one_failure_is_said_in_the_singular() -> None:
    assert state.failures(1) == "1 failure"
    assert state.failures(3) == "3 failures"
