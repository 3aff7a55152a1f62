"""Run a command inside a running container: `sdpod exec`, and every health check.

The caller forks a child, moves it into the container's cgroup leaf while the host's
cgroup tree is still in view, and releases it. The child joins the container's
namespaces, the user namespace first: its owner holds every capability in it, which the
others then require (setns(2)). Joining a PID namespace applies only to children, so the
child forks again; the grandchild takes the spec's capabilities, user, groups, directory
and environment, and execs the command. The child waits for it and exits with its
status, which the caller returns. Between fork and exec only the system call boundary
and the container module's helpers run.

With a terminal, the grandchild opens a pty of the container's devpts as the command's
user, makes it its controlling terminal in a session of its own, and sends the master to
the caller over a socket pair (`sdpod.runtime.terminal`); the caller relays it to the
user's terminal and forwards the signals that would end it to the command.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sdpod import paths
from sdpod.errors import RuntimeSetupError
from sdpod.kernel import seccomp, syscalls
from sdpod.runtime import cgroup, shared, terminal
from sdpod.runtime.attach import Forwarder, exit_status, wait_attached
from sdpod.runtime.bundle import load_spec
from sdpod.runtime.process import (
    apply_process,
    check_command,
    close_fds_but,
    exec_command,
    process_environment,
)

# The order matters: the user namespace gives the capabilities the others need, and the
# mount namespace is joined before the cgroup one so that nothing reads the host's
# /sys/fs/cgroup with the container's root.
NAMESPACES = (
    ("user", syscalls.CLONE_NEWUSER),
    ("mnt", syscalls.CLONE_NEWNS),
    ("pid", syscalls.CLONE_NEWPID),
    ("net", syscalls.CLONE_NEWNET),
    ("uts", syscalls.CLONE_NEWUTS),
    ("ipc", syscalls.CLONE_NEWIPC),
    ("cgroup", syscalls.CLONE_NEWCGROUP),
)

Attach = Callable[[int], None]
"""Moves a process, by host PID, into the container's cgroup leaf."""


@dataclass(frozen=True)
class Stdio:
    """Descriptors for the command's standard streams; None inherits the caller's."""

    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None


@dataclass(frozen=True)
class RunningContainer:
    name: str
    init_pid: int
    spec: dict[str, Any]
    unit: str = ""
    """The unit whose cgroup holds the init: its service, or the scope of `sdpod run`."""

    @property
    def leaf(self) -> Path | None:
        return container_leaf(self.init_pid)


def run(
    init_pid: int,
    spec: dict[str, Any],
    argv: Sequence[str],
    timeout: float | None = None,
    *,
    stdio: Stdio = Stdio(),
    attach: Attach | None = None,
    terminal: bool = False,
    console: int | None = None,
) -> int:
    """Run `argv` in the container whose init is `init_pid`; return its exit status.

    A command killed by a signal returns 128 plus the signal's number, as a shell says.
    With a `timeout`, the command runs in a process group of its own, which is killed
    when the time is up; then TimeoutError is raised. `attach` moves the child into the
    container's cgroup leaf (default: writing its cgroup.procs directly).

    With `terminal`, the command gets a terminal of its own, relayed to `stdio`'s stdin
    (None: the caller's; reading stops at its end) and stdout (None: the caller's), and
    the caller's SIGTERM, SIGINT, SIGHUP and SIGQUIT go to the command. It takes no
    `timeout`.

    With `console`, a connected unix socket, the command gets a terminal of its own
    whose master is sent there, for whoever listens to show it (the OCI runtime's
    `--console-socket`); the caller only waits. It takes no `timeout` either.
    """
    if not argv:
        raise RuntimeSetupError("failed to run a command in the container: no command given")
    if (terminal or console is not None) and timeout is not None:
        raise ValueError("a command with a terminal runs without a timeout")
    if spec.get("linux", {}).get("seccomp"):
        seccomp.preload()
    namespaces = open_namespaces(init_pid)
    attach = attach or join_leaf(container_leaf(init_pid))
    try:
        if terminal:
            return _with_terminal(namespaces, spec, list(argv), stdio, attach)
        options = _Options(timeout is not None, stdio, console)
        return _fork_and_wait(namespaces, spec, list(argv), timeout, options, attach)
    finally:
        for fd, _ in namespaces:
            os.close(fd)


def open_namespaces(init_pid: int) -> list[tuple[int, int]]:
    """Descriptors of the init's namespaces, with their setns(2) types, in joining order.

    A namespace the caller is in already, as the network of a container on the host's
    network, is left out: entering it again from the container's user namespace would
    need CAP_SYS_ADMIN over it (setns(2)).
    """
    opened: list[tuple[int, int]] = []
    try:
        for name, flag in NAMESPACES:
            fd = os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            if shared.is_own(fd, name):
                os.close(fd)
                continue
            opened.append((fd, flag))
    except OSError as error:
        for fd, _ in opened:
            os.close(fd)
        gone = isinstance(error, FileNotFoundError | ProcessLookupError)
        reason = "the process no longer exists" if gone else error.strerror
        raise RuntimeSetupError(
            f"failed to enter the container of PID {init_pid}: {reason}"
        ) from None
    return opened


def container_leaf(init_pid: int) -> Path | None:
    """The cgroup directory of the container's init, or None without a v2 hierarchy."""
    try:
        mount = cgroup.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
        relative = cgroup.own_cgroup(Path(f"/proc/{init_pid}/cgroup").read_text())
    except OSError:
        return None
    if mount is None or relative is None:
        return None
    return mount / relative.lstrip("/")


def join_leaf(leaf: Path | None) -> Attach:
    """An `Attach` that writes the PID into `leaf`'s cgroup.procs; a no-op without one."""

    def attach(pid: int) -> None:
        if leaf is not None:
            (leaf / "cgroup.procs").write_text(str(pid))

    return attach


def join_leaf_or_ask(leaf: Path | None, unit: str) -> Attach:
    """Like `join_leaf`, but where this user may not move the process, ask the manager.

    Moving a process needs write access to the cgroup.procs of the lowest cgroup above
    both its old and its new place (cgroups(7)): a command started from a login shell
    or over ssh sits outside the user's delegated tree, out of the user's reach. The
    manager can do it, asking the system manager where it must (AttachProcessesToUnit).
    """
    direct = join_leaf(leaf)

    def attach(pid: int) -> None:
        try:
            direct(pid)
        except PermissionError:
            if leaf is None:
                raise
            # Only here: the D-Bus client costs 24 ms to import (DESIGN.md).
            from sdpod.units.manager import Manager

            with Manager.connect() as manager:
                manager.attach_processes(unit, f"/{leaf.name}", [pid])

    return attach


def find_running(name: str, bundle: Path | None = None) -> RunningContainer:
    """The container `name` if its init runs, from its bundle and its PID file.

    The PID is trusted only if that process sits in the cgroup of the container's unit,
    its service or the scope of `sdpod run`: a PID file outlives its process, and the
    number may since belong to another one.
    """
    spec = read_spec(bundle or paths.container_dir(name))
    try:
        init_pid = int(paths.pid_file(name).read_text().strip())
        own = cgroup.own_cgroup(Path(f"/proc/{init_pid}/cgroup").read_text()) or ""
    except (OSError, ValueError):
        own = ""
        init_pid = 0
    units = (f"sdpod-{name}.service", f"sdpod-{name}.scope")
    unit = next((unit for unit in units if f"/{unit}/" in f"{own}/"), "")
    if not unit:
        raise RuntimeSetupError(
            f"failed to find the running container {name}: it is not running",
            hint=f"`systemctl --user status sdpod-{name}.service` shows what its unit does",
        )
    return RunningContainer(name, init_pid, spec, unit)


def read_spec(bundle: Path) -> dict[str, Any]:
    return load_spec(
        bundle,
        f"failed to find container {bundle.name}: it has no bundle in {bundle.parent}",
        "`sdpod ps` lists the containers",
    )


# -- the caller's side -------------------------------------------------------------------


def _fork_and_wait(
    namespaces: list[tuple[int, int]],
    spec: dict[str, Any],
    argv: list[str],
    timeout: float | None,
    options: _Options,
    attach: Attach,
) -> int:
    with _started(namespaces, spec, argv, options, attach) as (child, grandchild):
        return _wait(child, grandchild, timeout, argv[0])


def _with_terminal(
    namespaces: list[tuple[int, int]],
    spec: dict[str, Any],
    argv: list[str],
    stdio: Stdio,
    attach: Attach,
) -> int:
    """Start the command on a terminal of its own; relay it until the command ends."""
    ours, theirs = terminal.console_pair()
    options = _Options(False, Stdio(), theirs.fileno())
    with ours, theirs, _started(namespaces, spec, argv, options, attach) as started:
        theirs.close()
        child, grandchild = started
        # The command sent its terminal before exec, which `_started` has waited for.
        master, _ = terminal.receive_fd(ours)
        try:
            with Forwarder() as forwarder:
                forwarder.target(grandchild)
                stdin = 0 if stdio.stdin is None else stdio.stdin
                stdout = 1 if stdio.stdout is None else stdio.stdout
                return wait_attached(child, master, stdin, stdout)
        finally:
            os.close(master)


@dataclass(frozen=True)
class _Options:
    own_group: bool
    stdio: Stdio
    console: int | None = None


@contextlib.contextmanager
def _started(
    namespaces: list[tuple[int, int]],
    spec: dict[str, Any],
    argv: list[str],
    options: _Options,
    attach: Attach,
) -> Iterator[tuple[int, int]]:
    """Fork the child, release it once in the cgroup, and give the body the child's and
    the command's PIDs once the command runs; kill and reap the child on any error."""
    go_r, go_w = os.pipe()
    pid_r, pid_w = os.pipe()
    errors_r, errors_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(go_w)
        os.close(pid_r)
        os.close(errors_r)
        _child(namespaces, spec, argv, options, (go_r, pid_w, errors_w))
    for fd in (go_r, pid_w, errors_w):
        os.close(fd)

    with _reaped(child), os.fdopen(pid_r) as pids, os.fdopen(errors_r, "rb") as errors:
        _release(child, attach, go_w)
        grandchild = int(pids.read().strip() or 0)
        failure = errors.read().decode(errors="replace")
        if failure:
            raise RuntimeSetupError(f"failed to run {argv[0]!r} in the container: {failure}")
        yield child, grandchild


def _release(child: int, attach: Attach, go_w: int) -> None:
    """Move the child into the container's cgroup, then let it go on; if the move fails,
    close the pipe unwritten, which makes the child exit."""
    try:
        attach(child)
        os.write(go_w, b"g")
    except OSError as error:
        raise RuntimeSetupError(
            f"failed to move the command into the container's cgroup: {error}"
        ) from None
    finally:
        os.close(go_w)


@contextlib.contextmanager
def _reaped(child: int) -> Iterator[None]:
    """Ignore the terminal's SIGINT and SIGQUIT while the command runs, as system(3) does,
    and never leave the child unreaped, whatever fails."""
    previous = [signal.signal(number, signal.SIG_IGN) for number in _TERMINAL_SIGNALS]
    try:
        yield
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
        raise
    finally:
        for number, handler in zip(_TERMINAL_SIGNALS, previous, strict=True):
            signal.signal(number, handler)


_TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)


def _wait(child: int, grandchild: int, timeout: float | None, command: str) -> int:
    if timeout is not None and not _exits_within(child, timeout):
        # The group is the grandchild's own (setpgid in _grandchild): the command and
        # whatever it started. A process that left the group (setsid) survives in the
        # container; that goes away once each exec gets a cgroup of its own to kill.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(grandchild, signal.SIGKILL)
        os.waitpid(child, 0)
        raise TimeoutError(f"{command!r} did not finish within {timeout:g} s and was killed")
    _, status = os.waitpid(child, 0)
    return exit_status(status)


def _exits_within(pid: int, timeout: float) -> bool:
    pidfd = os.pidfd_open(pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return bool(readable)


# -- after fork: only the system call boundary and the container helpers -----------------


def _child(
    namespaces: list[tuple[int, int]],
    spec: dict[str, Any],
    argv: list[str],
    options: _Options,
    pipes: tuple[int, int, int],
) -> NoReturn:
    """Wait to be moved into the cgroup, join the namespaces, fork, wait, exit with its status."""
    go_r, pid_w, errors_w = pipes
    try:
        # The terminal's signals are for the command, which restores them.
        for number in _TERMINAL_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        if os.read(go_r, 1) != b"g":
            os._exit(1)
        for fd, flag in namespaces:
            syscalls.setns(fd, flag)
        grandchild = os.fork()
        if grandchild == 0:
            _grandchild(spec, argv, options, errors_w)
        os.close(errors_w)
        os.write(pid_w, f"{grandchild}\n".encode())
        os.close(pid_w)
        _, status = os.waitpid(grandchild, 0)
        os._exit(exit_status(status))
    except BaseException as error:
        _report(errors_w, error)
    finally:
        os._exit(1)


def _grandchild(
    spec: dict[str, Any], argv: list[str], options: _Options, errors_w: int
) -> NoReturn:
    """In the container's PID namespace: the spec's process settings, then exec."""
    try:
        for number in _TERMINAL_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        if options.own_group:
            os.setpgid(0, 0)
        stdio = options.stdio
        for target, fd in enumerate((stdio.stdin, stdio.stdout, stdio.stderr)):
            if fd is not None:
                os.dup2(fd, target)

        process = spec["process"]
        env = process_environment(process)
        check_command(argv[0], env.get("PATH", ""))
        # The terminal is opened as the command's user, so that it is its own (devpts(5)).
        last_step = None
        if options.console is not None:
            last_step = functools.partial(terminal.attach_console, options.console)
        apply_process(process, spec.get("linux", {}).get("seccomp"), last_step)
        close_fds_but(errors_w)
        exec_command(argv, env)
    except BaseException as error:
        _report(errors_w, error)
    finally:
        os._exit(127)


def _report(errors_fd: int, error: BaseException) -> None:
    with contextlib.suppress(OSError):
        os.write(errors_fd, (str(error) or repr(error)).encode(errors="replace"))
