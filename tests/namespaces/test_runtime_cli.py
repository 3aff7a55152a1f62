"""`sdpod runtime` as a tool written for runc drives it: create and start apart, state,
kill, delete, run, exec, list, hooks, namespaces joined by path, and the log file.

Root is needed for the environment of tests/namespaces/peers.py; the rootless test runs
as `sdpod-test`, whose subordinate ids the sandbox set-up grants.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.probe import PROBE_PATH, ProbeUnavailable, build, parse
from support.terminal import PROMPT, Terminal

from namespaces import peers
from sdpod.runtime import cgroup, terminal
from sdpod.runtime.default_spec import default_spec

pytestmark = [
    pytest.mark.namespaces,
    pytest.mark.skipif(os.geteuid() != 0, reason="makes mount namespaces and cgroups: root"),
]


class Runtime:
    """`sdpod runtime` with a state root and a bundle of its own, as one user."""

    def __init__(self, workspace: peers.Workspace, probe: Path, user: Any = None) -> None:
        self.workspace = workspace
        self.peer = peers.Peer("sdpod", user)
        self.probe = probe
        self.log = workspace.path / "container.log"
        self.ids: list[str] = []

    def bundle(self, name: str, command: str | None = None, **changes: Any) -> Path:
        """A bundle running `command` in sh (default: the probe), with `changes` to the
        spec's top level, and process.terminal off."""
        user = self.peer.user
        spec = default_spec(user is not None, *((user.pw_uid, user.pw_gid) if user else ()))
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["sh", "-c", command] if command else [PROBE_PATH]
        spec["root"]["readonly"] = False
        spec.update(changes)
        return self.workspace.bundle(name, spec, self.probe)

    def __call__(
        self, *verb: str, bundle: Path | None = None, detached: bool = False
    ) -> subprocess.CompletedProcess[str]:
        if verb and verb[0] in ("create", "run"):
            self.ids.append(verb[-1])
        return peers.run(
            self.peer,
            self.workspace,
            bundle or self.workspace.path,
            list(verb),
            output=self.log if detached else None,
            keep_unit=True,
        )

    def state(self, container_id: str) -> dict[str, Any]:
        done = self("state", container_id)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def clean(self) -> None:
        for container_id in self.ids:
            self("delete", "--force", container_id)
        peers.remove_unit(self.workspace)


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build(tmp_path_factory.mktemp("probe"))
    except ProbeUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def runtime(probe_binary: Path) -> Iterator[Runtime]:
    workspace = peers.Workspace(None)
    runtime = Runtime(workspace, probe_binary)
    try:
        yield runtime
    finally:
        runtime.clean()
        workspace.remove()


def wait_for(condition: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


def test_create_leaves_the_process_waiting_until_start(runtime: Runtime) -> None:
    bundle = runtime.bundle("split", "echo started > /started; exec sleep 600")
    pid_file = runtime.workspace.path / "pid"
    done = runtime("create", "--pid-file", str(pid_file), "split", bundle=bundle, detached=True)
    assert done.returncode == 0, runtime.log.read_text()

    pid = int(pid_file.read_text())
    assert pid_file.read_text() == str(pid)  # the bare number, as runc writes it
    state = runtime.state("split")
    assert (state["status"], state["pid"], state["id"]) == ("created", pid, "split")
    assert state["bundle"] == str(bundle) and state["ociVersion"]
    # The create command has exited; its process lives on, reparented, and waits.
    assert os.path.exists(f"/proc/{pid}")
    assert not (bundle / "rootfs/started").exists()

    assert runtime("start", "split").returncode == 0
    wait_for(lambda: (bundle / "rootfs/started").exists(), "the command's start")
    assert runtime.state("split")["status"] == "running"
    again = runtime("start", "split")
    assert again.returncode == 1 and "it is running" in again.stderr


def test_kill_takes_a_bare_signal_name_and_delete_needs_a_stopped_container(
    runtime: Runtime,
) -> None:
    bundle = runtime.bundle("kill", "trap 'exit 0' TERM; while true; do sleep 0.05; done")
    assert runtime("run", "--detach", "kill", bundle=bundle, detached=True).returncode == 0
    assert runtime.state("kill")["status"] == "running"

    refused = runtime("delete", "kill")
    assert refused.returncode == 1 and "it is running" in refused.stderr
    assert runtime("kill", "kill", "TERM").returncode == 0
    wait_for(lambda: runtime.state("kill")["status"] == "stopped", "the stop")
    assert runtime.state("kill")["pid"] == 0
    gone = runtime("kill", "kill", "KILL")
    assert gone.returncode == 1 and "it is stopped" in gone.stderr

    assert runtime("delete", "kill").returncode == 0
    assert not (runtime.workspace.path / "state-sdpod/kill").exists()
    assert runtime("state", "kill").returncode == 1


@pytest.mark.parametrize("signal_name", ["SIGKILL", "9", "kill"])
def test_delete_force_and_kill_all_end_every_process(runtime: Runtime, signal_name: str) -> None:
    bundle = runtime.bundle("force", "sleep 600 & sleep 600 & wait")
    assert runtime("run", "-d", "force", bundle=bundle, detached=True).returncode == 0
    record = json.loads((runtime.workspace.path / "state-sdpod/force/state.json").read_text())
    # Where the runtime saw cgroup2 (its own /sys/fs/cgroup), as this process sees it.
    mount = cgroup.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    assert mount is not None and record["cgroup_created"]
    leaf = mount / Path(record["cgroup"]).relative_to("/sys/fs/cgroup")
    assert len((leaf / "cgroup.procs").read_text().split()) == 3

    assert runtime("kill", "--all", "force", signal_name).returncode == 0
    wait_for(lambda: runtime.state("force")["status"] == "stopped", "the stop")
    assert runtime("delete", "force").returncode == 0
    assert not leaf.exists()


def test_run_returns_the_exit_status(runtime: Runtime) -> None:
    bundle = runtime.bundle("status", "exit 3")
    assert runtime("run", "status3", bundle=bundle).returncode == 3
    # The init of a PID namespace cannot be killed from inside: from outside, then,
    # while `run` waits for it.
    bundle = runtime.bundle("signal", "exec sleep 600")
    results: list[subprocess.CompletedProcess[str]] = []
    waiting = threading.Thread(
        target=lambda: results.append(runtime("run", "signal9", bundle=bundle))
    )
    waiting.start()
    wait_for(lambda: runtime("state", "signal9").returncode == 0, "the container's start")
    wait_for(lambda: runtime.state("signal9")["status"] == "running", "the container's start")
    assert runtime("kill", "signal9", "KILL").returncode == 0
    waiting.join(timeout=30)
    assert results[0].returncode == 128 + 9
    # run deletes what it made.
    assert runtime("list", "-q").stdout == ""


def test_exec_joins_the_running_container(runtime: Runtime) -> None:
    bundle = runtime.bundle("exec", "exec sleep 600", hostname="exec-host")
    assert runtime("run", "-d", "exec", bundle=bundle, detached=True).returncode == 0

    done = runtime("exec", "exec", "sh", "-c", "echo $(hostname) $$ $GREETING; exit 4")
    assert done.returncode == 4
    hostname, pid = done.stdout.split()
    assert hostname == "exec-host"
    assert int(pid) < 50  # a number of the container's own PID namespace

    done = runtime(
        "exec", "--env", "GREETING=hi", "--cwd", "/bin", "exec", "sh", "-c", "echo $GREETING $(pwd)"
    )
    assert done.stdout.split() == ["hi", "/bin"]

    process = {"args": ["/probe"], "cwd": "/", "env": ["A=b"], "user": {"uid": 33, "gid": 33}}
    process_file = runtime.workspace.path / "process.json"
    process_file.write_text(json.dumps(process))
    seen = parse(runtime("exec", "--process", str(process_file), "exec").stdout)
    assert (seen["uid"], seen["env.A"], seen["cwd"]) == ("33 33 33", "b", "/")


def test_list_shows_each_container(runtime: Runtime) -> None:
    bundle = runtime.bundle("list", "exec sleep 600")
    for name in ("one", "two"):
        assert runtime("create", name, bundle=bundle, detached=True).returncode == 0
    assert runtime("list", "-q").stdout.split() == ["one", "two"]
    table = runtime("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert [line.split()[2] for line in table[1:]] == ["created", "created"]
    listed = json.loads(runtime("list", "--format", "json").stdout)
    assert {item["id"] for item in listed} == {"one", "two"}


def test_spec_prints_or_writes_the_default_configuration(runtime: Runtime) -> None:
    printed = json.loads(runtime("spec").stdout)
    assert printed == default_spec(False)
    assert (
        json.loads(runtime("spec", "--rootless").stdout)["linux"]["uidMappings"][0]["hostID"] == 0
    )
    directory = runtime.workspace.directory("spec")
    assert runtime("spec", "--bundle", str(directory)).returncode == 0
    assert json.loads((directory / "config.json").read_text()) == printed
    again = runtime("spec", "-b", str(directory))
    assert again.returncode == 1 and "exists" in again.stderr


# -- terminals: the console socket protocol of runc's callers ---------------------------------


class ConsoleSocket:
    """The caller's side of `--console-socket`, as containerd's shim and conmon have it:
    a listening unix socket, from which the terminal's master arrives as SCM_RIGHTS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)

    def receive(self) -> tuple[Terminal, str]:
        """The master of the terminal the next connection sends, and the slave's name."""
        connection, _ = self.sock.accept()
        with connection:
            master, name = terminal.receive_fd(connection)
        return Terminal(master), name

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def console(runtime: Runtime) -> Iterator[ConsoleSocket]:
    listening = ConsoleSocket(runtime.workspace.path / "console.sock")
    try:
        yield listening
    finally:
        listening.close()


def with_terminal(bundle: Path) -> Path:
    """`bundle` with process.terminal set, as `runc spec` writes it."""
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = True
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def talk_to_shell(term: Terminal) -> None:
    """The container's shell, on its own terminal: the first pty of its own devpts."""
    term.expect(PROMPT)
    term.send("tty; echo $((6*7))\r")
    term.expect(r"/dev/pts/0\r?\n")
    term.expect(r"\b42\r?\n")
    term.expect(PROMPT)
    term.send("exit 3\r")
    term.read_to_end()


@pytest.mark.parametrize("runtime_name", ["sdpod", "crun"])
def test_create_sends_the_terminal_to_the_console_socket(
    runtime: Runtime, console: ConsoleSocket, runtime_name: str
) -> None:
    if reason := peers.missing(runtime_name):
        pytest.skip(reason)
    peer = peers.Peer(runtime_name)
    bundle = with_terminal(runtime.bundle("tty", "exec sh"))

    def call(*verb: str) -> subprocess.CompletedProcess[str]:
        log = runtime.log
        return peers.run(peer, runtime.workspace, bundle, list(verb), output=log, keep_unit=True)

    created = call("create", "--console-socket", str(console.path), "tty")
    try:
        assert created.returncode == 0, runtime.log.read_text()
        # The master is on its way once `create` returns, before `start`: a caller
        # waits for it then, as containerd's shim does.
        # What comes with the descriptor differs: sdpod sends the slave's name, crun a space.
        term, _ = console.receive()
        with term:
            assert call("start", "tty").returncode == 0, runtime.log.read_text()
            talk_to_shell(term)
        wait_for(lambda: '"stopped"' in runtime_state(peer, runtime, "tty"), "the shell's end")
    finally:
        call("delete", "--force", "tty")


def runtime_state(peer: peers.Peer, runtime: Runtime, container_id: str) -> str:
    done = peers.run(peer, runtime.workspace, runtime.workspace.path, ["state", container_id])
    return done.stdout


def test_run_with_a_console_socket_exits_with_the_shell_status(
    runtime: Runtime, console: ConsoleSocket
) -> None:
    bundle = with_terminal(runtime.bundle("ttyrun", "exec sh"))
    results: list[subprocess.CompletedProcess[str]] = []
    running = threading.Thread(
        target=lambda: results.append(
            runtime("run", "--console-socket", str(console.path), "ttyrun", bundle=bundle)
        )
    )
    running.start()
    term, _ = console.receive()
    with term:
        talk_to_shell(term)
    running.join(timeout=60)
    assert results[0].returncode == 3, results[0].stderr


def test_exec_tty_sends_the_terminal_to_the_console_socket(
    runtime: Runtime, console: ConsoleSocket
) -> None:
    bundle = runtime.bundle("ttyexec", "exec sleep 600")
    assert runtime("run", "-d", "ttyexec", bundle=bundle, detached=True).returncode == 0
    results: list[subprocess.CompletedProcess[str]] = []
    socket_option = ("--console-socket", str(console.path))
    execing = threading.Thread(
        target=lambda: results.append(runtime("exec", "--tty", *socket_option, "ttyexec", "sh"))
    )
    execing.start()
    term, _ = console.receive()
    with term:
        talk_to_shell(term)
    execing.join(timeout=60)
    assert results[0].returncode == 3, results[0].stderr

    # A process file that asks for a terminal takes the same way.
    process = {"args": ["/bin/sh", "-c", "tty; exit 5"], "cwd": "/", "terminal": True}
    process_file = runtime.workspace.path / "process.json"
    process_file.write_text(json.dumps(process))
    results.clear()
    execing = threading.Thread(
        target=lambda: results.append(
            runtime("exec", "--process", str(process_file), *socket_option, "ttyexec")
        )
    )
    execing.start()
    term, _ = console.receive()
    with term:
        assert "/dev/pts/" in term.read_to_end()
    execing.join(timeout=60)
    assert results[0].returncode == 5, results[0].stderr


def test_a_terminal_needs_a_console_socket_and_the_other_way_round(
    runtime: Runtime, console: ConsoleSocket
) -> None:
    bundle = with_terminal(runtime.bundle("tty", "true"))
    done = runtime("create", "tty", bundle=bundle)
    assert done.returncode == 1 and "--console-socket" in done.stderr
    assert not (runtime.workspace.path / "state-sdpod/tty").exists()

    plain = runtime.bundle("plain", "exec sleep 600")
    done = runtime("create", "--console-socket", str(console.path), "plain", bundle=plain)
    assert done.returncode == 1 and "process.terminal" in done.stderr
    assert runtime("run", "-d", "plain", bundle=plain, detached=True).returncode == 0
    done = runtime("exec", "--tty", "plain", "true")
    assert done.returncode == 1 and "--console-socket" in done.stderr


def test_errors_reach_the_log_file_as_json(runtime: Runtime) -> None:
    log = runtime.workspace.path / "runtime.log"
    done = runtime("--log", str(log), "--log-format", "json", "start", "nonexistent")
    assert done.returncode == 1
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["level"] == "error" and "nonexistent" in line["msg"] and line["time"]


# -- hooks -------------------------------------------------------------------------------

HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)


def _recording_hook(kind: str, log: str) -> dict[str, Any]:
    script = f"printf '%s ' {kind} >> {log}; cat >> {log}; echo >> {log}"
    return {"path": "/bin/sh", "args": ["sh", "-c", script]}


def test_each_hook_gets_the_state_on_its_input(runtime: Runtime) -> None:
    host_log = runtime.workspace.path / "hooks.log"
    hooks = {}
    for kind in HOOK_KINDS:
        # startContainer runs in the container, after pivot_root: its log is there.
        log = "/hooks.log" if kind == "startContainer" else str(host_log)
        hooks[kind] = [_recording_hook(kind, log)]
    bundle = runtime.bundle("hooks", "exit 0", hooks=hooks)
    done = runtime("run", "hooked", bundle=bundle)
    assert done.returncode == 0, done.stderr

    lines = (
        host_log.read_text().splitlines() + (bundle / "rootfs/hooks.log").read_text().splitlines()
    )
    states = {}
    for line in lines:
        kind, _, text = line.partition(" ")
        states[kind] = json.loads(text)
    assert set(states) == set(HOOK_KINDS)
    for kind, state in states.items():
        assert state["id"] == "hooked" and state["bundle"] == str(bundle), kind
    assert states["createRuntime"]["status"] == "creating"
    assert states["startContainer"]["status"] == "created"
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"
    assert states["prestart"]["pid"] == states["poststart"]["pid"] > 0


def test_a_hook_that_reads_nothing_is_no_failure(runtime: Runtime) -> None:
    # More state than a pipe holds (64 KiB): the write meets the closed pipe.
    annotations = {"big": "x" * 300_000}
    hooks = {"createRuntime": [{"path": "/bin/true", "args": ["true"]}]}
    bundle = runtime.bundle("epipe", "exit 0", hooks=hooks, annotations=annotations)
    done = runtime("run", "epipe", bundle=bundle)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (
            {"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1},
            "did not finish within 1 s",
        ),
        ({"path": "/bin/sh", "args": ["sh", "-c", "echo no; exit 2"]}, "exit status 2: no"),
    ],
)
def test_a_failing_hook_fails_create_and_leaves_nothing(
    runtime: Runtime, hook: dict[str, Any], message: str
) -> None:
    bundle = runtime.bundle("failing", "exit 0", hooks={"prestart": [hook]})
    done = runtime("create", "failing", bundle=bundle)
    assert done.returncode == 1 and message in done.stderr
    assert not (runtime.workspace.path / "state-sdpod/failing").exists()
    assert runtime("list", "-q").stdout == ""


def test_a_failing_poststart_hook_is_a_warning(runtime: Runtime) -> None:
    hooks = {"poststart": [{"path": "/bin/false", "args": ["false"]}]}
    bundle = runtime.bundle("warned", "exit 5", hooks=hooks)
    done = runtime("run", "warned", bundle=bundle)
    assert done.returncode == 5
    assert "WARNING: failed to run the poststart hook /bin/false: exit status 1" in done.stderr


# -- namespaces joined by path -----------------------------------------------------------


@pytest.fixture
def holder() -> Iterator[int]:
    """A process in network, ipc and uts namespaces of its own, for bundles to join."""
    process = subprocess.Popen(["unshare", "--net", "--ipc", "--uts", "sleep", "600"])
    try:
        wait_for(
            lambda: (
                os.stat(f"/proc/{process.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
            ),
            "the holder's unshare",
        )
        yield process.pid
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("runtime_name", peers.RUNTIMES)
def test_namespaces_are_joined_by_path(runtime: Runtime, holder: int, runtime_name: str) -> None:
    reason = peers.missing(runtime_name)
    if reason:
        pytest.skip(reason)
    joined = ("network", "ipc", "uts")
    spec_namespaces = [{"type": kind} for kind in ("pid", "mount")]
    proc = {"network": "net", "ipc": "ipc", "uts": "uts"}
    spec_namespaces += [
        {"type": kind, "path": f"/proc/{holder}/ns/{proc[kind]}"} for kind in joined
    ]
    bundle = runtime.bundle(
        "joined", None, linux={**default_spec(False)["linux"], "namespaces": spec_namespaces}
    )
    config = json.loads((bundle / "config.json").read_text())
    del config["hostname"]  # the holder's uts namespace keeps its name
    (bundle / "config.json").write_text(json.dumps(config))

    seen = peers.probe(peers.Peer(runtime_name), runtime.workspace, bundle)
    for kind in joined:
        assert seen[f"ns.{proc[kind]}"] == str(os.stat(f"/proc/{holder}/ns/{proc[kind]}").st_ino)
    assert seen["ns.pid"] != str(os.stat("/proc/self/ns/pid").st_ino)


# -- rootless ----------------------------------------------------------------------------


def test_rootless_create_and_start_through_newuidmap(probe_binary: Path) -> None:
    user = peers.rootless_user()
    if user is None:
        pytest.skip(f"no user {peers.ROOTLESS_USER} (the sandbox set-up makes it)")
    workspace = peers.Workspace(user)
    runtime = Runtime(workspace, probe_binary, user)
    try:
        mappings = {
            key: [
                {"containerID": 0, "hostID": own, "size": 1},
                {"containerID": 1, "hostID": 100000, "size": 65536},
            ]
            for key, own in (("uidMappings", user.pw_uid), ("gidMappings", user.pw_gid))
        }
        linux = {**default_spec(True, user.pw_uid, user.pw_gid)["linux"], **mappings}
        bundle = runtime.bundle("rootless", f"exec {PROBE_PATH} > /seen", linux=linux)
        done = runtime("create", "mine", bundle=bundle, detached=True)
        assert done.returncode == 0, runtime.log.read_text()
        state = runtime.state("mine")
        assert state["status"] == "created" and state["owner"] == peers.ROOTLESS_USER
        uid_map = Path(f"/proc/{state['pid']}/uid_map").read_text().split()
        assert uid_map == ["0", str(user.pw_uid), "1", "1", "100000", "65536"]

        assert runtime("start", "mine").returncode == 0
        wait_for(lambda: runtime.state("mine")["status"] == "stopped", "the probe's end")
        seen = parse((bundle / "rootfs/seen").read_text())
        assert seen["uid"] == "0 0 0" and seen["pid"] == "1"
        assert runtime("delete", "mine").returncode == 0
    finally:
        runtime.clean()
        workspace.remove()
