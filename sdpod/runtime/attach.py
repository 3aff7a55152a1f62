"""The caller's side of a container's process in the foreground (`sdpod run`, `exec -t`).

While the process runs, the signals that would end the caller go to it instead
(`Forwarder`), its terminal is relayed to the user's (`sdpod.runtime.terminal`), and its
end becomes the caller's exit status, as a shell reports it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType, TracebackType

from sdpod.runtime import terminal

SIGNAL_EXIT_BASE = 128
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def exit_status(wait_status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 plus the signal."""
    code = os.waitstatus_to_exitcode(wait_status)
    return SIGNAL_EXIT_BASE - code if code < 0 else code


class Forwarder:
    """While in use, SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to the caller go to a
    process of the container instead of ending the caller, which then cleans up once
    the process has ended. Signals that come before that process is known (`target`)
    are sent when it is; those after `drop` are ignored.
    """

    def __init__(self, numbers: tuple[signal.Signals, ...] = FORWARDED_SIGNALS) -> None:
        self._numbers = numbers
        self._target = 0
        self._dropping = False
        self._pending: list[int] = []
        self._previous: list[signal._HANDLER] = []

    def __enter__(self) -> Forwarder:
        self._previous = [signal.signal(number, self._handle) for number in self._numbers]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for number, handler in zip(self._numbers, self._previous, strict=True):
            signal.signal(number, handler)

    def target(self, pid: int) -> None:
        """Send what comes from now on, and what came before, to `pid`."""
        if pid <= 0:
            raise ValueError(f"cannot forward signals to PID {pid}")
        self._target = pid
        pending, self._pending = self._pending, []
        for number in pending:
            self._send(number)

    def drop(self) -> None:
        """Ignore what comes from now on: the process is gone, the caller cleans up."""
        self._dropping = True

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        if self._dropping:
            return
        if self._target:
            self._send(number)
        else:
            self._pending.append(number)

    def _send(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._target, number)


def wait_attached(
    pid: int, master: int | None = None, stdin: int | None = 0, stdout: int = 1
) -> int:
    """Wait for the caller's child `pid`; return its exit status as a shell reports it.

    With a `master`, the pty of the process's terminal is relayed to `stdin` (None: no
    input) and `stdout` meanwhile, the user's terminal in raw mode.
    """
    if master is not None:
        ended = os.pidfd_open(pid)
        try:
            with terminal.user_terminal(stdin, stdout, master):
                terminal.relay(master, stdin, stdout, ended)
        finally:
            os.close(ended)
    _, status = os.waitpid(pid, 0)
    return exit_status(status)
