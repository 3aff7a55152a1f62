"""`sdpod run`: one container in the foreground, in a transient scope of the manager.

The container is made as `up` makes one (image, bundle, config.json: `sdpod.lifecycle`),
from the command line instead of a TOML file, and started by the launcher a service
runs, forked from this process and moved into a transient scope of the user's manager
(the system's, as root) before it starts anything: there it makes the container's
leaves, starts the container and its network helper, and exits. The manager accounts
for the scope and can stop it; this process stays outside, attached to the container:

1. it becomes a child subreaper (PR_SET_CHILD_SUBREAPER, prctl(2)), so that the
   container's init, orphaned when the launcher's first child exits, becomes its child,
   whose exit status it can wait for;
2. its SIGTERM, SIGINT, SIGHUP and SIGQUIT go to the init, which hands them to the
   command; with a terminal, the user's terminal is relayed in raw mode, its window
   size kept, so that Ctrl-C and Ctrl-Z reach the container's foreground process group;
3. once the init has exited, it stops the scope (the network helper outlives the
   container) and, with --rm, removes the container's files. Its exit status is the
   container's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sdpod import lifecycle, paths
from sdpod.config import settings
from sdpod.config.coherence import check_coherence
from sdpod.config.model import Container, Project
from sdpod.config.problems import Findings, Problem, Spot
from sdpod.config.schema import Read, read_table
from sdpod.errors import ConfigError, RuntimeSetupError, SdpodError, SystemdError
from sdpod.kernel import syscalls
from sdpod.runtime import cgroup, launch, terminal
from sdpod.runtime.attach import FORWARDED_SIGNALS, Forwarder, exit_status, wait_attached
from sdpod.units.manager import Manager
from sdpod.units.translate import scope_name, scope_properties

# What the bundle records as the container's origin, where `up` records its TOML file.
RUN_SOURCE = Path("sdpod run")
NAME_PREFIX = "run-"
# How long the manager may take to move the launcher into the scope: as the user's
# manager, it asks the system's to move a process from outside its own tree.
MOVE_TIMEOUT_SECONDS = 10.0
# The command line's words for the settings it fills, for its error messages.
_OPTIONS = {"name": "--name", "image": "IMAGE", "command": "COMMAND", "env": "-e", "volumes": "-v"}


@dataclass(frozen=True)
class RunRequest:
    """What `sdpod run` was asked: an image, a command, and how to attach to it."""

    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    env: tuple[str, ...] = ()
    """`KEY=VALUE`, or `KEY` for this process's own value, as docker takes them."""
    volumes: tuple[str, ...] = ()
    interactive: bool = False
    terminal: bool = False
    remove: bool = False


def container_of(
    request: RunRequest,
    base_dir: Path,
    environ: Mapping[str, str],
    short_names: Collection[str] = (),
) -> Container:
    """The container the command line describes, read through the settings a TOML
    file's are, with their checks; relative paths start from `base_dir`.

    Raise ConfigError naming every option that is wrong.
    """
    table: dict[str, Any] = {
        "name": request.name or NAME_PREFIX + secrets.token_hex(3),
        "image": request.image,
        # The scope has no restart; the setting only keeps the bundle honest.
        "restart": "no",
    }
    if request.command:
        table["command"] = list(request.command)
    if request.env:
        table["env"] = environment(request.env, environ)
    if request.volumes:
        table["volumes"] = list(request.volumes)

    findings = Findings(base_dir, {}, short_names=frozenset(short_names))
    entry = Read(Spot((), findings))
    read_table(entry, table, settings.SETTINGS, substitute_values=False)
    check_coherence([entry])
    if findings.problems:
        raise ConfigError([_describe(problem) for problem in findings.problems])
    return Container(**entry.values)


def environment(items: Collection[str], environ: Mapping[str, str]) -> dict[str, str]:
    """`-e` options as a table: `KEY=VALUE`, or `KEY` alone for `environ`'s value, left
    out where `environ` has none; a later one wins."""
    table: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if equals:
            table[key] = value
        elif key in environ:
            table[key] = environ[key]
    return table


def _describe(problem: Problem) -> str:
    """`-v "./www:/www:rx": unknown volume option...`: the option, its value, the rule."""
    first = str(problem.path[0]) if problem.path else ""
    where = _OPTIONS.get(first, first)
    if first == "env" and len(problem.path) > 1:
        where = f"-e {problem.path[1] or json.dumps('')}"
    parts = [part for part in (where, problem.value) if part]
    return f"{' '.join(parts)}: {problem.message}" if parts else problem.message


def run(request: RunRequest, debug: bool = False) -> int:
    """Run the container `request` describes until it exits; return its exit status."""
    from sdpod.images import registries

    aliases = registries.load().aliases or {}
    container = container_of(request, Path.cwd(), os.environ, aliases.keys())
    project = Project(RUN_SOURCE, (container,))
    with lifecycle.session(project, debug) as context:
        _refuse_taken(container, context.manager)
        want = lifecycle.desired(container, context)
        want.spec["process"]["terminal"] = request.terminal
        lifecycle.prepare(want)
        started = False
        try:
            # The scope is stopped and its files removed whatever signal comes.
            with Forwarder() as forwarder, _scope(context.manager, container, project) as scope:
                init, console = _start(want.layout.bundle, container.name, scope, request)
                started = True
                forwarder.target(init)
                try:
                    return _attend(init, console, request)
                finally:
                    # Once reaped, the init's PID may be another process's.
                    forwarder.drop()
        finally:
            if request.remove or not started:
                lifecycle.remove_container(container, context)


def _refuse_taken(container: Container, manager: Manager) -> None:
    name = container.name
    if paths.container_dir(name).exists():
        raise SdpodError(
            f"failed to run container {name}: a container of that name exists",
            hint=f"`sdpod rm {name}` removes it; or give this one another --name",
        )
    for unit in (container.unit_name, scope_name(container)):
        if lifecycle.is_running(manager, unit):
            raise SdpodError(
                f"failed to run container {name}: {unit} is running",
                hint="give this one another --name",
            )


@dataclass
class _Scope:
    manager: Manager
    container: Container
    project: Project
    name: str


@contextlib.contextmanager
def _scope(manager: Manager, container: Container, project: Project) -> Iterator[_Scope]:
    """Become a subreaper; at the end, stop the scope and collect its processes."""
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    scope = _Scope(manager, container, project, scope_name(container))
    try:
        yield scope
    finally:
        manager.stop(scope.name)
        manager.wait_unloaded(scope.name)
        _reap_orphans()


def _reap_orphans() -> None:
    """Collect the scope's processes that became this subreaper's children (the
    network helper's shell); its stop has ended them all."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _start(
    bundle: Path, name: str, scope: _Scope, request: RunRequest
) -> tuple[int, socket.socket | None]:
    """Start the container in the scope; its init's PID, and our end of its console."""
    ours, theirs = terminal.console_pair() if request.terminal else (None, None)
    try:
        launcher = _fork_launcher(bundle, name, theirs, request.interactive)
    finally:
        if theirs is not None:
            theirs.close()
    try:
        properties = scope_properties(scope.container, scope.project, [launcher.pid])
        scope.manager.start_transient(scope.name, properties)
        _wait_until_in(launcher.pid, scope.name)
        return launcher.release(), ours
    except BaseException:
        launcher.kill()
        if ours is not None:
            ours.close()
        raise


def _attend(init: int, console: socket.socket | None, request: RunRequest) -> int:
    """Wait for the init, relaying its terminal if it has one."""
    if console is None:
        return wait_attached(init)
    with console:
        # The init sent it before exec, which the launcher waited for.
        master, _ = terminal.receive_fd(console)
    try:
        return wait_attached(init, master, 0 if request.interactive else None, 1)
    finally:
        os.close(master)


def _wait_until_in(pid: int, unit: str) -> None:
    """Return once `pid` is in `unit`'s cgroup, where the manager's start job put it."""
    deadline = time.monotonic() + MOVE_TIMEOUT_SECONDS
    while True:
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError as error:
            raise RuntimeSetupError(f"failed to follow the launcher: {error}") from None
        where = cgroup.own_cgroup(text) or ""
        if where.endswith(f"/{unit}"):
            return
        if time.monotonic() > deadline:
            raise SystemdError(
                f"failed to move the launcher into {unit}: it is still in {where} "
                f"after {MOVE_TIMEOUT_SECONDS:.0f} s"
            )
        time.sleep(0.01)


# -- the launcher, forked -----------------------------------------------------------------


@dataclass
class _Launcher:
    """The forked launcher, held at its start until the scope has taken it."""

    pid: int
    go: int
    report: int
    reaped: bool = False

    def release(self) -> int:
        """Let the launcher start the container; the init's PID once it runs."""
        try:
            os.write(self.go, b"g")
        finally:
            os.close(self.go)
            self.go = -1
        with os.fdopen(self.report, "rb") as report:
            self.report = -1
            data = report.read()
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        outcome = json.loads(data or b"{}")
        if "init" not in outcome:
            if os.WIFSIGNALED(status):
                killer = signal.Signals(os.WTERMSIG(status)).name
                died = f"the launcher was killed by {killer} (was the scope stopped?)"
            else:
                died = f"the launcher exited with status {exit_status(status)}, saying nothing"
            raise RuntimeSetupError(
                outcome.get("error") or f"failed to start the container: {died}",
                hint=outcome.get("hint"),
            )
        return int(outcome["init"])

    def kill(self) -> None:
        """End a launcher that was not released, or failed; a reaped one's PID is not
        ours any more."""
        for fd in (self.go, self.report):
            if fd >= 0:
                os.close(fd)
        self.go = self.report = -1
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.reaped = True


def _fork_launcher(
    bundle: Path, name: str, console: socket.socket | None, interactive: bool
) -> _Launcher:
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(report_r)
        fd = -1 if console is None else console.fileno()
        _launcher(bundle, name, fd, interactive, (go_r, report_w))
    os.close(go_r)
    os.close(report_w)
    return _Launcher(pid, go_w, report_r)


def _launcher(
    bundle: Path, name: str, console: int, interactive: bool, pipes: tuple[int, int]
) -> NoReturn:
    """Once in the scope, start the container as a service's launcher does, report the
    init's PID, and exit. Everything it needs was imported before the fork."""
    go_r, report_w = pipes
    try:
        for number in FORWARDED_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        # The container inherits a session of its own, apart from the user's terminal,
        # whose keys reach it only through this process (or through its own terminal).
        os.setsid()
        if not interactive:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        if os.read(go_r, 1) != b"g":
            os._exit(1)
        init = launch.launch(bundle, console)
        launch.record_start(name, init)
        os.write(report_w, json.dumps({"init": init}).encode())
        os._exit(0)
    except BaseException as error:
        hint = error.hint if isinstance(error, SdpodError) else None
        text = json.dumps({"error": str(error) or repr(error), "hint": hint})
        with contextlib.suppress(OSError):
            os.write(report_w, text.encode())
    finally:
        os._exit(1)
