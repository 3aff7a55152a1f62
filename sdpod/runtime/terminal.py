"""Terminals: a pty for a container's process, and the user's side of it.

Where the pty comes from: the container's own devpts instance, the private /dev/pts that
every container mounts, with /dev/ptmx linked to its ptmx. The container's process opens
it itself once it is inside, as runc and crun do, and keeps the slave as its controlling
terminal. Inside, the slave is then /dev/pts/N of the container's own numbering, which
`tty` names, belonging to the container's user; no node of the host's /dev/pts is
reachable from inside, nor a hint of the host's other terminals. A pty of the host's
devpts handed in from outside would be a file of a mount the container does not have:
`tty` could not name it, and its owner would be a host id.

The master reaches whoever shows the terminal to a user over a unix socket, as
SCM_RIGHTS with the slave's path as the message: the console socket protocol of the OCI
runtime command line (`--console-socket`). `sdpod exec -t`, `sdpod run -t` and the OCI
command line share it.

On the user's side, `user_terminal` puts the user's terminal in raw mode, so that every
key, Ctrl-C and Ctrl-Z included, reaches the container's line discipline, which turns
them into signals for the container's foreground process group; it keeps the pty's
window size equal to the user's terminal's. `relay` copies between the two.

The container's half runs between fork and exec: it uses only the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty
from collections.abc import Iterator
from dataclasses import dataclass

# <asm-generic/ioctls.h>
TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int): the slave's number
TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int): lock (1) or unlock (0) the slave
TIOCGPTPEER = 0x5441  # _IO('T', 0x41): open the slave through the master (Linux 4.13)

PTMX = "/dev/ptmx"
# What one message of the console socket may carry besides the descriptor: a path.
NAME_MAX = 4096
# After the process has ended, how long output may pause before the relay stops waiting
# for the rest: a command's background children may keep the slave open indefinitely.
QUIET_SECONDS = 0.2
_CHUNK = 65536


@dataclass(frozen=True)
class Pty:
    master: int
    slave: int
    name: str
    """The slave's path in the mount namespace that opened it: `/dev/pts/N`."""


# -- the container's side, between fork and exec -------------------------------------------


def open_pty(ptmx: str = PTMX) -> Pty:
    """A new pty of the devpts instance `ptmx` belongs to; both ends close-on-exec.

    The slave is opened through the master (TIOCGPTPEER), not by its path, so that no
    other file can be put in its place in between. It belongs to the caller's user and
    group (devpts(5)): open it as the user who will use it.
    """
    try:
        master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise OSError(error.errno, f"failed to open {ptmx}: {error.strerror}") from None
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        (number,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, bytes(4)))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        os.close(master)
        raise OSError(error.errno, f"failed to open a pty of {ptmx}: {error.strerror}") from None
    return Pty(master, slave, f"/dev/pts/{number}")


def take_terminal(slave: int) -> None:
    """Make `slave` the calling process's controlling terminal and standard streams.

    The process leaves its session for one of its own (setsid(2), which a process group
    leader may not do), whose terminal the slave becomes (TIOCSCTTY, ioctl_tty(2)). Its
    children inherit both; the process group that a shell puts in the foreground gets
    the terminal's signals.
    """
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def attach_console(console: int) -> None:
    """Give the calling process a pty of its own mount namespace's /dev/ptmx as its
    controlling terminal and standard streams, and send the master over the connected
    unix socket `console`, which is closed here.

    Call it inside the container, as the container's user, before exec.
    """
    pty = open_pty()
    try:
        take_terminal(pty.slave)
        with socket.socket(fileno=console) as sock:
            send_fd(sock, pty.master, pty.name)
    finally:
        os.close(pty.master)


def send_console(console: int, uid: int, gid: int) -> int:
    """Open a pty of the mount namespace's /dev/ptmx, give its slave to `uid` and `gid`
    (-1 keeps the group that devpts gave it), send the master over the connected unix
    socket `console`, which is closed here, and return the slave.

    For a process that must hand over its terminal before it takes its user: the OCI
    runtime's `create` returns only once the master is on its way, as the callers of
    `--console-socket` expect. `take_terminal(slave)` makes it the process's terminal
    later, once it is the container's user.
    """
    pty = open_pty()
    try:
        try:
            os.fchown(pty.slave, uid, gid)
        except OSError as error:
            raise OSError(
                error.errno, f"failed to give {pty.name} to user {uid}: {error.strerror}"
            ) from None
        with socket.socket(fileno=console) as sock:
            send_fd(sock, pty.master, pty.name)
    except BaseException:
        os.close(pty.slave)
        raise
    finally:
        os.close(pty.master)
    return pty.slave


def send_fd(sock: socket.socket, fd: int, name: str) -> None:
    """Send `fd` over the unix socket `sock` as SCM_RIGHTS, with `name` as the message."""
    socket.send_fds(sock, [name.encode()], [fd])


# -- whoever shows the terminal to a user -----------------------------------------------------


def console_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of unix stream sockets: keep the first, and give the second's
    descriptor to the container's process as its console (`attach_console`)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.set_inheritable(True)
    return ours, theirs


def connect_console_socket(path: str) -> socket.socket:
    """A connection to the console socket at `path`, as OCI runtimes take it from
    `--console-socket`: the caller hands its descriptor on to the container's process,
    which sends the master there (`attach_console`), and closes its own copy once the
    container has started. Whoever listens at `path` receives it with `receive_fd`.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        raise OSError(
            error.errno, f"failed to connect to the console socket {path}: {error.strerror}"
        ) from None
    sock.set_inheritable(True)
    return sock


def receive_fd(sock: socket.socket) -> tuple[int, str]:
    """The descriptor that one `send_fd` sent over `sock`, close-on-exec, and its name.

    ConnectionError if the other side closed the socket without sending one.
    """
    message, fds, _, _ = socket.recv_fds(sock, NAME_MAX, 1)
    if not fds:
        raise ConnectionError("the console socket was closed before a terminal was sent")
    os.set_inheritable(fds[0], False)
    return fds[0], message.decode(errors="replace")


def window_size(fd: int) -> bytes | None:
    """The window size of the terminal `fd` (struct winsize), None if it is none."""
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8))
    except OSError:
        return None


def copy_window_size(source: int, target: int) -> None:
    """Give the terminal `target` the window size of `source`, if that is a terminal.

    The kernel then sends SIGWINCH to `target`'s foreground process group.
    """
    size = window_size(source)
    if size is not None:
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def user_terminal(stdin: int | None, stdout: int, master: int) -> Iterator[None]:
    """The user's terminal in raw mode, its window size given to `master` now and at
    each SIGWINCH; both restored on leaving, whether by an error or a signal.

    `stdin` is left as it is where it is not a terminal, or None (no input); the size
    comes from whichever of `stdin` and `stdout` is a terminal.
    """
    typing = stdin if stdin is not None and os.isatty(stdin) else None
    sized = typing if typing is not None else (stdout if os.isatty(stdout) else None)
    saved = termios.tcgetattr(typing) if typing is not None else None

    def resize(_number: int, _frame: object) -> None:
        if sized is not None:
            with contextlib.suppress(OSError):
                copy_window_size(sized, master)

    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        resize(signal.SIGWINCH, None)
        if typing is not None:
            tty.setraw(typing, termios.TCSANOW)
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if typing is not None and saved is not None:
            # A terminal that has hung up has nothing left to restore.
            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(typing, termios.TCSADRAIN, saved)


def relay(master: int, stdin: int | None, stdout: int, ended: int) -> None:
    """Copy `stdin` to `master` and `master` to `stdout` until the process behind the
    pidfd `ended` has exited and its output has been read.

    Output is read on until every holder of the slave has closed it (EIO), or until none
    has come for QUIET_SECONDS. At the end of `stdin`, input stops; the command sees no
    end of its input, as under docker and podman.
    """
    _Relay(master, stdin, stdout, ended).run()


class _Relay:
    def __init__(self, master: int, stdin: int | None, stdout: int, ended: int) -> None:
        self.master, self.stdin, self.stdout, self.ended = master, stdin, stdout, ended
        self.pending = b""
        self.poller = select.poll()
        self.over = False

    def run(self) -> None:
        os.set_blocking(self.master, False)
        self.poller.register(self.master, select.POLLIN)
        self.poller.register(self.ended, select.POLLIN)
        if self.stdin is not None:
            self.poller.register(self.stdin, select.POLLIN)
        while True:
            events = self.poller.poll(QUIET_SECONDS * 1000 if self.over else None)
            if not events:
                return
            for fd, event in events:
                if fd == self.master and not self._master_ready(event):
                    return
                if fd == self.stdin:
                    self._read_input()
                if fd == self.ended:
                    self._end()

    def _master_ready(self, event: int) -> bool:
        """Move what the master has and takes; False once the slave is gone for good."""
        if event & select.POLLOUT:
            self._write_input()
        if not event & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return True
        try:
            data = os.read(self.master, _CHUNK)
        except BlockingIOError:
            return not event & select.POLLHUP
        except OSError as error:
            # EIO: every descriptor of the slave is closed and its output read (pty(7)).
            if error.errno == errno.EIO:
                return False
            raise
        _write_all(self.stdout, data)
        return bool(data)

    def _read_input(self) -> None:
        assert self.stdin is not None
        try:
            data = os.read(self.stdin, _CHUNK)
        except OSError as error:
            # A terminal that has hung up reads as EIO: the end of the input.
            if error.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.poller.unregister(self.stdin)
            self.stdin = None
            return
        self.pending += data
        self.poller.modify(self.master, select.POLLIN | select.POLLOUT)

    def _write_input(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.pending = self.pending[os.write(self.master, self.pending) :]
        if not self.pending:
            self.poller.modify(self.master, select.POLLIN)

    def _end(self) -> None:
        """The process has exited: no more input, only the output that is left."""
        self.over = True
        self.poller.unregister(self.ended)
        if self.stdin is not None:
            self.poller.unregister(self.stdin)
            self.stdin = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
