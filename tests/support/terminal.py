"""A user at a terminal, for tests: a pty whose slave a command gets as its controlling
terminal, and whose master the test types into and reads from.

Like a terminal emulator, it answers a program's question for the cursor position
(ESC [ 6 n, "device status report"): busybox's line editor asks it at each prompt, and
waits for the answer at the end of the line, discarding what is typed meanwhile.

Standard library only. Every wait is a poll with a deadline; a failure shows what the
terminal printed.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

EXPECT_TIMEOUT = 30.0
CURSOR_QUERY = b"\x1b[6n"
CURSOR_ANSWER = b"\x1b[1;1R"


class Terminal:
    """The user's side of a pty running one command: `process`, or, where the command
    runs elsewhere (a container's, whose master came over a console socket), None."""

    def __init__(self, master: int, process: subprocess.Popen[bytes] | None = None) -> None:
        self.master = master
        self.process = process
        self.output = b""
        self._seen = 0
        self._asked = 0

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        size: tuple[int, int] = (24, 80),
    ) -> Terminal:
        """Run `argv` in a session of its own whose controlling terminal is a new pty of
        `size` (rows, columns)."""
        master, slave = os.openpty()
        set_size(slave, *size)

        def take_terminal() -> None:
            # After start_new_session's setsid(2): the slave becomes the controlling
            # terminal, and this process group its foreground.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=None if env is None else dict(env),
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(slave)
        return cls(master, process)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = EXPECT_TIMEOUT) -> re.Match[str]:
        """Read until `pattern` (a regular expression) matches what came since the last
        match; return the match."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output[self._seen :].decode(errors="replace")
            match = compiled.search(text)
            if match:
                self._seen += len(text[: match.end()].encode())
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(
                    f"the terminal did not show {pattern!r}; it showed:\n{self.transcript()}"
                )

    def read_to_end(self, timeout: float = EXPECT_TIMEOUT) -> str:
        """Read until every holder of the slave has closed it; the whole transcript."""
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the terminal stayed open:\n{self.transcript()}")
        return self.transcript()

    def resize(self, rows: int, columns: int) -> None:
        """Change the window size, as a terminal emulator does (SIGWINCH follows)."""
        set_size(self.master, rows, columns)

    def wait(self, timeout: float = EXPECT_TIMEOUT) -> int:
        """Read what is left until the command exits; its exit status."""
        assert self.process is not None, "the command is not this terminal's to wait for"
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        try:
            return self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the command did not exit:\n{self.transcript()}") from None

    def close(self) -> None:
        """Kill the command if it still runs; close the master."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)

    def transcript(self) -> str:
        return self.output.decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        """Read what the master has within `timeout`; False at its end (EIO)."""
        readable, _, _ = select.select([self.master], [], [], timeout)
        if not readable:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        self.output += data
        self._answer_queries()
        return bool(data)

    def _answer_queries(self) -> None:
        while (found := self.output.find(CURSOR_QUERY, self._asked)) >= 0:
            self._asked = found + len(CURSOR_QUERY)
            os.write(self.master, CURSOR_ANSWER)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return rows, columns


# busybox's shell asks where the cursor is after each prompt; what is typed before the
# answer may be lost, so a test types once it has seen (and answered) the question.
PROMPT = r"[#$] \x1b\[6n"
# Foreground jobs that say when they run (the typed line shows `job-$$`, the job
# `job-` and its PID): a key sent after that reaches the job, not the shell starting it.
SLEEPER = "sh -c 'echo job-$$; exec sleep 100'\r"
READER = "sh -c 'echo job-$$; read line; echo read:$line'\r"
JOB_STARTED = r"job-\d+"


def exercise_shell(term: Terminal, size: tuple[int, int]) -> None:
    """Drive an interactive busybox shell on `term`, whose window size is `size`: its
    terminal, window size and job control, as a user would. It is left at a prompt."""
    term.expect(PROMPT)
    term.send("tty\r")
    term.expect(r"/dev/pts/\d+")
    term.expect(PROMPT)
    term.send("stty size\r")
    term.expect(f"{size[0]} {size[1]}")
    term.expect(PROMPT)

    term.resize(size[0] + 7, size[1] + 11)
    term.send("stty size\r")
    term.expect(f"{size[0] + 7} {size[1] + 11}")
    term.expect(PROMPT)

    # Ctrl-C interrupts the foreground job and returns to the prompt.
    term.send(SLEEPER)
    term.expect(JOB_STARTED)
    term.send("\x03")
    term.expect(PROMPT)
    term.send("echo status=$?\r")
    term.expect("status=130")
    term.expect(PROMPT)

    # Ctrl-Z stops the job; `fg` gives it the terminal back, and it reads from it: what
    # is typed meanwhile waits in the terminal's buffer.
    term.send(READER)
    term.expect(JOB_STARTED)
    term.send("\x1a")
    term.expect("Stopped")
    term.expect(PROMPT)
    term.send("fg\r")
    # fg names the job before it continues it: the shell has taken the line by then.
    term.expect(r"fg\s+sh -c")
    term.send("typed\r")
    term.expect("read:typed")
    term.expect(PROMPT)
