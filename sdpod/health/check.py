"""One health check of a container, run by its oneshot health service.

It runs the check's command inside the container (`sdpod.runtime.exec`), records the
result in the health file, and tells the container's unit when its health changes:
`STATUS=` always, `READY=1` too when the unit waits for its first passing check. The
service manager accepts those only from a process in the unit's cgroup (NotifyAccess=all),
so the checker steps into the unit's `supervisor` leaf to send them, and back out before
it acts: a restart of the unit would kill it there.

It prints only when the health changes, at notice level or above: the service's unit
has LogLevelMax=notice, so that the journal gets no line for a passing check. Its lines
carry the identifier NAME-health: `journalctl --user -t NAME-health` finds them all,
while `-u` misses those that journald reads after the checker has exited.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from sdpod import paths
from sdpod.config.model import HealthCheck, ReadyWhen, UnhealthyAction
from sdpod.errors import RuntimeSetupError
from sdpod.health import annotate, state
from sdpod.health.state import HealthState, Outcome, Status, failures
from sdpod.runtime import cgroup, exec, notify
from sdpod.runtime.spec import ANNOTATION_NAME

# sd-daemon(3) prefixes: a line starting with one is logged at that level.
NOTICE = "<5>"
WARNING = "<4>"
ERROR = "<3>"


def main(bundle: Path) -> int:
    """Check the container of `bundle` once; 0 unless the check could not be run at all."""
    spec = exec.read_spec(bundle)
    name = spec.get("annotations", {}).get(ANNOTATION_NAME, bundle.name)
    check = annotate.check_of(spec)
    if check is None:
        print(f"{ERROR}error: container {name} has no health check in {bundle}")
        return 1
    try:
        container = exec.find_running(name, bundle)
    except RuntimeSetupError:
        return 0  # Stopped or restarting: nothing to check, and nothing worth a log line.

    outcome = run_check(container, check)
    if outcome is None or not _still_running(container):
        return 0
    previous = state.read(paths.health_file(name))
    current = state.advance(previous, outcome, check.retries)
    state.write(paths.health_file(name), current)

    before = previous.status if previous else Status.STARTING
    if current.status is not before:
        _announce(container, current, annotate.readiness_of(spec))
        if current.status is Status.UNHEALTHY and not _still_starting(name):
            act(check.on_unhealthy, f"sdpod-{name}.service")
    return 0


def _still_starting(name: str) -> bool:
    """Whether the container's unit still waits to be ready (a health-gated start).

    Restarting it then would cancel the start job that `sdpod up` waits on and begin a
    new one, for ever if the check never passes; instead the start fails on the unit's
    own start timeout, which covers every check it allows, and `up` reports that.
    """
    from sdpod.units.manager import UNIT_INTERFACE, Manager

    with Manager.connect() as manager:
        active = manager.unit_property(f"sdpod-{name}.service", UNIT_INTERFACE, "ActiveState")
    return bool(active == "activating")


def run_check(container: exec.RunningContainer, check: HealthCheck) -> Outcome | None:
    """Run the check's command in the container; None if the container went away."""
    started = paths.pid_file(container.name).stat().st_mtime
    in_start_period = time.time() - started < check.start_period
    output = os.memfd_create("sdpod-health-output")
    stdin = os.open(os.devnull, os.O_RDONLY)
    stdio = exec.Stdio(stdin, output, output)
    try:
        status = exec.run(
            container.init_pid, container.spec, check.command, check.timeout, stdio=stdio
        )
        passed, note = status == 0, "" if status == 0 else f"exit status {status}"
    except (TimeoutError, RuntimeSetupError) as error:
        if not _still_running(container):
            return None
        passed, note = False, str(error)
    finally:
        os.close(stdin)
    text = _read_all(output) + (f"\n({note})" if note else "")
    return Outcome(passed, state.tail(text.encode()), time.time(), in_start_period)


def _read_all(fd: int) -> str:
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        start = max(0, size - state.OUTPUT_LIMIT)
        return os.pread(fd, size - start, start).decode(errors="replace").strip()
    finally:
        os.close(fd)


def _still_running(container: exec.RunningContainer) -> bool:
    """Whether the PID file still names the init that was checked, and it lives.

    A check that ran while the container restarted must not overwrite the new start's
    state, which the launcher has just cleared.
    """
    try:
        current = int(paths.pid_file(container.name).read_text().strip())
    except (OSError, ValueError):
        return False
    return current == container.init_pid and Path(f"/proc/{current}").exists()


def status_text(current: HealthState) -> str:
    """The unit's status text for a health, as `systemctl status` shows it."""
    if current.status is not Status.UNHEALTHY:
        return str(current.status.value)
    # The first line: the command's own words where it said any, else how it ended.
    first = current.output.strip().splitlines()[:1] or ["no output"]
    return f"unhealthy ({failures(current.failing_streak)}: {first[0][:200]})"


def _announce(container: exec.RunningContainer, current: HealthState, ready: ReadyWhen) -> None:
    """Log the change, and tell the container's unit its new status."""
    text = status_text(current)
    print(f"{NOTICE if current.status is Status.HEALTHY else WARNING}{text}", flush=True)
    message = f"STATUS={text}"
    if current.status is Status.HEALTHY and ready is ReadyWhen.HEALTHY:
        message += "\nREADY=1"
    with _inside_unit(container.init_pid):
        _notify_manager(message)


@contextlib.contextmanager
def _inside_unit(init_pid: int) -> Iterator[None]:
    """Step into the `supervisor` leaf of the unit whose container runs `init_pid`."""
    leaf = exec.container_leaf(init_pid)
    own = _own_cgroup()
    if leaf is None or own is None or not leaf.parent.name.endswith(".service"):
        yield
        return
    cgroup.move(os.getpid(), leaf.parent / "supervisor")
    try:
        yield
    finally:
        cgroup.move(os.getpid(), own)


def _own_cgroup() -> Path | None:
    mount = cgroup.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    relative = cgroup.own_cgroup(Path("/proc/self/cgroup").read_text())
    if mount is None or relative is None:
        return None
    return mount / relative.lstrip("/")


def _notify_manager(message: str) -> None:
    # The service manager gives NOTIFY_SOCKET to a service with NotifyAccess= set, which
    # the health service has; by hand, the manager's socket is at its well-known place.
    if "NOTIFY_SOCKET" not in os.environ:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = f"{runtime}/systemd" if os.geteuid() != 0 and runtime else "/run/systemd"
        os.environ["NOTIFY_SOCKET"] = f"{base}/notify"
    notify.notify(message)


def act(action: UnhealthyAction, unit: str) -> None:
    """Restart or stop an unhealthy container's unit, as its check's `on_unhealthy` says.

    The job is only queued: the restart of a unit that waits for its first healthy check
    would wait for this very service to finish.
    """
    if action is UnhealthyAction.NONE:
        return
    from sdpod.units.manager import Manager

    verb, method = ("restarting", "RestartUnit")
    if action is UnhealthyAction.STOP:
        verb, method = ("stopping", "StopUnit")
    print(f"{WARNING}{verb} {unit}, as its health check's on_unhealthy asks", flush=True)
    with Manager.connect() as manager:
        manager.enqueue(method, unit)
