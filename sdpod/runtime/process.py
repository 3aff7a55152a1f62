"""The container's process as OCI's `process` object describes it, applied between fork
and exec: limits, umask, capabilities, user and groups, no_new_privs, seccomp, directory.

The order follows the kernel's rules. Limits and the bounding set are changed while
still root with every capability; the user is switched with the permitted set kept
(PR_SET_KEEPCAPS), so that the spec's sets can then be chosen from it; the seccomp
filter comes last, since the steps before need calls a profile may refuse, except
without no_new_privs, where loading it needs CAP_SYS_ADMIN, which the process may be
about to give up (seccomp(2)). Only the system call boundary is used here.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable
from typing import Any, NoReturn

from sdpod.kernel import capabilities, seccomp, syscalls

# runc and crun give this umask where the spec has none (OCI 1.1 `user.umask`).
DEFAULT_UMASK = 0o022

RLIMITS = {
    "RLIMIT_AS": resource.RLIMIT_AS,
    "RLIMIT_CORE": resource.RLIMIT_CORE,
    "RLIMIT_CPU": resource.RLIMIT_CPU,
    "RLIMIT_DATA": resource.RLIMIT_DATA,
    "RLIMIT_FSIZE": resource.RLIMIT_FSIZE,
    "RLIMIT_LOCKS": 10,  # <asm-generic/resource.h>; Python's resource module lacks it
    "RLIMIT_MEMLOCK": resource.RLIMIT_MEMLOCK,
    "RLIMIT_MSGQUEUE": resource.RLIMIT_MSGQUEUE,
    "RLIMIT_NICE": resource.RLIMIT_NICE,
    "RLIMIT_NOFILE": resource.RLIMIT_NOFILE,
    "RLIMIT_NPROC": resource.RLIMIT_NPROC,
    "RLIMIT_RSS": resource.RLIMIT_RSS,
    "RLIMIT_RTPRIO": resource.RLIMIT_RTPRIO,
    "RLIMIT_RTTIME": resource.RLIMIT_RTTIME,
    "RLIMIT_SIGPENDING": resource.RLIMIT_SIGPENDING,
    "RLIMIT_STACK": resource.RLIMIT_STACK,
}
_PROCESS_SETS = ("effective", "permitted", "inheritable", "ambient")


def process_environment(process: dict[str, Any]) -> dict[str, str]:
    """The spec's `process.env` as a mapping."""
    return dict(entry.split("=", 1) for entry in process.get("env", []) if "=" in entry)


def apply_process(
    process: dict[str, Any],
    profile: dict[str, Any] | None = None,
    last_step: Callable[[], None] | None = None,
) -> None:
    """Give the calling process the spec's limits, umask, capabilities, user, groups,
    no_new_privs, seccomp filter `profile` (OCI `linux.seccomp`) and directory.

    `last_step` runs as the process's user, in its directory, before the filter where
    no_new_privs lets that come last: the terminal (`sdpod.runtime.terminal`).
    """
    set_rlimits(process.get("rlimits", []))
    user = process.get("user", {})
    os.umask(user.get("umask", DEFAULT_UMASK))
    sets = process.get("capabilities", {})
    capabilities.limit_bounding_set(sets.get("bounding", []))
    no_new_privileges = bool(process.get("noNewPrivileges"))
    if profile and not no_new_privileges:
        seccomp.load(profile, no_new_privileges=False)

    chosen = any(name in sets for name in _PROCESS_SETS)
    if chosen:
        capabilities.keep_across_user_change()
    _switch_user(user)
    # A spec that names only the bounding set leaves the rest to the user switch and to
    # exec: root keeps what the bounding set allows, another user gets nothing.
    if chosen:
        capabilities.set_process_sets(
            sets.get("effective", []), sets.get("permitted", []), sets.get("inheritable", [])
        )
        capabilities.set_ambient(sets.get("ambient", []))
    if no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    os.chdir(process.get("cwd", "/"))
    if last_step is not None:
        last_step()
    if profile and no_new_privileges:
        seccomp.load(profile)


def set_rlimits(rlimits: list[dict[str, Any]]) -> None:
    """Set each of the spec's resource limits; raising a hard limit needs
    CAP_SYS_RESOURCE over the host (setrlimit(2))."""
    for limit in rlimits:
        kind = limit["type"]
        if kind not in RLIMITS:
            valid = ", ".join(RLIMITS)
            raise ValueError(f"failed to set resource limit {kind}: unknown; valid: {valid}")
        what = f"failed to set {kind} to soft {limit['soft']}, hard {limit['hard']}"
        try:
            resource.setrlimit(RLIMITS[kind], (limit["soft"], limit["hard"]))
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None
        except OSError as error:
            raise OSError(error.errno, f"{what}: {error.strerror}") from None


def set_oom_score_adj(process: dict[str, Any]) -> None:
    """Write the spec's `oomScoreAdj`; lowering it needs CAP_SYS_RESOURCE over the host
    (proc(5))."""
    value = process.get("oomScoreAdj")
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as file:
            file.write(str(value))
    except OSError as error:
        raise OSError(
            error.errno, f"failed to set oom_score_adj to {value}: {error.strerror}"
        ) from None


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
    try:
        with open("/proc/self/setgroups") as file:
            return file.read().strip() == "allow"
    except FileNotFoundError:
        # No /proc in the container: only a user namespace can deny setgroups, and
        # setgroups(2) will say so itself.
        return True
