"""What runs inside the new namespaces, between fork and exec.

Two processes run here. The first enters the namespaces the spec joins by path, then a
new user namespace if the spec asks for one, and waits for the parent to map its ids;
it then creates the other namespaces and forks the container's init, which is PID 1 of
a new PID namespace. That second process builds the root file system, pivots into it,
waits to be released, and execs the container's command. It is released by the
launcher's word on a pipe (`go`), or, for `sdpod runtime create`, by `start` opening
the container's exec FIFO. Both end in `os._exit` or `execve`: neither can ever return
into the parent's code. Only the system call boundary, the pure mount plan and the
terminal's helpers (standard library only) are used.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from typing import Any, NoReturn

from sdpod.kernel import seccomp, syscalls, userns
from sdpod.runtime import hooks, mounts, namespaces, provision, shared, terminal
from sdpod.runtime.process import (
    apply_process,
    check_command,
    close_fds_but,
    exec_command,
    process_environment,
    set_oom_score_adj,
)
from sdpod.runtime.spec import ANNOTATION_OVERLAY, INIT_PATH, overlay_mount

Trees = tuple[tuple[int, str], ...]

# The bytes the init sends its parent on `from_child`: a runtime hook may run now (the
# parent answers with the state's JSON on a line); and the container is created.
HOOKS_NOW = b"h"
CREATED = b"c"
# What the init writes on the exec FIFO once `start` has opened it.
RELEASED = b"0"


@dataclass(frozen=True)
class Channels:
    """The pipes between the parent and the two processes it starts.

    `to_child`/`from_child` carry single bytes, the init's PID and the state for hooks;
    `go` releases the init into exec, unless `exec_fifo` (an O_PATH descriptor of the
    FIFO) does; `errors` (close-on-exec) carries a failure's text, and reaches its end
    of file without text when exec succeeds. Once released through the FIFO, the init
    reports failures on the FIFO instead.
    """

    to_child: int
    from_child: int
    go: int
    errors: int
    trees: Trees = ()
    """Detached idmapped mounts, each with the path to attach it at: the image's, which
    the overlay then uses as its lower layer, and those of volumes marked idmap."""
    joined: shared.Joined = ()
    """Namespaces of another container to enter instead of creating them."""
    exec_fifo: int = -1
    hooks: bool = False
    """Whether the parent takes part in the spec's hooks; the launcher does not."""
    console: int = -1
    """A connected unix socket that the init sends its terminal's master to, where
    `process.terminal` asks for one (`sdpod.runtime.terminal`)."""


def run_child(spec: dict[str, Any], rootfs: str, channels: Channels) -> NoReturn:
    """The first process: namespaces, then fork the container's init."""
    try:
        # A joined user namespace is mapped already: the parent maps only a new one.
        joined_user = shared.enter(channels.joined)
        if not joined_user and namespaces.creates(spec, "user"):
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        os.write(channels.from_child, b"u")
        if os.read(channels.to_child, 1) != b"m":
            os._exit(1)
        if joined_user or namespaces.has(spec, "user"):
            userns.become_root_inside()

        syscalls.unshare(namespaces.new_flags(spec))
        init = os.fork()
        if init == 0:
            _run_init(spec, rootfs, channels)
        os.write(channels.from_child, f"{init}\n".encode())
        os._exit(0)
    except BaseException as error:
        _report(channels.errors, error)
        os._exit(1)


def _run_init(spec: dict[str, Any], rootfs: str, channels: Channels) -> NoReturn:
    """The second process, PID 1 of the container: root file system, then exec."""
    errors = channels.errors
    try:
        _build_root(spec, rootfs, channels.trees)
        provision.make_working_dir(spec, rootfs)
        provision.write_secrets(spec, rootfs)
        provision.shift_volumes(spec, rootfs)
        provision.apply_sysctls(spec)
        _set_names(spec)
        if namespaces.creates(spec, "network"):
            syscalls.set_link_up("lo")
        set_oom_score_adj(spec["process"])
        if spec.get("linux", {}).get("seccomp"):
            seccomp.preload()
        state = _runtime_hooks(spec, channels)
        hooks.run_all(spec, "createContainer", state)
        _pivot_into(rootfs)
        _propagate_root(spec)
        if spec["root"].get("readonly"):
            _make_root_read_only()
        process = spec["process"]
        check_command(_payload(process["args"]), process_environment(process).get("PATH", ""))
        slave = _send_terminal(spec, channels.console)
        errors = _wait_for_release(channels)
        hooks.run_all(spec, "startContainer", _with_status(state, "created"))
        _exec_process(spec, errors, slave)
    except BaseException as error:
        _report(errors, error)
    os._exit(127)


def _build_root(spec: dict[str, Any], rootfs: str, trees: Trees) -> None:
    # Nothing mounted here may propagate back to the host (mount_namespaces(7)); the
    # host's mounts reach the container where rootfsPropagation makes it a slave.
    propagation = _root_propagation(spec)
    slave = propagation & syscalls.MS_SLAVE
    syscalls.mount(None, "/", None, propagation if slave else _PRIVATE)
    for tree, attach in trees:
        syscalls.move_mount(tree, attach)

    overlay = spec.get("annotations", {}).get(ANNOTATION_OVERLAY)
    if not overlay:
        syscalls.mount(rootfs, rootfs, None, syscalls.MS_BIND | syscalls.MS_REC)
    elif "lowers" in (dirs := json.loads(overlay)):
        _mount_layers(dirs, rootfs)
    else:
        # A bundle made by an sdpod before shared layers: one lower, the image's tree.
        if dirs.get("idmap_lower"):
            dirs["lower"] = dirs["idmap_lower"]
        syscalls.mount("overlay", rootfs, "overlay", 0, _overlay_data(dirs))

    # Before the volumes hide it, what the image holds where they go fills new ones.
    provision.populate_volumes(spec, rootfs)
    mounts.execute(mounts.plan_mounts(spec), rootfs)


_PRIVATE = syscalls.MS_REC | syscalls.MS_PRIVATE


def _root_propagation(spec: dict[str, Any]) -> int:
    """The mount(2) flags of the spec's rootfsPropagation; private, recursively, without."""
    name = spec.get("linux", {}).get("rootfsPropagation")
    if not name:
        return _PRIVATE
    options = mounts.parse_options([name])
    if not options.propagation:
        valid = ", ".join(mounts.PROPAGATIONS)
        raise ValueError(f"failed to set the root's propagation: unknown {name!r}; valid: {valid}")
    return options.propagation


def _propagate_root(spec: dict[str, Any]) -> None:
    """Make the new root shared or unbindable, as the spec asks. pivot_root(2) refuses
    shared mounts, so this comes after it: the container's mounts then share among
    themselves, not with the host's."""
    propagation = _root_propagation(spec)
    if propagation & (syscalls.MS_SHARED | syscalls.MS_UNBINDABLE):
        syscalls.mount(None, "/", None, propagation)


def _mount_layers(dirs: dict[str, Any], rootfs: str) -> None:
    """Mount the image's layer trees at `attach/<index>` (as root the launcher attached
    idmapped views there already), then the overlay of them all, named from there."""
    target = os.path.abspath(rootfs)
    if not dirs.get("idmap"):
        for index, lower in enumerate(dirs["lowers"]):
            syscalls.mount(lower, os.path.join(dirs["attach"], str(index)), None, syscalls.MS_BIND)
    where, data = overlay_mount(dirs)
    os.chdir(where)
    syscalls.mount("overlay", target, "overlay", 0, data)
    os.chdir("/")


def _overlay_data(dirs: dict[str, str]) -> str:
    # userxattr: an unprivileged overlay keeps its metadata in user.* xattrs (overlayfs docs).
    return f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']},userxattr"


def _set_names(spec: dict[str, Any]) -> None:
    if "hostname" in spec:
        syscalls.sethostname(spec["hostname"])
    if "domainname" in spec:
        syscalls.setdomainname(spec["domainname"])


def _make_root_read_only() -> None:
    # A bind remount changes only the root's own mount: volumes and the tmpfs mounts on
    # top keep their modes. The flags the kernel locked on it must be repeated.
    flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    syscalls.mount(None, "/", None, flags | mounts.locked_flags("/"))


def _pivot_into(rootfs: str) -> None:
    # Pivoting the root onto itself and detaching the old one leaves no path to the host's
    # files and needs no directory for the old root (pivot_root(2), NOTES).
    os.chdir(rootfs)
    syscalls.pivot_root(".", ".")
    # Where rootfsPropagation is not recursive, mounts of the old root may still be
    # shared with the host's: as slaves, their unmounting stays here (mount_namespaces(7)).
    syscalls.mount(None, ".", None, syscalls.MS_SLAVE | syscalls.MS_REC)
    syscalls.umount(".", syscalls.MNT_DETACH)
    os.chdir("/")


def _runtime_hooks(spec: dict[str, Any], channels: Channels) -> bytes:
    """Let the parent run the prestart and createRuntime hooks, in the runtime's
    namespaces, now that the container's exist; the state it answers with, for the
    hooks run here."""
    if not channels.hooks or not hooks.of(
        spec, "prestart", "createRuntime", "createContainer", "startContainer"
    ):
        return b""
    os.write(channels.from_child, HOOKS_NOW)
    state = _read_line(channels.to_child)
    if not state:
        os._exit(1)
    return state


def _with_status(state: bytes, status: str) -> bytes:
    if not state:
        return state
    document = json.loads(state)
    document["status"] = status
    return json.dumps(document).encode()


def _wait_for_release(channels: Channels) -> int:
    """Wait for the word to exec; the descriptor that failures go to from then on."""
    if channels.exec_fifo < 0:
        if os.read(channels.go, 1) != b"g":
            os._exit(1)
        return channels.errors
    os.write(channels.from_child, CREATED)
    # Opening a FIFO for writing blocks until a reader opens it: `start` (fifo(7)). The
    # descriptor was opened before pivot_root, so the path goes through /proc.
    fifo = os.open(f"/proc/self/fd/{channels.exec_fifo}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fifo, RELEASED)
    return fifo


def _send_terminal(spec: dict[str, Any], console: int) -> int:
    """Where `process.terminal` asks for one, open the process's terminal and send its
    master over `console`; return the slave, or -1 without a terminal.

    It is sent before the release, so that the runtime's `create` has sent it when it
    returns, as runc's callers wait for it then, before `start`. The slave is given to
    the process's user, who would own it had it opened it itself (devpts(5)); its group
    stays the one a `gid=` option of the devpts mount gives.
    """
    process = spec["process"]
    if not process.get("terminal"):
        return -1
    if console < 0:
        raise ValueError("process.terminal is set, but no console socket was given")
    user = process.get("user", {})
    gid = -1 if _devpts_sets_group(spec) else user.get("gid", 0)
    return terminal.send_console(console, user.get("uid", 0), gid)


def _devpts_sets_group(spec: dict[str, Any]) -> bool:
    return any(
        mount.get("destination") == "/dev/pts"
        and any(option.startswith("gid=") for option in mount.get("options", []))
        for mount in spec.get("mounts", [])
    )


def _exec_process(spec: dict[str, Any], errors_fd: int, slave: int) -> NoReturn:
    process = spec["process"]
    env = process_environment(process)
    # The terminal becomes the standard streams only now: the output of the
    # startContainer hooks, which run before, stays where the runtime's goes.
    last_step = None
    if slave >= 0:
        last_step = functools.partial(terminal.take_terminal, slave)
    apply_process(process, spec.get("linux", {}).get("seccomp"), last_step)
    close_fds_but(errors_fd)
    exec_command(process["args"], env)


def _payload(args: list[str]) -> str:
    """The container's own command, behind the init if there is one."""
    if args[0] == INIT_PATH and "--" in args[1:]:
        return args[args.index("--") + 1]
    return args[0]


def _read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n") and (chunk := os.read(fd, 1)):
        data += chunk
    return data.strip()


def _report(errors_fd: int, error: BaseException) -> None:
    text = (str(error) or repr(error)).encode(errors="replace")
    try:
        os.write(errors_fd, text)
    except OSError:
        # Nobody reads any more (the runtime's `create` has returned): the container's
        # own standard error is where its user looks then.
        with contextlib.suppress(OSError):
            os.write(2, b"sdpod-runtime: " + text + b"\n")
