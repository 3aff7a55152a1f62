"""The parent's side of starting a container: fork its processes (`container.run_child`),
map their ids, give them their cgroup, take part in the hooks, release the init.

Shared by the unit's launcher (`launch`), which releases the init through a pipe as
soon as the network is up, and the OCI runtime's `create`, which leaves the init
waiting on the container's exec FIFO for `start`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdpod.errors import RuntimeSetupError
from sdpod.kernel.userns import IdMapping, IdRange, map_ids
from sdpod.runtime import cgroup, namespaces, shared
from sdpod.runtime.container import CREATED, HOOKS_NOW, Channels, Trees, run_child


def mapping_of(spec: dict[str, Any]) -> IdMapping:
    def ranges(key: str) -> tuple[IdRange, ...]:
        entries = spec["linux"].get(key, [])
        return tuple(IdRange(e["containerID"], e["hostID"], e["size"]) for e in entries)

    return IdMapping(uids=ranges("uidMappings"), gids=ranges("gidMappings"))


class _Pipes:
    """Every pipe of `Channels`, with both ends, so that each side closes the others."""

    def __init__(self) -> None:
        self.to_child = os.pipe()
        self.from_child = os.pipe()
        self.go = os.pipe()
        self.errors = os.pipe2(os.O_CLOEXEC)

    def child_side(self, **extras: Any) -> Channels:
        for fd in (self.to_child[1], self.from_child[0], self.go[1], self.errors[0]):
            os.close(fd)
        ends = (self.to_child[0], self.from_child[1], self.go[0], self.errors[1])
        return Channels(*ends, **extras)

    def parent_side(self) -> None:
        for fd in (self.to_child[0], self.from_child[1], self.go[0], self.errors[1]):
            os.close(fd)

    def close(self) -> None:
        for fd in (self.to_child[1], self.from_child[0], self.go[1], self.errors[0]):
            with contextlib.suppress(OSError):
                os.close(fd)


class Creation:
    """A container whose processes run and whose init is not yet released into exec.

    The descriptors in `trees` and `joined` are the child's from now on: they are
    closed here once it has them. `console`, a connected unix socket that the init sends
    its terminal's master to (`sdpod.runtime.terminal.connect_console_socket`), stays
    the caller's to close.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        rootfs: str,
        *,
        trees: Trees = (),
        joined: shared.Joined = (),
        exec_fifo: int = -1,
        hooks: bool = False,
        console: int = -1,
    ) -> None:
        self.spec = spec
        self.init = 0
        self._pipes = _Pipes()
        self._map_user = namespaces.creates(spec, "user") and not shared.joins_user(joined)
        self._child = os.fork()
        if self._child == 0:
            channels = self._pipes.child_side(
                trees=trees, joined=joined, exec_fifo=exec_fifo, hooks=hooks, console=console
            )
            run_child(spec, rootfs, channels)
        self._pipes.parent_side()
        for fd, _ in trees + joined:
            os.close(fd)

    def prepare(self, leaf: Path | None) -> int:
        """Map the child's ids, unless it joined a user namespace mapped already or has
        none, and move it into the cgroup `leaf`; return the PID of the container's init."""
        pipes = self._pipes
        try:
            if os.read(pipes.from_child[0], 1) != b"u":
                raise RuntimeSetupError(self._failure("create the namespaces"))
            if self._map_user:
                map_ids(self._child, mapping_of(self.spec))
            if leaf:
                cgroup.move(self._child, leaf)
            os.write(pipes.to_child[1], b"m")

            reply = _read_line(pipes.from_child[0])
            if not reply.strip().isdigit():
                raise RuntimeSetupError(self._failure("start the container"))
            self.init = int(reply)
            return self.init
        finally:
            os.waitpid(self._child, 0)

    def take_part_in_hooks(self, run_runtime_hooks: Callable[[], bytes]) -> None:
        """Once the init has built the container's mounts, run the runtime's hooks and
        send the init the state its own hooks get."""
        if os.read(self._pipes.from_child[0], 1) != HOOKS_NOW:
            raise RuntimeSetupError(self._failure("start the container"))
        state = run_runtime_hooks()
        os.write(self._pipes.to_child[1], state.strip() + b"\n")

    def wait_until_created(self) -> None:
        """Wait until the init waits on the exec FIFO, everything else done."""
        if os.read(self._pipes.from_child[0], 1) != CREATED:
            raise RuntimeSetupError(self._failure("create the container"))

    def release(self) -> None:
        """Let the init exec the command (launcher only), and wait until it has."""
        try:
            os.write(self._pipes.go[1], b"g")
        except BrokenPipeError:
            # The init failed before its release: its own report says why.
            text = _read_all(self._pipes.errors[0]) or "its init exited before it was released"
            raise RuntimeSetupError(f"failed to start the container: {text}") from None
        # The errors pipe is close-on-exec: end of file without text means exec succeeded.
        text = _read_all(self._pipes.errors[0])
        if text:
            raise RuntimeSetupError(f"failed to start the container: {text}")

    def raise_if_failed(self, grace: float) -> None:
        """Raise the init's own failure, if it reports one within `grace` seconds."""
        readable, _, _ = select.select([self._pipes.errors[0]], [], [], grace)
        if readable and (text := _read_all(self._pipes.errors[0])):
            raise RuntimeSetupError(f"failed to start the container: {text}")

    def kill(self) -> None:
        if self.init:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init, signal.SIGKILL)

    def close(self) -> None:
        self._pipes.close()

    def _failure(self, step: str) -> str:
        reason = _read_all(self._pipes.errors[0]) or "the child exited without a reason"
        return f"failed to {step}: {reason}"


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n") and (chunk := os.read(fd, 1)):
        data += chunk
    return data.decode()


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
