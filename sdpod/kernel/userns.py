"""User namespaces: the subordinate id ranges of a user, and mapping a process into them.

Rootless, only the setuid helpers `newuidmap` and `newgidmap` (Debian package `uidmap`)
may map ids other than the user's own, and only the ranges that /etc/subuid and
/etc/subgid grant (subuid(5)). A user without ranges still gets a namespace in which
their own id is root, and nothing else.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import RuntimeSetupError
from sdpod.kernel import syscalls

log = logging.getLogger(__name__)

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


@dataclass(frozen=True)
class IdRange:
    """`size` ids starting at `container_id` inside map to ids from `host_id` outside."""

    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True)
class IdMapping:
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]

    @property
    def is_single_id(self) -> bool:
        return len(self.uids) == 1 and self.uids[0].size == 1


def granted_ranges(path: Path) -> list[tuple[str, int, int]]:
    """Every (owner, start, count) that `path` (subuid(5) format) grants, in order."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []

    ranges = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            ranges.append((fields[0], int(fields[1]), int(fields[2])))
    return ranges


def subordinate_ranges(path: Path, user: str, uid: int) -> list[tuple[int, int]]:
    """The (start, count) ranges that `path` grants to `user` (by name or by number)."""
    owners = (user, str(uid))
    return [(start, count) for owner, start, count in granted_ranges(path) if owner in owners]


def _ranges_for(own_id: int, granted: list[tuple[int, int]]) -> tuple[IdRange, ...]:
    # The user's own id becomes root; the granted ranges follow from id 1 on, in order.
    ranges = [IdRange(0, own_id, 1)]
    next_id = 1
    for start, count in granted:
        ranges.append(IdRange(next_id, start, count))
        next_id += count
    return tuple(ranges)


def rootless_mapping() -> IdMapping:
    """The default mapping for the calling user: own id as root, then the subordinate ids."""
    uid, gid = os.getuid(), os.getgid()
    user = pwd.getpwuid(uid).pw_name
    mapping = IdMapping(
        uids=_ranges_for(uid, subordinate_ranges(SUBUID, user, uid)),
        gids=_ranges_for(gid, subordinate_ranges(SUBGID, user, uid)),
    )
    if mapping.is_single_id:
        first, last = free_range()
        log.warning(
            "user %s has no subordinate ids in %s and %s: containers get a single-id "
            "mapping, so the image's files must all belong to root and the container "
            "cannot switch to another user; add a range no other user has, for example "
            "`sudo usermod --add-subuids %d-%d --add-subgids %d-%d %s`",
            user,
            SUBUID,
            SUBGID,
            first,
            last,
            first,
            last,
            user,
        )
    return mapping


def free_range(size: int = 65536) -> tuple[int, int]:
    """The first and last id of a block above every range /etc/subuid and /etc/subgid grant."""
    granted = granted_ranges(SUBUID) + granted_ranges(SUBGID)
    end = max([100000, *(start + count for _, start, count in granted)])
    return end, end + size - 1


def _helper_argv(helper: str, pid: int, ranges: Sequence[IdRange]) -> list[str]:
    path = shutil.which(helper) or f"/usr/bin/{helper}"
    argv = [path, str(pid)]
    for r in ranges:
        argv += [str(r.container_id), str(r.host_id), str(r.size)]
    return argv


def _run_map_helper(helper: str, pid: int, ranges: Sequence[IdRange]) -> None:
    argv = _helper_argv(helper, pid, ranges)
    log.debug("running %s", subprocess.list2cmdline(argv))
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RuntimeSetupError(
            f"failed to map ids for process {pid}: {helper} is not installed",
            hint="install Debian's package `uidmap`",
        ) from None
    if result.returncode != 0:
        raise RuntimeSetupError(
            f"failed to map ids for process {pid}: {helper}: {result.stderr.strip()}",
            hint="check the ranges for this user in /etc/subuid and /etc/subgid",
        )


def _write_map_directly(pid: int, name: str, ranges: Sequence[IdRange]) -> None:
    text = "".join(f"{r.container_id} {r.host_id} {r.size}\n" for r in ranges)
    Path(f"/proc/{pid}/{name}").write_text(text)


def map_ids(pid: int, mapping: IdMapping) -> None:
    """Write the uid and gid maps of the user namespace that `pid` has just entered."""
    if os.geteuid() == 0:
        _write_map_directly(pid, "uid_map", mapping.uids)
        _write_map_directly(pid, "gid_map", mapping.gids)
        return

    # A single-id mapping of the caller's own ids needs no helper, but the kernel then
    # requires setgroups to be denied first (user_namespaces(7)).
    if mapping.is_single_id and len(mapping.gids) == 1:
        Path(f"/proc/{pid}/setgroups").write_text("deny")
        _write_map_directly(pid, "uid_map", mapping.uids)
        _write_map_directly(pid, "gid_map", mapping.gids)
        return

    _run_map_helper("newuidmap", pid, mapping.uids)
    _run_map_helper("newgidmap", pid, mapping.gids)


def become_root_inside() -> None:
    """Take the namespace's root ids, once the parent has written the maps."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def open_userns(mapping: IdMapping) -> int:
    """A file descriptor of a new user namespace with `mapping`, which no process uses.

    A child enters the namespace, the parent maps it and opens it, and the child exits;
    the namespace lives on as long as the descriptor is open.
    """
    unshared_r, unshared_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(unshared_r)
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            os.write(unshared_w, b"1")
            # Stay until the parent, having opened the namespace, kills this process.
            signal.pause()
            code = 0
        finally:
            os._exit(code)

    os.close(unshared_w)
    try:
        if os.read(unshared_r, 1) != b"1":
            raise RuntimeSetupError("failed to create a user namespace for an id mapping")
        map_ids(pid, mapping)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(unshared_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def run_in_userns(mapping: IdMapping, work: Callable[[], None]) -> None:
    """Run `work` in a forked child that is root of a new user namespace with `mapping`.

    The child only reaches the caller's code through `work`; whatever happens, it ends
    with `os._exit`. An exception in `work` is sent back as text and raised here again
    as a RuntimeSetupError, since the child's objects cannot cross the fork.
    """
    unshared_r, unshared_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    error_r, error_w = os.pipe()

    pid = os.fork()
    if pid == 0:
        os.close(unshared_r)
        os.close(mapped_w)
        os.close(error_r)
        _userns_child(work, unshared_w, mapped_r, error_w)

    os.close(unshared_w)
    os.close(mapped_r)
    os.close(error_w)
    try:
        _map_child(pid, mapping, unshared_r, mapped_w)
    finally:
        os.close(mapped_w)
        message = _read_all(error_r)
        os.waitpid(pid, 0)
    if message:
        raise RuntimeSetupError(message)


def _map_child(pid: int, mapping: IdMapping, unshared_r: int, mapped_w: int) -> None:
    ready = os.read(unshared_r, 1)
    os.close(unshared_r)
    if ready != b"1":
        return
    map_ids(pid, mapping)
    os.write(mapped_w, b"1")


def _userns_child(work: Callable[[], None], unshared_w: int, mapped_r: int, error_w: int) -> None:
    code = 1
    try:
        syscalls.unshare(syscalls.CLONE_NEWUSER)
        os.write(unshared_w, b"1")
        if os.read(mapped_r, 1) != b"1":
            raise RuntimeSetupError("the parent could not map the user namespace's ids")
        become_root_inside()
        work()
        code = 0
    except BaseException as error:
        os.write(error_w, str(error).encode(errors="replace") or repr(error).encode())
    finally:
        os._exit(code)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")
