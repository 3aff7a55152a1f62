"""The OCI runtime's operations (runtime.md, "Operations"): create, start, kill, delete,
and run, which is create and start in one, waiting for the end.

`create` sets the container up and leaves its init waiting on the exec FIFO in the
container's state directory, then returns: the init has no parent of ours by then (its
first parent has exited), so it lives on under the nearest subreaper, as runc's does.
`start` opens the FIFO, which releases the init into exec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sdpod.errors import RuntimeSetupError
from sdpod.kernel import syscalls
from sdpod.runtime import cgroup, hooks, namespaces
from sdpod.runtime.bundle import load_spec
from sdpod.runtime.container import RELEASED
from sdpod.runtime.creation import Creation
from sdpod.runtime.mounts import resolve_in_root
from sdpod.runtime.state import CREATED, RUNNING, STOPPED, Container, Record, find, start_time

log = logging.getLogger(__name__)

SIGNAL_EXIT_BASE = 128
STOP_TIMEOUT_SECONDS = 10
# Signals `run` passes on to the container's init, as runc's and crun's `run` do.
FORWARDED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
_RUNTIME_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer")


@dataclass(frozen=True)
class Options:
    root: Path
    bundle: Path
    pid_file: Path | None = None
    console_socket: str | None = None


def load_bundle(bundle: Path) -> dict[str, Any]:
    return load_spec(
        bundle,
        f"failed to read {bundle / 'config.json'}: no such file",
        "`sdpod runtime spec` writes a default one; --bundle names the directory",
    )


def create(container_id: str, options: Options) -> Record:
    """Set up the container `container_id` of the bundle, its init waiting for `start`."""
    bundle = options.bundle.resolve()
    spec = _checked(load_bundle(bundle), options)
    rootfs = str(bundle / spec["root"]["path"])
    _give_home(spec, rootfs)

    options.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    container = Container(options.root, container_id)
    try:
        container.directory.mkdir(mode=0o711)
    except FileExistsError:
        raise RuntimeSetupError(f"failed to create container {container_id}: it exists") from None
    try:
        container.save_spec(spec)
        with _console(options.console_socket, "create the container") as console:
            record = _create(container, spec, rootfs, bundle, console)
        if options.pid_file:
            _write_pid_file(options.pid_file, record.pid)
    except BaseException:
        # The record written so far names the cgroup made for the container.
        _remove(container, container.record())
        raise
    return record


def _create(
    container: Container, spec: dict[str, Any], rootfs: str, bundle: Path, console: int
) -> Record:
    # The init writes to the FIFO as the container's root, which may be any host id.
    os.mkfifo(container.fifo, 0o622)
    os.chmod(container.fifo, 0o622)
    fifo = os.open(container.fifo, os.O_PATH | os.O_CLOEXEC)
    placement = cgroup.place(spec.get("linux", {}).get("cgroupsPath") or container.id)
    record = Record(
        id=container.id,
        pid=0,
        start_time=0,
        bundle=str(bundle),
        created=datetime.now(UTC).isoformat(),
        owner=os.geteuid(),
        cgroup=str(placement.path) if placement else "",
        cgroup_created=bool(placement and placement.created),
    )
    container.save(record)
    try:
        joined = namespaces.open_paths(spec)
        with_hooks = bool(hooks.of(spec, *_RUNTIME_HOOKS))
        creation = Creation(
            spec, rootfs, joined=joined, exec_fifo=fifo, hooks=with_hooks, console=console
        )
    finally:
        os.close(fifo)
    try:
        init = creation.prepare(placement.path if placement else None)
        record = dataclasses.replace(record, pid=init, start_time=start_time(init))
        container.save(record)
        if with_hooks:
            creation.take_part_in_hooks(lambda: _runtime_hooks(container, spec))
        creation.wait_until_created()
    except BaseException:
        creation.kill()
        raise
    finally:
        creation.close()
    return record


@contextlib.contextmanager
def _console(path: str | None, verb: str) -> Iterator[int]:
    """A connection to the console socket at `path`, for the container's process to
    send its terminal's master over; -1 without one. Ours is closed once it has its own."""
    if path is None:
        yield -1
        return
    from sdpod.runtime.terminal import connect_console_socket

    try:
        sock = connect_console_socket(path)
    except OSError as error:
        raise RuntimeSetupError(f"failed to {verb}: {error.strerror}") from None
    with sock:
        yield sock.fileno()


def _runtime_hooks(container: Container, spec: dict[str, Any]) -> bytes:
    state = json.dumps(container.oci_state("creating")).encode()
    hooks.run_all(spec, "prestart", state)
    hooks.run_all(spec, "createRuntime", state)
    return state


def _checked(spec: dict[str, Any], options: Options) -> dict[str, Any]:
    process = spec.get("process") or {}
    check_console(bool(process.get("terminal")), options.console_socket, "create the container")
    if not process.get("args"):
        raise RuntimeSetupError("failed to create the container: process.args is empty")
    if spec.get("linux", {}).get("resources"):
        # The limits of sdpod's own containers are their unit's, set through systemd.
        log.warning("linux.resources is not applied: the container runs without its limits")
    if os.geteuid() != 0 and not namespaces.has(spec, "user"):
        raise RuntimeSetupError(
            "failed to create the container: without root it needs a user namespace",
            hint="`sdpod runtime spec --rootless` writes a configuration with one",
        )
    return spec


def check_console(terminal: bool, console_socket: str | None, verb: str) -> None:
    """A terminal goes to a console socket, and a console socket needs a terminal, as
    runc has it: the runtime shows no terminal itself, not even under `run`."""
    if terminal and console_socket is None:
        raise RuntimeSetupError(
            f"failed to {verb}: process.terminal is set, and no --console-socket given",
            hint="give --console-socket PATH, a unix socket to send the terminal to, "
            'or set "terminal": false',
        )
    if console_socket is not None and not terminal:
        raise RuntimeSetupError(
            f"failed to {verb}: --console-socket {console_socket} is given, "
            "and process.terminal is not set",
            hint='set "terminal": true in the process, or leave --console-socket out',
        )


def _give_home(spec: dict[str, Any], rootfs: str) -> None:
    """Set HOME, where the spec does not, to the user's home in the container's
    /etc/passwd, or /, as runc and crun do."""
    env = spec["process"].setdefault("env", [])
    if any(entry.startswith("HOME=") for entry in env):
        return
    uid = str(spec["process"].get("user", {}).get("uid", 0))
    home = "/"
    passwd = resolve_in_root(rootfs, "/etc/passwd")
    with contextlib.suppress(OSError), open(passwd, errors="replace") as lines:
        for line in lines:
            fields = line.rstrip("\n").split(":")
            if len(fields) > 5 and fields[2] == uid:
                home = fields[5] or "/"
                break
    env.append(f"HOME={home}")


def _write_pid_file(path: Path, pid: int) -> None:
    # Written whole, then renamed: a reader never finds it half written (runc does so).
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(str(pid))
    os.replace(temporary, path)


def start(root: Path, container_id: str) -> None:
    """Release the created container's init into exec; run the poststart hooks."""
    container = find(root, container_id)
    record = container.record()
    status = container.status(record)
    if status != CREATED or record is None:
        raise RuntimeSetupError(f"failed to start container {container_id}: it is {status}")
    _release(container, record)
    container.fifo.unlink(missing_ok=True)
    _run_warning_hooks(container, "poststart")


def _release(container: Container, record: Record) -> None:
    """Open the exec FIFO, which lets the init go on, and read what it reports until the
    end of file that its exec brings."""
    failure = f"failed to start container {container.id}"
    pidfd = _pidfd(record)
    try:
        fifo = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        os.close(pidfd)
        raise RuntimeSetupError(f"{failure}: it has been started already") from None
    received = b""
    try:
        while True:
            readable, _, _ = select.select([fifo, pidfd], [], [])
            if fifo in readable:
                chunk = os.read(fifo, 65536)
                if not chunk and received:
                    break  # the init has exec'd: its end of the FIFO closed
                received += chunk
            elif pidfd in readable:
                break
    finally:
        os.close(fifo)
        os.close(pidfd)
    if not received.startswith(RELEASED):
        raise RuntimeSetupError(f"{failure}: its init exited before it was released")
    text = received[len(RELEASED) :].decode(errors="replace")
    if text:
        raise RuntimeSetupError(f"{failure}: {text}")


def _pidfd(record: Record) -> int:
    try:
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        raise RuntimeSetupError(f"failed to start container {record.id}: it stopped") from None
    if start_time(record.pid) != record.start_time:
        os.close(pidfd)
        raise RuntimeSetupError(f"failed to start container {record.id}: it stopped")
    return pidfd


def kill(root: Path, container_id: str, number: int, every: bool = False) -> None:
    """Send signal `number` to the container's init, or with `every` to each of its
    processes."""
    container = find(root, container_id)
    record = container.record()
    status = container.status(record)
    if status not in (CREATED, RUNNING) or record is None:
        raise RuntimeSetupError(f"failed to signal container {container_id}: it is {status}")
    targets = _processes(container, record) if every else [record.pid]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


def _processes(container: Container, record: Record) -> list[int]:
    """Every process of the container: those of its own cgroup, else of its own PID
    namespace, else its init alone."""
    if record.cgroup and record.cgroup_created:
        pids = []
        for procs in Path(record.cgroup).glob("**/cgroup.procs"):
            pids += [int(pid) for pid in procs.read_text().split()]
        return pids
    if not namespaces.has(container.spec(), "pid"):
        return [record.pid]
    own = os.stat(f"/proc/{record.pid}/ns/pid")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found = os.stat(entry / "ns/pid")
                if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
                    pids.append(int(entry.name))
    return pids


def delete(root: Path, container_id: str, force: bool = False) -> None:
    """Remove a stopped container's state and cgroup, then run its poststop hooks; with
    `force`, kill it first if it still runs."""
    container = find(root, container_id)
    record = container.record()
    status = container.status(record)
    if status != STOPPED and record is not None:
        if not force:
            raise RuntimeSetupError(
                f"failed to delete container {container_id}: it is {status}",
                hint="stop it with `sdpod runtime kill`, or use --force",
            )
        for pid in _processes(container, record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(record)
    spec = _spec_or_empty(container)
    state = json.dumps(container.oci_state(STOPPED)).encode() if spec else b""
    _remove(container, record)
    _warn_on_failure(spec, "poststop", state)


def _spec_or_empty(container: Container) -> dict[str, Any]:
    try:
        return container.spec()
    except RuntimeSetupError:
        return {}


def _wait_gone(record: Record) -> None:
    try:
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return
    try:
        if not select.select([pidfd], [], [], STOP_TIMEOUT_SECONDS)[0]:
            raise RuntimeSetupError(
                f"failed to stop container {record.id}: PID {record.pid} outlived SIGKILL "
                f"for {STOP_TIMEOUT_SECONDS} s"
            )
    finally:
        os.close(pidfd)


def _remove(container: Container, record: Record | None) -> None:
    """Remove what `create` made: the cgroup, once empty, then the state directory."""
    if record and record.cgroup and record.cgroup_created:
        with contextlib.suppress(FileNotFoundError):
            cgroup.remove(Path(record.cgroup))
    for name in os.listdir(container.directory):
        os.unlink(container.directory / name)
    container.directory.rmdir()


def _run_warning_hooks(container: Container, kind: str) -> None:
    spec = container.spec()
    if hooks.of(spec, kind):
        _warn_on_failure(spec, kind, json.dumps(container.oci_state()).encode())


def _warn_on_failure(spec: dict[str, Any], kind: str, state: bytes) -> None:
    """Run the hooks of `kind`, whose failures the spec says are warnings: each one runs."""
    for hook in hooks.of(spec, kind):
        try:
            hooks.run(hook, kind, state)
        except RuntimeSetupError as error:
            log.warning("%s", error)


def run(container_id: str, options: Options, detach: bool = False) -> int:
    """Create and start the container; unless `detach`, wait for its end, passing on
    signals, delete it and return its exit status (128 plus a signal's number)."""
    if not detach:
        # The init's first parent exits at once: as a subreaper, this process inherits
        # the init and can wait for it (prctl(2), PR_SET_CHILD_SUBREAPER).
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    record = create(container_id, options)
    try:
        start(options.root, container_id)
    except BaseException:
        with contextlib.suppress(RuntimeSetupError):
            delete(options.root, container_id, force=True)
        raise
    if detach:
        return 0
    status = _wait_forwarding_signals(record.pid)
    delete(options.root, container_id, force=True)
    return status


def _wait_forwarding_signals(init: int) -> int:
    def forward(number: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, number)

    previous = {number: signal.signal(number, forward) for number in FORWARDED}
    try:
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == init:
                code = os.waitstatus_to_exitcode(status)
                return SIGNAL_EXIT_BASE - code if code < 0 else code
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclass(frozen=True)
class ExecRequest:
    """What `exec` runs: `argv`, or a whole OCI process object read from a file, with
    changes to the container's own process."""

    argv: tuple[str, ...] = ()
    process_file: Path | None = None
    env: tuple[str, ...] = ()
    cwd: str | None = None
    user: tuple[int, int] | None = None
    tty: bool = False
    """Give the process a terminal, as `process.terminal` does."""
    console_socket: str | None = None


def exec_in(root: Path, container_id: str, request: ExecRequest) -> int:
    """Run a process in the running container; return its exit status."""
    from sdpod.runtime import exec as execution

    container = find(root, container_id)
    record = container.record()
    status = container.status(record)
    if status not in (CREATED, RUNNING) or record is None:
        raise RuntimeSetupError(f"failed to exec in container {container_id}: it is {status}")
    spec = container.spec()
    process = spec["process"] = _exec_process(spec["process"], request)
    check_console(bool(process.get("terminal")), request.console_socket, "exec in the container")
    leaf = execution.container_leaf(record.pid)
    own = execution.container_leaf(os.getpid())
    attach = execution.join_leaf(leaf if leaf != own else None)
    with _console(request.console_socket, "exec in the container") as console:
        return execution.run(
            record.pid,
            spec,
            process["args"],
            attach=attach,
            console=console if console >= 0 else None,
        )


def _exec_process(process: dict[str, Any], request: ExecRequest) -> dict[str, Any]:
    if request.process_file:
        try:
            loaded: dict[str, Any] = json.loads(request.process_file.read_text())
        except (OSError, ValueError) as error:
            raise RuntimeSetupError(
                f"failed to read the process {request.process_file}: {error}"
            ) from None
        process = loaded
    else:
        process = {**process, "args": list(request.argv)}
    if not process.get("args"):
        raise RuntimeSetupError("failed to exec in the container: no command given")
    env = [
        entry
        for entry in process.get("env", [])
        if entry.split("=", 1)[0] not in _names(request.env)
    ]
    process["env"] = env + list(request.env)
    if request.cwd:
        process["cwd"] = request.cwd
    if request.user:
        uid, gid = request.user
        process["user"] = {**process.get("user", {}), "uid": uid, "gid": gid}
    if request.tty:
        process["terminal"] = True
    return process


def _names(env: tuple[str, ...]) -> set[str]:
    return {entry.split("=", 1)[0] for entry in env}
