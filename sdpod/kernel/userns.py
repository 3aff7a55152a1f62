"""User namespaces: the subordinate id ranges of a user, and mapping a process into them.

Rootless, only the setuid helpers `newuidmap` and `newgidmap` (Debian package `uidmap`)
may map ids other than the user's own, and only the ranges that /etc/subuid and
/etc/subgid grant (subuid(5)). A user without ranges still gets a namespace in which
their own id is root, and nothing else.
"""

from __future__ import annotations

import hashlib
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

    @property
    def host_root(self) -> tuple[int, int]:
        """The host uid and gid of the namespace's root (config refuses maps without one)."""
        uid, gid = host_id(self.uids, 0), host_id(self.gids, 0)
        if uid is None or gid is None:
            raise RuntimeSetupError("failed to find the container's root: id 0 is not mapped")
        return uid, gid

    @property
    def fingerprint(self) -> str:
        """A short name of the mapping that stays the same for the same ranges, in any
        order, and differs for any other mapping: sixteen hex digits of its SHA-256."""

        def text(ranges: tuple[IdRange, ...]) -> str:
            ordered = sorted(ranges, key=lambda r: r.container_id)
            return ",".join(f"{r.container_id}:{r.host_id}:{r.size}" for r in ordered)

        canonical = f"uid={text(self.uids)};gid={text(self.gids)}"
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def host_id(ranges: Sequence[IdRange], container_id: int) -> int | None:
    """The host id that `container_id` is under `ranges`, None where no range maps it."""
    for r in ranges:
        if r.container_id <= container_id < r.container_id + r.size:
            return r.host_id + container_id - r.container_id
    return None


@dataclass(frozen=True)
class Grants:
    """What a user may map in a user namespace of their own: their own ids, and the
    (start, count) ranges of /etc/subuid and /etc/subgid."""

    user: str
    uid: int
    gid: int
    subuids: tuple[tuple[int, int], ...]
    subgids: tuple[tuple[int, int], ...]

    @classmethod
    def of_caller(cls) -> Grants:
        uid, gid = os.getuid(), os.getgid()
        user = pwd.getpwuid(uid).pw_name
        subuids = tuple(subordinate_ranges(SUBUID, user, uid))
        return cls(user, uid, gid, subuids, tuple(subordinate_ranges(SUBGID, user, uid)))


def keep_id_ranges(own_id: int, granted: Sequence[tuple[int, int]]) -> tuple[IdRange, ...]:
    """The user's own id stays the same inside; the subordinate ids, in order, fill the
    container's ids from 0 up around it, as podman's `--userns=keep-id` lays them out."""
    ranges = [IdRange(own_id, own_id, 1)]
    next_id = 0
    for start, count in granted:
        while count > 0:
            if next_id == own_id:
                next_id += 1
            size = count if next_id > own_id else min(count, own_id - next_id)
            ranges.append(IdRange(next_id, start, size))
            next_id, start, count = next_id + size, start + size, count - size
    return tuple(sorted(ranges, key=lambda r: r.container_id))


def keep_id_mapping(grants: Grants) -> IdMapping:
    return IdMapping(
        uids=keep_id_ranges(grants.uid, grants.subuids),
        gids=keep_id_ranges(grants.gid, grants.subgids),
    )


def ungranted(
    ranges: Sequence[IdRange], own_id: int, granted: Sequence[tuple[int, int]]
) -> IdRange | None:
    """The first of `ranges` that newuidmap(1) and newgidmap(1) would refuse, or None.

    They allow the caller's own id alone (a range of one), and host ids that lie within
    the granted ranges; a range may run on through ranges that adjoin each other.
    """
    for r in ranges:
        if r.size == 1 and r.host_id == own_id:
            continue
        if not _covered(r.host_id, r.host_id + r.size, granted):
            return r
    return None


def _covered(first: int, end: int, granted: Sequence[tuple[int, int]]) -> bool:
    position = first
    while position < end:
        holder = next((s + c for s, c in granted if s <= position < s + c), None)
        if holder is None:
            return False
        position = holder
    return True


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


def _ranges_for(own_id: int, granted: Sequence[tuple[int, int]]) -> tuple[IdRange, ...]:
    # The user's own id becomes root; the granted ranges follow from id 1 on, in order.
    ranges = [IdRange(0, own_id, 1)]
    next_id = 1
    for start, count in granted:
        ranges.append(IdRange(next_id, start, count))
        next_id += count
    return tuple(ranges)


def rootless_mapping() -> IdMapping:
    """The default mapping for the calling user: own id as root, then the subordinate ids."""
    grants = Grants.of_caller()
    user = grants.user
    mapping = IdMapping(
        uids=_ranges_for(grants.uid, grants.subuids),
        gids=_ranges_for(grants.gid, grants.subgids),
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
    """Take the namespace's root ids, once the parent has written the maps.

    Where root inside is another host id than the caller's (keep-id, explicit maps), the
    change of ids leaves the process non-dumpable (prctl(2), PR_SET_DUMPABLE), and only
    CAP_SYS_PTRACE over the host could then open its /proc/PID/ns files: slirp4netns could
    not join its network. It is made dumpable again, as runc does; exec(2) decides afresh.
    """
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 1)


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
