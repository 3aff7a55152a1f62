"""`sdpod run` and `sdpod exec -it`: containers in the foreground, at a real terminal.

The test is the user: a pty (tests/support/terminal.py) whose slave is the controlling
terminal of the installed `sdpod`, run as the test user (or root) of the sandbox host.
It types, resizes the window and reads what the container's shell shows; systemd, the
kernel and the files on disk say what is left afterwards.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sandbox import USER_PATH, SandboxHost
from support.terminal import PROMPT, Terminal, exercise_shell

from system.helpers import Project, build_image, chown_tree, free_port, wait_for

pytestmark = pytest.mark.system

IMAGE = "oci:image:latest"
SIZE = (30, 90)
STOP_TIMEOUT = 30.0
# The user-mode network's helper, as `up` chooses it on this machine.
NETWORK_HELPERS = ("slirp4netns", "pasta")


def unique(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def workdir(sandbox: SandboxHost, user_dir: Path) -> Iterator[Path]:
    """The test user's directory with the busybox image at `image`."""
    build_image(user_dir / "image")
    chown_tree(user_dir, sandbox.user)
    yield user_dir


def container(sandbox: SandboxHost, workdir: Path, name: str, user: str | None = None) -> Project:
    """What helpers.Project inspects of a container `name` of `user` (default: the test
    user); nothing of a TOML file."""
    user = user or sandbox.user
    return Project(sandbox, user, str(workdir), "", workdir / "www", name, free_port())


def at_terminal(sandbox: SandboxHost, workdir: Path, argv: Sequence[str]) -> Terminal:
    """`argv` as the test user in `workdir`, on a terminal of SIZE."""
    command = sandbox.user_command(list(argv), cwd=str(workdir))
    return Terminal.start(command, env=sandbox.user_env(), size=SIZE)


def scope_state(project: Project) -> dict[str, str]:
    argv = ["systemctl", "--user", "show", "-p", "ActiveState,ControlGroup,LoadState"]
    out = project.run([*argv, f"sdpod-{project.name}.scope"])
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def assert_nothing_left(project: Project) -> None:
    """No scope, process, mount, container directory or runtime file of the container."""
    assert f"sdpod-{project.name}.scope" not in project.sdpod_units()
    helpers = ("tini", *NETWORK_HELPERS)
    leftovers = [comm for _, comm in project.processes() if comm in helpers]
    assert leftovers == []
    assert project.mounts_of_container() == []
    assert not project.container_dir.exists()
    assert project.runtime_files() == []


def wait_for_command(project: Project, sdpod: subprocess.Popen[bytes], command: str) -> None:
    """Wait until `command` runs in the container's leaf of its scope: the container has
    started. Fail with sdpod's words if it ends first."""

    def running() -> bool | None:
        if sdpod.poll() is not None:
            assert sdpod.stderr is not None
            raise AssertionError(f"sdpod exited {sdpod.returncode}: {sdpod.stderr.read()!r}")
        group = scope_state(project).get("ControlGroup")
        procs = project.read(f"/sys/fs/cgroup{group}/container/cgroup.procs") if group else None
        pids = (procs or "").split()
        return any(project.comm(int(pid)) == command for pid in pids) or None

    wait_for(running, STOP_TIMEOUT, f"{command} to run in sdpod-{project.name}.scope")


def command_pid(launcher: subprocess.Popen[bytes]) -> int:
    """The host PID of the sdpod that `sandbox.user_command` runs: nsenter's child."""

    def child() -> int | None:
        path = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
        found = path.read_text().split()
        if not found:
            return None
        pid = int(found[0])
        # setpriv execs sdpod's Python in place: wait until it has.
        return pid if "sdpod" in Path(f"/proc/{pid}/cmdline").read_bytes().decode() else None

    return wait_for(child, STOP_TIMEOUT, "sdpod to start")


# -- sdpod run -it --------------------------------------------------------------------------


def test_run_gives_a_shell_a_terminal_with_job_control_in_a_scope(
    sandbox: SandboxHost, workdir: Path
) -> None:
    name = unique("shell")
    project = container(sandbox, workdir, name)
    argv = ["sdpod", "run", "-it", "--rm", "--name", name, IMAGE, "sh"]
    with at_terminal(sandbox, workdir, argv) as term:
        exercise_shell(term, SIZE)

        # The container runs in its scope, split into leaves as a service is; sdpod
        # itself stays outside, attached.
        state = scope_state(project)
        assert state["ActiveState"] == "active", state
        group = state["ControlGroup"]
        assert [project.comm(pid) for pid in project.cgroup_pids(group, "container")]
        helpers = [project.comm(pid) for pid in project.cgroup_pids(group, "supervisor")]
        assert set(helpers) & set(NETWORK_HELPERS), helpers
        assert project.container_dir.is_dir()

        term.send("exit 7\r")
        assert term.wait() == 7, term.transcript()
    assert_nothing_left(project)


def test_a_shell_killed_by_a_signal_exits_128_plus_the_signal(
    sandbox: SandboxHost, workdir: Path
) -> None:
    name = unique("killed")
    with at_terminal(
        sandbox, workdir, ["sdpod", "run", "-it", "--rm", "--name", name, IMAGE, "sh"]
    ) as term:
        term.expect(PROMPT)
        term.send("kill -9 $$\r")
        assert term.wait() == 128 + 9, term.transcript()
    assert_nothing_left(container(sandbox, workdir, name))


def test_run_as_root_gives_a_terminal_in_a_scope_of_the_system(
    sandbox: SandboxHost, workdir: Path
) -> None:
    name = unique("rootsh")
    argv = ["sdpod", "run", "-it", "--rm", "--name", name, IMAGE, "sh"]
    command = sandbox.root_command(argv, cwd=str(workdir))
    env = {"HOME": "/root", "PATH": USER_PATH, "LANG": "C.UTF-8"}
    with Terminal.start(command, env=env, size=SIZE) as term:
        exercise_shell(term, SIZE)
        units = sandbox.run_as_root(
            ["systemctl", "show", "-p", "ActiveState", f"sdpod-{name}.scope"]
        )
        assert units.stdout.strip() == "ActiveState=active"
        term.send("exit 5\r")
        assert term.wait() == 5, term.transcript()

    units = sandbox.run_as_root(["systemctl", "list-units", "--all", "--plain", "sdpod-*"])
    assert f"sdpod-{name}.scope" not in units.stdout
    assert not Path(f"/var/lib/sdpod/containers/{name}").exists()


# -- sdpod run without a terminal -------------------------------------------------------------


def test_input_is_given_only_with_i(sandbox: SandboxHost, workdir: Path) -> None:
    def run(*options: str) -> subprocess.CompletedProcess[str]:
        argv = ["sdpod", "run", "--rm", *options, IMAGE, "sh", "-c", "cat; echo end; exit 4"]
        return sandbox.run_as_user(argv, check=False, cwd=str(workdir), input="typed\n")

    given = run("-i")
    assert (given.returncode, given.stdout) == (4, "typed\nend\n"), given.stderr
    withheld = run()
    assert (withheld.returncode, withheld.stdout) == (4, "end\n"), withheld.stderr


def test_a_signal_to_sdpod_reaches_the_container_and_its_files_stay_until_rm(
    sandbox: SandboxHost, workdir: Path
) -> None:
    name = unique("term")
    project = container(sandbox, workdir, name)
    argv = ["sdpod", "run", "--name", name, "-e", "GREETING=hello", IMAGE]
    script = 'echo "$GREETING"; exec sleep 100'
    command = sandbox.user_command([*argv, "sh", "-c", script], cwd=str(workdir))
    with subprocess.Popen(
        command, env=sandbox.user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as sdpod:
        assert sdpod.stdout is not None
        assert sdpod.stdout.readline() == b"hello\n"
        os.kill(command_pid(sdpod), signal.SIGTERM)
        assert sdpod.wait(STOP_TIMEOUT) == 128 + signal.SIGTERM

    # Without --rm the container's files stay, and its scope goes.
    assert f"sdpod-{name}.scope" not in project.sdpod_units()
    assert project.container_dir.is_dir()
    removed = project.sdpod("rm", name)
    assert removed.returncode == 0, removed.stderr
    assert_nothing_left(project)


def test_stopping_the_scope_stops_the_container(sandbox: SandboxHost, workdir: Path) -> None:
    name = unique("stop")
    project = container(sandbox, workdir, name)
    argv = ["sdpod", "run", "--rm", "--name", name, IMAGE, "sleep", "100"]
    command = sandbox.user_command(argv, cwd=str(workdir))
    with subprocess.Popen(command, env=sandbox.user_env(), stderr=subprocess.PIPE) as sdpod:
        wait_for_command(project, sdpod, "sleep")
        stop = project.run(["systemctl", "--user", "stop", f"sdpod-{name}.scope"])
        assert stop.returncode == 0, stop.stderr
        assert sdpod.wait(STOP_TIMEOUT) == 128 + signal.SIGTERM, sdpod.communicate()
    assert_nothing_left(project)


def test_a_name_in_use_is_refused(sandbox: SandboxHost, workdir: Path) -> None:
    name = unique("taken")
    project = container(sandbox, workdir, name)
    first = project.sdpod("run", "--name", name, IMAGE, "true")
    assert first.returncode == 0, first.stderr
    second = project.sdpod("run", "--name", name, IMAGE, "true")
    assert second.returncode == 1
    assert f"error: failed to run container {name}: a container of that name exists" in (
        second.stderr
    )
    assert f"`sdpod rm {name}`" in second.stderr
    assert project.sdpod("rm", name).returncode == 0
    assert_nothing_left(project)


def test_a_running_container_of_run_takes_exec_and_is_kept_from_rm(
    sandbox: SandboxHost, workdir: Path
) -> None:
    name = unique("busy")
    project = container(sandbox, workdir, name)
    argv = ["sdpod", "run", "--name", name, IMAGE, "sleep", "100"]
    command = sandbox.user_command(argv, cwd=str(workdir))
    with subprocess.Popen(command, env=sandbox.user_env(), stderr=subprocess.PIPE) as sdpod:

        def cmdline_of_pid_1() -> str | None:
            out = project.sdpod("exec", name, "cat", "/proc/1/cmdline")
            return out.stdout if out.returncode == 0 else None

        seen = wait_for(cmdline_of_pid_1, STOP_TIMEOUT, f"sdpod exec into {name}")
        assert seen.split("\0")[:4] == ["/dev/init", "--", "sleep", "100"], seen

        refused = project.sdpod("rm", name)
        assert refused.returncode == 1
        assert f"it is running as sdpod-{name}.scope" in refused.stderr
        assert "end its `sdpod run`" in refused.stderr
        forced = project.sdpod("rm", "--force", name)
        assert forced.returncode == 0, forced.stderr
        assert sdpod.wait(STOP_TIMEOUT) == 128 + signal.SIGTERM
    assert_nothing_left(project)


# -- sdpod exec -it -------------------------------------------------------------------------


def test_exec_gives_a_shell_in_a_running_container_a_terminal(
    sandbox: SandboxHost, workdir: Path
) -> None:
    name = unique("execit")
    project = Project.create(sandbox, sandbox.user, workdir / "web", name, free_port())
    up = project.up()
    assert up.returncode == 0, up.stderr
    try:
        with at_terminal(sandbox, workdir, ["sdpod", "exec", "-it", name, "sh"]) as term:
            exercise_shell(term, SIZE)
            term.send("exit 3\r")
            assert term.wait() == 3, term.transcript()
        with at_terminal(sandbox, workdir, ["sdpod", "exec", "-it", name, "sh"]) as term:
            term.expect(PROMPT)
            term.send("kill -9 $$\r")
            assert term.wait() == 128 + 9, term.transcript()
        # The container runs on.
        assert project.show()["ActiveState"] == "active"
    finally:
        down = project.down()
    assert down.returncode == 0, down.stderr
