"""OCI hooks (config.md, "POSIX-platform Hooks"): programs run at points of a container's
life, each given the container's state as JSON on its standard input.

`prestart`, `createRuntime`, `poststart` and `poststop` run in the runtime's namespaces,
from the runtime's command; `createContainer` and `startContainer` run in the
container's, from its init. A hook that exits without reading its input is no failure:
the write meets a closed pipe, which is ignored. Only the standard library's process
calls are used, so that the init can run hooks between fork and exec.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from typing import Any

from sdpod.errors import RuntimeSetupError

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
# What of a failed hook's output goes into the error message.
OUTPUT_TAIL = 2000


def of(spec: dict[str, Any], *kinds: str) -> list[dict[str, Any]]:
    """The spec's hooks of `kinds`, in order."""
    declared = spec.get("hooks", {})
    return [hook for kind in kinds for hook in declared.get(kind, [])]


def run_all(spec: dict[str, Any], kind: str, state: bytes) -> None:
    """Run every hook of `kind`, in order; the first failure raises."""
    for hook in of(spec, kind):
        run(hook, kind, state)


def run(hook: dict[str, Any], kind: str, state: bytes) -> None:
    """Run one hook with `state` on its standard input; raise if it fails or times out."""
    path = hook["path"]
    argv = hook.get("args") or [path]
    env = dict(entry.split("=", 1) for entry in hook.get("env", []) if "=" in entry)
    timeout = hook.get("timeout")
    what = f"the {kind} hook {path}"

    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    output = os.memfd_create("hook-output", os.MFD_CLOEXEC)
    try:
        try:
            pid = os.posix_spawn(
                path,
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin_r, 0),
                    (os.POSIX_SPAWN_DUP2, output, 1),
                    (os.POSIX_SPAWN_DUP2, output, 2),
                ],
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as error:
            raise RuntimeSetupError(f"failed to run {what}: {error.strerror}") from None
        os.close(stdin_r)
        stdin_r = -1
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = os.pidfd_open(pid)
        try:
            _feed(pidfd, stdin_w, state, deadline)
            os.close(stdin_w)
            stdin_w = -1
            status = _wait(pid, pidfd, deadline)
        finally:
            os.close(pidfd)
        if status is None:
            raise RuntimeSetupError(f"failed to run {what}: it did not finish within {timeout} s")
        if status != 0:
            raise RuntimeSetupError(f"failed to run {what}: {_describe(status)}{_tail(output)}")
    finally:
        for fd in (stdin_r, stdin_w, output):
            if fd >= 0:
                os.close(fd)


def _feed(pidfd: int, stdin_w: int, state: bytes, deadline: float | None) -> None:
    """Write `state` to the hook's input until it is all written, the hook exits, closes
    its input or runs out of time; a hook need not read it."""
    os.set_blocking(stdin_w, False)
    pending = state
    while pending:
        readable, writable, _ = select.select([pidfd], [stdin_w], [], _left(deadline))
        if readable or not writable:
            return
        try:
            pending = pending[os.write(stdin_w, pending) :]
        except BrokenPipeError:
            return


def _wait(pid: int, pidfd: int, deadline: float | None) -> int | None:
    """The hook's wait status, or None once it has been killed for running past
    `deadline`."""
    if not select.select([pidfd], [], [], _left(deadline))[0]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return os.waitpid(pid, 0)[1]


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit status {code}"


def _tail(output: int) -> str:
    size = os.lseek(output, 0, os.SEEK_END)
    os.lseek(output, max(0, size - OUTPUT_TAIL), os.SEEK_SET)
    text = os.read(output, OUTPUT_TAIL).decode(errors="replace").strip()
    return f": {text}" if text else ""
