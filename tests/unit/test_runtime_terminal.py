"""`sdpod.runtime.terminal` and `attach` on real ptys of this machine: no privileges.

A forked child takes a pty's slave as `attach_console` would give it, and runs a real
shell on it; the test is the user's side, through `relay`, `user_terminal` and
`wait_attached`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.terminal import get_size, set_size

from sdpod.runtime import attach, terminal


@pytest.fixture
def pty() -> Iterator[terminal.Pty]:
    opened = terminal.open_pty()
    yield opened
    for fd in (opened.master, opened.slave):
        with contextlib.suppress(OSError):
            os.close(fd)


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail, rather than hang, if the body blocks for good."""

    def expire(_number: int, _frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def spawn_on(slave: int, script: str) -> int:
    """Fork a child that takes `slave` as its terminal and runs `sh -c script`."""
    pid = os.fork()
    if pid == 0:
        try:
            terminal.take_terminal(slave)
            os.execv("/bin/sh", ["sh", "-c", script])
        finally:
            os._exit(127)
    return pid


def test_a_pty_is_named_as_ttyname_names_it_and_is_close_on_exec(pty: terminal.Pty) -> None:
    assert pty.name == os.ttyname(pty.slave)
    assert not os.get_inheritable(pty.master)
    assert not os.get_inheritable(pty.slave)
    os.write(pty.slave, b"out")
    assert os.read(pty.master, 3) == b"out"


def test_a_missing_ptmx_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"failed to open {tmp_path}/ptmx"):
        terminal.open_pty(str(tmp_path / "ptmx"))


def test_a_descriptor_crosses_the_console_socket_with_its_name(pty: terminal.Pty) -> None:
    ours, theirs = terminal.console_pair()
    with ours, theirs:
        assert theirs.get_inheritable()
        terminal.send_fd(theirs, pty.master, pty.name)
        received, name = terminal.receive_fd(ours)
    try:
        assert name == pty.name
        assert os.fstat(received).st_rdev == os.fstat(pty.master).st_rdev
        assert not os.get_inheritable(received)
    finally:
        os.close(received)


def test_a_console_socket_closed_without_a_terminal_is_an_error() -> None:
    ours, theirs = terminal.console_pair()
    theirs.close()
    with ours, pytest.raises(ConnectionError, match="closed before a terminal was sent"):
        terminal.receive_fd(ours)


def test_a_console_socket_is_reached_by_its_path(tmp_path: Path, pty: terminal.Pty) -> None:
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        with terminal.connect_console_socket(path) as sock:
            assert sock.get_inheritable()
            terminal.send_fd(sock, pty.master, pty.name)
        connection, _ = listener.accept()
        with connection:
            received, name = terminal.receive_fd(connection)
    os.close(received)
    assert name == pty.name


def test_a_console_socket_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="failed to connect to the console socket"):
        terminal.connect_console_socket(str(tmp_path / "none"))


def test_attach_console_gives_the_process_a_terminal_and_sends_the_master() -> None:
    ours, theirs = terminal.console_pair()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            terminal.attach_console(theirs.detach())
            # Field 6 of /proc/PID/stat is the session (proc(5)).
            script = 'tty; cut -d" " -f6 /proc/$$/stat; echo "self $$"'
            os.execv("/bin/sh", ["sh", "-c", script])
        finally:
            os._exit(127)
    theirs.close()
    with ours:
        master, name = terminal.receive_fd(ours)
    output = os.memfd_create("output")
    try:
        with os.fdopen(os.pidfd_open(pid)) as ended:
            terminal.relay(master, None, output, ended.fileno())
        text = read_all(output).decode()
    finally:
        os.close(output)
        os.close(master)
    _, status = os.waitpid(pid, 0)
    assert attach.exit_status(status) == 0, text
    lines = text.split()
    # The shell's terminal is the slave, and it leads a session of its own.
    assert lines[0] == name
    assert lines[1] == lines[3] == str(pid)


def test_window_sizes_are_copied_between_terminals(pty: terminal.Pty) -> None:
    other = terminal.open_pty()
    try:
        set_size(pty.slave, 31, 97)
        terminal.copy_window_size(pty.slave, other.master)
        assert get_size(other.slave) == (31, 97)
        with open(os.devnull) as null:
            assert terminal.window_size(null.fileno()) is None
    finally:
        os.close(other.master)
        os.close(other.slave)


def test_the_users_terminal_is_raw_while_relayed_and_restored_after(pty: terminal.Pty) -> None:
    """`pty` is the user's terminal; the container's pty gets its size."""
    inner = terminal.open_pty()
    set_size(pty.slave, 40, 120)
    before = termios.tcgetattr(pty.slave)
    try:
        with terminal.user_terminal(pty.slave, pty.slave, inner.master):
            assert not termios.tcgetattr(pty.slave)[3] & (termios.ICANON | termios.ISIG)
            assert get_size(inner.slave) == (40, 120)
            set_size(pty.slave, 50, 132)
            os.kill(os.getpid(), signal.SIGWINCH)
            assert get_size(inner.slave) == (50, 132)
        assert termios.tcgetattr(pty.slave) == before

        with pytest.raises(RuntimeError), terminal.user_terminal(pty.slave, 1, inner.master):
            raise RuntimeError("something failed while relaying")
        assert termios.tcgetattr(pty.slave) == before
        assert signal.getsignal(signal.SIGWINCH) == signal.SIG_DFL
    finally:
        os.close(inner.master)
        os.close(inner.slave)


def test_input_and_output_are_relayed_and_the_status_returned(pty: terminal.Pty) -> None:
    child = spawn_on(pty.slave, 'tty; read line; echo "got:$line"; exit 5')
    os.close(pty.slave)
    typed_r, typed_w = os.pipe()
    os.write(typed_w, b"hello\n")
    os.close(typed_w)
    output = os.memfd_create("output")
    try:
        status = attach.wait_attached(child, pty.master, typed_r, output)
        text = read_all(output).decode()
    finally:
        os.close(output)
        os.close(typed_r)
    assert status == 5
    assert pty.name in text.split()
    # The slave's line discipline echoes the input, and the command answers it.
    assert "hello\r\n" in text.replace("got:hello\r\n", "")
    assert "got:hello\r\n" in text


def test_a_signal_death_is_128_plus_the_signal(pty: terminal.Pty) -> None:
    child = spawn_on(pty.slave, "kill -KILL $$")
    os.close(pty.slave)
    output = os.memfd_create("output")
    try:
        assert attach.wait_attached(child, pty.master, None, output) == 128 + 9
    finally:
        os.close(output)


def test_the_relay_ends_although_a_background_process_holds_the_terminal(
    pty: terminal.Pty,
) -> None:
    # The background sleep ignores the hangup that the shell's exit sends.
    child = spawn_on(pty.slave, "trap '' HUP; sleep 60 & echo \"holder $!\"")
    os.close(pty.slave)
    output = os.memfd_create("output")
    try:
        with deadline(30):
            assert attach.wait_attached(child, pty.master, None, output) == 0
        text = read_all(output).decode()
    finally:
        os.close(output)
    holder = int(text.split("holder ")[1].split()[0])
    # The relay has returned while the sleep still runs, holding the slave.
    os.kill(holder, 0)
    os.kill(holder, signal.SIGKILL)


def test_forwarded_signals_wait_for_their_target_and_stop_after_drop() -> None:
    sleeper = os.fork()
    if sleeper == 0:
        try:
            os.execv("/bin/sleep", ["sleep", "60"])
        finally:
            os._exit(127)
    with attach.Forwarder() as forwarder:
        os.kill(os.getpid(), signal.SIGTERM)
        forwarder.target(sleeper)
        _, status = os.waitpid(sleeper, 0)
        forwarder.drop()
        os.kill(os.getpid(), signal.SIGINT)
    assert attach.exit_status(status) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
