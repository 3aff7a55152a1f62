"""First light: `sdpod up`, `ps` and `down` of the busybox web example, end to end.

Each test drives the installed `sdpod` as a user of the sandbox host and checks what
systemd, the kernel and the network say, never what sdpod says about itself alone. Each
test publishes its own free port on 127.0.0.1, but one that runs examples/web.toml as
shipped, on 8080.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sandbox import CHECKOUT_MOUNT, SandboxHost
from support.mkimage import File

from system.helpers import (
    EXAMPLES,
    HTTPD,
    USER_BASELINE,
    Project,
    chown_tree,
    container_toml,
    fetch,
    free_port,
    home_dir,
    refuses,
    wait_for,
)

pytestmark = pytest.mark.system

JOURNAL_TIMEOUT = 10.0
RESTART_TIMEOUT = 20.0

MakeProject = Callable[..., Project]
Completed = subprocess.CompletedProcess[str]


@pytest.fixture
def make_project(sandbox: SandboxHost, user_dir: Path) -> Iterator[MakeProject]:
    """Create projects of the test user in `user_dir`; bring each down at teardown.

    The teardown only keeps a failed test from leaking a running container into the
    next; every test checks its own `down`.
    """
    made: list[Project] = []

    def make(name: str, port: int | None = None, restart: str = "always") -> Project:
        directory = user_dir / name
        directory.mkdir()
        port = free_port() if port is None else port
        project = Project.create(sandbox, sandbox.user, directory, name, port, restart=restart)
        made.append(project)
        return project

    yield make
    for project in made:
        project.down()


def unique(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


def ok(result: Completed) -> str:
    """A failure message that shows a command's whole output."""
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


# -- what a running container and a removed one look like --------------------------------


def assert_running(project: Project) -> dict[str, str]:
    """The page is served, the unit runs, the container and its helper sit in their leaves."""
    assert fetch(project.url) == project.index_html

    state = project.show()
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    main_pid = int(state["MainPID"])
    assert main_pid > 0, state

    # The cgroup tree inside the sandbox, as the user reads it.
    group = state["ControlGroup"]
    assert group.endswith(f"/{project.unit}"), state
    assert main_pid in project.cgroup_pids(group, "container")
    helpers = [project.comm(pid) for pid in project.cgroup_pids(group, "supervisor")]
    assert "slirp4netns" in helpers, helpers
    return state


def assert_logged_request(project: Project, since: float) -> None:
    """busybox httpd -v logs `response:200` per request on stderr, which the unit collects.

    Only messages since `since` count: a unit of the same name may have run before.
    """
    fetch(project.url)
    wait_for(
        lambda: "response:200" in project.journal(since) or None,
        JOURNAL_TIMEOUT,
        f"httpd's response:200 in the journal of {project.unit}",
    )


def assert_listed(project: Project, image: str) -> None:
    ps = project.sdpod("ps")
    assert ps.returncode == 0, ok(ps)
    rows = [line.split() for line in ps.stdout.splitlines()]
    ours = [row for row in rows if row and row[0] == project.name]
    assert len(ours) == 1, ps.stdout
    row = ours[0]
    assert project.unit in row, ps.stdout
    assert "active" in row, ps.stdout
    assert any(f"127.0.0.1:{project.port}:80" in cell for cell in row), ps.stdout
    assert any(image in cell for cell in row), ps.stdout


def assert_nothing_left(project: Project, *, port_free: bool = True) -> None:
    """No unit, process, mount, file or listening port of the container remains."""
    state = project.show()
    assert state["LoadState"] == "not-found" or state["ActiveState"] == "inactive", state

    others = [(pid, comm) for pid, comm in project.processes() if comm not in USER_BASELINE]
    assert others == [], f"processes of {project.user} left behind: {others}"
    assert project.mounts_of_container() == []
    assert not project.container_dir.exists(), sorted(os.listdir(project.container_dir))
    assert project.runtime_files() == []
    if port_free:
        assert refuses(project.port), f"127.0.0.1:{project.port} still accepts connections"


def assert_clean_failure(result: Completed, project: Project, units_before: list[str]) -> str:
    """Exit 1 with a message, no traceback, no unit and no container directory made."""
    assert result.returncode == 1, ok(result)
    assert "Traceback" not in result.stderr + result.stdout, ok(result)
    assert "error:" in result.stderr, ok(result)
    assert project.unit not in project.sdpod_units()
    assert project.sdpod_units() == units_before
    assert not project.container_dir.exists()
    return result.stderr


def errors_of(stderr: str) -> str:
    """stderr from the first `error:` line on: warnings before it do not count."""
    start = stderr.find("error:")
    return stderr[start:] if start >= 0 else ""


# -- 1. up, look, down --------------------------------------------------------------------


def test_up_serves_supervises_logs_lists_and_down_removes(make_project: MakeProject) -> None:
    project = make_project("web")

    started = time.time()
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert_running(project)
    assert_logged_request(project, started)
    assert_listed(project, f"{project.directory}/image")
    # What assert_nothing_left looks for is there while the container runs.
    assert project.mounts_of_container() != []
    assert "slirp4netns" in [comm for _, comm in project.processes()]
    assert project.container_dir.is_dir()
    assert project.runtime_files() != []

    down_cleanly(project)


def test_shipped_example_on_8080(sandbox: SandboxHost) -> None:
    assert (EXAMPLES / "web-image" / "index.json").exists(), "run scripts/install to build it"
    assert refuses(8080), "another program already listens on 127.0.0.1:8080"
    examples = f"{CHECKOUT_MOUNT}/examples"
    project = Project(
        sandbox, sandbox.user, examples, f"{examples}/web.toml", EXAMPLES / "www", "web", 8080
    )

    try:
        started = time.time()
        up = project.up()
        assert up.returncode == 0, ok(up)
        assert_running(project)
        assert_logged_request(project, started)
        assert_listed(project, f"{examples}/web-image")
    finally:
        down_cleanly(project)


# -- 2. systemd restarts a killed container --------------------------------------------


def down_cleanly(project: Project) -> None:
    """`sdpod down` succeeds and leaves nothing of the container behind."""
    down = project.down()
    assert down.returncode == 0, ok(down)
    assert_nothing_left(project)


def wait_for_restart(project: Project, before: dict[str, str]) -> dict[str, str]:
    """The unit's state once it runs again under a main process other than `before`'s."""

    def restarted() -> dict[str, str] | None:
        state = project.show()
        running = (state["ActiveState"], state["SubState"]) == ("active", "running")
        fresh = state["MainPID"] not in ("0", before["MainPID"])
        return state if running and fresh else None

    return wait_for(restarted, RESTART_TIMEOUT, f"{project.unit} to run again")


def supervisor_pids(project: Project, state: dict[str, str], command: str) -> list[int]:
    """The processes named `command` in the unit's supervisor leaf."""
    leaf = project.cgroup_pids(state["ControlGroup"], "supervisor")
    return [pid for pid in leaf if project.comm(pid) == command]


def test_killed_container_is_restarted(make_project: MakeProject) -> None:
    project = make_project(unique("restart"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    before = assert_running(project)

    kill = project.run(["kill", "-9", before["MainPID"]])
    assert kill.returncode == 0, ok(kill)

    after = wait_for_restart(project, before)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
    assert_running(project)

    down_cleanly(project)


def test_a_killed_network_helper_restarts_the_container(make_project: MakeProject) -> None:
    # Without its network helper the container's ports are dead: the unit must not stay
    # "active" with them, it must restart and publish them again.
    project = make_project(unique("netkill"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    before = assert_running(project)
    helpers = supervisor_pids(project, before, "slirp4netns")
    assert helpers, "no slirp4netns in the supervisor leaf"

    kill = project.run(["kill", "-9", str(helpers[0])])
    assert kill.returncode == 0, ok(kill)

    wait_for_restart(project, before)
    assert fetch(project.url) == project.index_html

    down_cleanly(project)


def test_a_killed_log_relay_restarts_a_container_that_writes(make_project: MakeProject) -> None:
    # Without the relay the container's output would go nowhere: with SIGPIPE's default
    # action it stops at its next line instead, and its restart brings a new relay.
    project = make_project(unique("relay"))
    ticking = ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]
    project.rewrite(container_toml(project.name, project.port, command=ticking))
    up = project.up()
    assert up.returncode == 0, ok(up)
    before = project.show()
    relays = supervisor_pids(project, before, "cat")
    assert relays, "no cat relay in the supervisor leaf"

    kill = project.run(["kill", "-9", str(relays[0])])
    assert kill.returncode == 0, ok(kill)

    wait_for_restart(project, before)
    down = project.down()
    assert down.returncode == 0, ok(down)


def test_stopping_the_unit_is_not_a_failure(make_project: MakeProject) -> None:
    # tini exits 143 after passing SIGTERM on; without SuccessExitStatus every stop,
    # `systemctl --user stop` included, would leave the unit failed.
    project = make_project(unique("stop"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert_running(project)

    stop = project.run(["systemctl", "--user", "stop", project.unit])
    assert stop.returncode == 0, ok(stop)
    state = project.show()
    assert state["ActiveState"] != "failed", state
    assert state["LoadState"] == "not-found" or state["ActiveState"] == "inactive", state

    down_cleanly(project)


# -- 3. up is idempotent ----------------------------------------------------------------


def test_second_up_changes_nothing(make_project: MakeProject) -> None:
    project = make_project(unique("twice"))
    first = project.up()
    assert first.returncode == 0, ok(first)
    before = assert_running(project)
    files = bundle_files(project.container_dir)

    second = project.up()
    assert second.returncode == 0, ok(second)
    assert "already running" in second.stdout + second.stderr, ok(second)
    after = assert_running(project)
    assert after["MainPID"] == before["MainPID"]
    assert after["NRestarts"] == before["NRestarts"]
    assert bundle_files(project.container_dir) == files

    down_cleanly(project)


def bundle_files(directory: Path) -> dict[str, int]:
    """The modification times of the bundle's own files: config.json and etc/*."""
    paths = [directory / "config.json", *sorted((directory / "etc").iterdir())]
    return {str(path.relative_to(directory)): path.stat().st_mtime_ns for path in paths}


# -- 4. bad input -----------------------------------------------------------------------

# container_toml's lines: 1 [container], 2 name, 3 image, 4 command, 5 ports, 6 volumes,
# 7 restart. Each case: how to spoil the file, the line and the key the error must name.
BAD_INPUTS = {
    "malformed": (lambda t: t.replace('"always"\n', '"always\n'), 7, None),
    "unknown-key": (lambda t: t + 'colour = "blue"\n', 8, "container.colour"),
    "port-out-of-range": (
        lambda t: re.sub(r"127\.0\.0\.1:\d+:80", "127.0.0.1:70000:80", t),
        5,
        "container.ports",
    ),
    "image-missing": (
        lambda t: t.replace("oci:image:latest", "oci:no-such-layout:latest"),
        3,
        "container.image",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_and_starts_nothing(make_project: MakeProject, case: str) -> None:
    spoil, line, key = BAD_INPUTS[case]
    project = make_project(unique("bad"))
    project.rewrite(spoil(container_toml(project.name, project.port)))
    units_before = project.sdpod_units()

    stderr = assert_clean_failure(project.up(), project, units_before)
    assert f"{project.toml}:{line}:" in stderr, stderr
    if key is not None:
        assert key in stderr, stderr


# -- 5. a port someone else holds, or one only root may bind ----------------------------

UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


def test_taken_port_is_named_and_nothing_is_left(make_project: MakeProject) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        project = make_project(unique("taken"), port)
        units_before = project.sdpod_units()

        stderr = assert_clean_failure(project.up(), project, units_before)
        assert f"127.0.0.1:{port}" in errors_of(stderr), stderr
        assert_nothing_left(project, port_free=False)


def test_a_low_port_is_refused_naming_the_sysctl(make_project: MakeProject) -> None:
    first_unprivileged = int(Path(UNPRIVILEGED_PORT_START).read_text())
    if first_unprivileged <= 1:
        pytest.skip(f"{UNPRIVILEGED_PORT_START} lets every user bind every port here")
    port = first_unprivileged - 1
    project = make_project(unique("lowport"), port)
    units_before = project.sdpod_units()

    stderr = assert_clean_failure(project.up(), project, units_before)
    error = errors_of(stderr)
    assert f"127.0.0.1:{port}/tcp" in error and "net.ipv4.ip_unprivileged_port_start" in error
    assert_nothing_left(project)


# -- 6. a user without subordinate ids ------------------------------------------------


@pytest.fixture
def nosub_dir(sandbox: SandboxHost) -> Iterator[Path]:
    assert sandbox.nosub_user is not None
    with home_dir(sandbox, sandbox.nosub_user, unique("first-light")) as path:
        yield path


def test_user_without_subids_runs_root_owned_image(sandbox: SandboxHost, nosub_dir: Path) -> None:
    assert sandbox.nosub_user is not None
    project = Project.create(sandbox, sandbox.nosub_user, nosub_dir, unique("nosub"), free_port())

    try:
        up = project.up()
        assert up.returncode == 0, ok(up)
        warning = [line for line in up.stderr.splitlines() if "/etc/subuid" in line]
        assert warning, ok(up)
        # A warning, not an error, that says what will not work: files not owned by root.
        assert warning[0].lower().startswith("warning") and "root" in warning[0], warning
        assert_running(project)
    finally:
        down_cleanly(project)


def test_user_without_subids_is_told_why_an_image_cannot_be_used(
    sandbox: SandboxHost, nosub_dir: Path
) -> None:
    assert sandbox.nosub_user is not None
    owned = File("www/owned-by-www", b"not root's\n", uid=33, gid=33)
    project = Project.create(
        sandbox, sandbox.nosub_user, nosub_dir, unique("nosub"), free_port(), extra=[owned]
    )
    units_before = project.sdpod_units()

    try:
        stderr = assert_clean_failure(project.up(), project, units_before)
    finally:
        project.down()
    errors = errors_of(stderr)
    assert re.search(r"\b33\b", errors), stderr
    assert "/etc/subuid" in errors, stderr


# -- 7. a container that fails as it starts --------------------------------------------

# A container whose command does not exist, and one whose launcher cannot even build its
# root (a directory bind-mounted onto the image's file /bin/busybox fails with ENOTDIR):
# how to spoil the file. Either way `up` must fail naming the unit, and the next `up` of
# the fixed file must work.
FAILING_STARTS = [
    pytest.param(
        lambda t: t.replace(json.dumps(list(HTTPD)), '["no-such-command"]'),
        id="command-not-found",
    ),
    pytest.param(
        lambda t: t.replace("./www:/www:ro", "./www:/bin/busybox:ro"),
        id="cannot-start",
    ),
]


@pytest.mark.parametrize("spoil", FAILING_STARTS)
def test_container_failing_at_start_is_reported_and_can_be_fixed(
    make_project: MakeProject, spoil: Callable[[str], str]
) -> None:
    project = make_project(unique("failing"), restart="no")
    fixed = container_toml(project.name, project.port, restart="no")
    project.rewrite(spoil(fixed))

    up = project.up()
    assert up.returncode == 1, ok(up)
    assert "Traceback" not in up.stderr, ok(up)
    assert project.unit in errors_of(up.stderr), ok(up)
    assert project.show()["ActiveState"] != "active"

    project.rewrite(fixed)
    again = project.up()
    assert again.returncode == 0, ok(again)
    assert_running(project)

    down_cleanly(project)


def test_container_exiting_at_once_ends_failed_and_can_be_fixed(
    make_project: MakeProject,
) -> None:
    # The command starts, so `up` reports it started, as docker and podman do; systemd
    # then records the exit, `ps` shows it, and the next `up` replaces the failed unit.
    project = make_project(unique("exits"), restart="no")
    fixed = container_toml(project.name, project.port, restart="no")
    project.rewrite(fixed.replace(json.dumps(list(HTTPD)), '["false"]'))

    up = project.up()
    assert "Traceback" not in up.stderr, ok(up)
    wait_for(
        lambda: True if project.show()["ActiveState"] == "failed" else None,
        RESTART_TIMEOUT,
        "the unit to fail",
    )
    listed = project.sdpod("ps")
    assert re.search(rf"^{re.escape(project.name)}\s.*failed", listed.stdout, re.M), ok(listed)

    project.rewrite(fixed)
    again = project.up()
    assert again.returncode == 0, ok(again)
    assert_running(project)

    down_cleanly(project)


# -- 8. whose container it is ------------------------------------------------------------


def test_another_file_cannot_take_over_a_container(
    make_project: MakeProject, user_dir: Path
) -> None:
    first = make_project(unique("owned"))
    up = first.up()
    assert up.returncode == 0, ok(up)
    before = assert_running(first)

    # A second file, elsewhere, with a container of the same name.
    other = user_dir / "other.toml"
    text = Path(first.toml).read_text().replace(f"{first.port}:80", f"{free_port()}:80")
    text = text.replace("oci:image", f"oci:{first.directory}/image")
    other.write_text(text.replace("./www", f"{first.directory}/www"))
    chown_tree(other, first.user)
    stolen = first.run(["sdpod", "up", str(other)], timeout=60)
    assert stolen.returncode == 1, ok(stolen)
    assert first.toml in stolen.stderr and "already has a container" in stolen.stderr, ok(stolen)

    left = first.run(["sdpod", "down", str(other)], timeout=60)
    assert left.returncode == 0, ok(left)
    assert f"belongs to {first.toml}" in left.stdout, ok(left)
    assert first.show()["MainPID"] == before["MainPID"]

    down = first.down()
    assert down.returncode == 0, ok(down)
    assert_nothing_left(first)


def test_down_works_once_the_files_the_toml_names_are_gone(make_project: MakeProject) -> None:
    project = make_project(unique("gone"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert_running(project)

    removed = project.run(["rm", "-r", str(project.www), str(Path(project.directory) / "image")])
    assert removed.returncode == 0, ok(removed)
    down_cleanly(project)

    again = project.down()
    assert again.returncode == 0, ok(again)
    assert "not running" in again.stdout, ok(again)


def test_rm_removes_a_stopped_container_whose_file_is_gone(make_project: MakeProject) -> None:
    project = make_project(unique("orphan"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert_running(project)

    refused = project.sdpod("rm", project.name)
    assert refused.returncode == 1, ok(refused)
    assert "is running" in refused.stderr, ok(refused)

    # The unit stops without sdpod, and its file goes: only rm can remove it now.
    stop = project.run(["systemctl", "--user", "stop", project.unit])
    assert stop.returncode == 0, ok(stop)
    Path(project.toml).unlink()
    removed = project.sdpod("rm", project.name)
    assert removed.returncode == 0, ok(removed)
    assert not project.container_dir.exists()
    assert project.runtime_files() == []

    unknown = project.sdpod("rm", project.name)
    assert unknown.returncode == 1 and "no such container" in unknown.stderr, ok(unknown)


def test_rm_force_stops_and_removes_a_running_container(make_project: MakeProject) -> None:
    project = make_project(unique("forced"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert_running(project)
    Path(project.toml).rename(Path(project.toml).with_name("renamed.toml"))

    removed = project.sdpod("rm", "--force", project.name)
    assert removed.returncode == 0, ok(removed)
    assert project.show()["LoadState"] == "not-found"
    assert not project.container_dir.exists()
    assert refuses(project.port)


def test_a_failed_edit_keeps_the_running_container(make_project: MakeProject) -> None:
    project = make_project(unique("keep"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    before = assert_running(project)

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        text = Path(project.toml).read_text()
        project.rewrite(text.replace(f"{project.port}:80", f"{taken}:80"))
        edit = project.up()
    assert edit.returncode == 1 and f"127.0.0.1:{taken}" in edit.stderr, ok(edit)
    assert project.show()["MainPID"] == before["MainPID"]
    assert fetch(project.url) == project.index_html

    project.rewrite(text)
    down_cleanly(project)
