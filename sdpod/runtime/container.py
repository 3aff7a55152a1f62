"""What runs inside the new namespaces, between fork and exec.

Two processes run here. The first enters a new user namespace, waits for the launcher to
map its ids (or joins the user and network namespaces of the container whose network it
shares, mapped already), then creates the other namespaces and forks the container's
init, which is PID 1 of the new PID namespace. That second process builds the root file system,
pivots into it, waits for the launcher's word that the network is up, and execs the
container's command. Both end in `os._exit` or `execve`: neither can ever return into
the launcher's code. Only the system call boundary and the pure mount plan are used.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from typing import Any, NoReturn

from sdpod.kernel import capabilities, seccomp, syscalls, userns
from sdpod.runtime import mounts, provision, shared
from sdpod.runtime.spec import ANNOTATION_OVERLAY, INIT_PATH

NAMESPACE_FLAGS = {
    "mount": syscalls.CLONE_NEWNS,
    "uts": syscalls.CLONE_NEWUTS,
    "ipc": syscalls.CLONE_NEWIPC,
    "network": syscalls.CLONE_NEWNET,
    "pid": syscalls.CLONE_NEWPID,
    "cgroup": syscalls.CLONE_NEWCGROUP,
}


Trees = tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Channels:
    """The pipes between the launcher and the two processes it starts.

    `to_child`/`from_child` carry single bytes and the init's PID; `go` releases the
    init into exec; `errors` (close-on-exec) carries a failure's text, and reaches its
    end of file without text when exec succeeds.
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


def run_child(spec: dict[str, Any], rootfs: str, channels: Channels) -> NoReturn:
    """The first process: namespaces, then fork the container's init."""
    try:
        # A joined user namespace is mapped already: the launcher maps only a new one.
        if not shared.enter(channels.joined):
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        os.write(channels.from_child, b"u")
        if os.read(channels.to_child, 1) != b"m":
            os._exit(1)
        userns.become_root_inside()

        syscalls.unshare(_namespace_flags(spec))
        init = os.fork()
        if init == 0:
            _run_init(spec, rootfs, channels)
        os.write(channels.from_child, f"{init}\n".encode())
        os._exit(0)
    except BaseException as error:
        _report(channels.errors, error)
        os._exit(1)


def _namespace_flags(spec: dict[str, Any]) -> int:
    flags = 0
    for namespace in spec["linux"]["namespaces"]:
        if not namespace.get("path"):
            flags |= NAMESPACE_FLAGS.get(namespace["type"], 0)
    return flags


def _owns_network(spec: dict[str, Any]) -> bool:
    """Whether the container has a network namespace of its own, to configure."""
    return any(
        namespace["type"] == "network" and not namespace.get("path")
        for namespace in spec["linux"]["namespaces"]
    )


def _run_init(spec: dict[str, Any], rootfs: str, channels: Channels) -> NoReturn:
    """The second process, PID 1 of the container: root file system, then exec."""
    try:
        _build_root(spec, rootfs, channels.trees)
        provision.make_working_dir(spec, rootfs)
        provision.write_secrets(spec, rootfs)
        provision.shift_volumes(spec, rootfs)
        provision.apply_sysctls(spec)
        syscalls.sethostname(spec.get("hostname", ""))
        if _owns_network(spec):
            syscalls.set_link_up("lo")
        if spec.get("linux", {}).get("seccomp"):
            seccomp.preload()
        _pivot_into(rootfs)
        if spec["root"].get("readonly"):
            _make_root_read_only()
        if os.read(channels.go, 1) != b"g":
            os._exit(1)
        _exec_process(spec, channels.errors)
    except BaseException as error:
        _report(channels.errors, error)
    os._exit(127)


def _build_root(spec: dict[str, Any], rootfs: str, trees: Trees) -> None:
    # Nothing mounted here may propagate back to the host (mount_namespaces(7)).
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    for tree, attach in trees:
        syscalls.move_mount(tree, attach)

    overlay = spec.get("annotations", {}).get(ANNOTATION_OVERLAY)
    if overlay:
        dirs = json.loads(overlay)
        if dirs.get("idmap_lower"):
            dirs["lower"] = dirs["idmap_lower"]
        syscalls.mount("overlay", rootfs, "overlay", 0, _overlay_data(dirs))
    else:
        syscalls.mount(rootfs, rootfs, None, syscalls.MS_BIND | syscalls.MS_REC)

    # Before the volumes hide it, what the image holds where they go fills new ones.
    provision.populate_volumes(spec, rootfs)
    mounts.execute(mounts.plan_mounts(spec), rootfs)


def _overlay_data(dirs: dict[str, str]) -> str:
    # userxattr: an unprivileged overlay keeps its metadata in user.* xattrs (overlayfs docs).
    return f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']},userxattr"


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
    syscalls.umount(".", syscalls.MNT_DETACH)
    os.chdir("/")


def _exec_process(spec: dict[str, Any], errors_fd: int) -> NoReturn:
    process = spec["process"]
    env = process_environment(process)
    args = process["args"]
    check_command(_payload(args), env.get("PATH", ""))
    apply_process(process)
    apply_seccomp(spec)
    close_fds_but(errors_fd)
    exec_command(args, env)


def process_environment(process: dict[str, Any]) -> dict[str, str]:
    """The spec's `process.env` as a mapping."""
    return dict(entry.split("=", 1) for entry in process.get("env", []) if "=" in entry)


def apply_process(process: dict[str, Any]) -> None:
    """Give the calling process the spec's capabilities, user, groups and directory.

    The bounding set is limited while still root, before the user switch would take the
    capability to change it (capabilities(7)).
    """
    capabilities.limit_bounding_set(process.get("capabilities", {}).get("bounding", []))
    _switch_user(process.get("user", {}))
    if process.get("noNewPrivileges"):
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    os.chdir(process.get("cwd", "/"))


def apply_seccomp(spec: dict[str, Any]) -> None:
    """Load the spec's seccomp filter, last before exec: the steps before may need calls
    it refuses (setgroups, prctl)."""
    profile = spec.get("linux", {}).get("seccomp")
    if profile:
        seccomp.load(profile)


def close_fds_but(keep: int) -> None:
    """Close every descriptor above standard error except `keep`, before exec."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def exec_command(args: list[str], env: dict[str, str]) -> NoReturn:
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across
    # exec: the command gets the default actions, as any other program's child would.
    for number in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(number, signal.SIG_DFL)
    try:
        os.execvpe(args[0], args, env)
    except OSError as error:
        raise OSError(error.errno, f"failed to run {args[0]!r}: {error.strerror}") from None


def _payload(args: list[str]) -> str:
    """The container's own command, behind the init if there is one."""
    if args[0] == INIT_PATH and "--" in args[1:]:
        return args[args.index("--") + 1]
    return args[0]


def check_command(command: str, search_path: str) -> None:
    """Fail here, where the caller can report it, if the command cannot be found.

    Behind an init, a missing command would only be noticed by the init after the
    unit has been declared started.
    """
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(d or ".", command) for d in search_path.split(":")]
    if not any(os.path.isfile(c) and os.access(c, os.X_OK) for c in candidates):
        where = "" if "/" in command else f" in PATH={search_path}"
        raise FileNotFoundError(f"command {command!r} not found in the container{where}")


def _switch_user(user: dict[str, Any]) -> None:
    uid, gid, groups = user.get("uid", 0), user.get("gid", 0), user.get("additionalGids", [])
    # With a single-id mapping the kernel requires setgroups(2) to be denied
    # (user_namespaces(7)); then there are no other groups to set.
    if _setgroups_allowed():
        os.setgroups(groups)
    elif groups:
        raise PermissionError(
            f"the image's user needs the supplementary groups {groups}, which a single-id "
            "mapping cannot give; the user needs subordinate ids in /etc/subgid"
        )
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _setgroups_allowed() -> bool:
    with open("/proc/self/setgroups") as file:
        return file.read().strip() == "allow"


def _report(errors_fd: int, error: BaseException) -> None:
    text = str(error) or repr(error)
    os.write(errors_fd, text.encode(errors="replace"))
