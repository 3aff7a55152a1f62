"""Loading a seccomp filter through libseccomp, the library every container engine uses.

libseccomp turns names into each architecture's numbers and builds the BPF program. It
is opened by `preload` while the host's libraries are still in reach, before pivot_root
or setns into a container's mount namespace, and only where a container's command is
started, so no other sdpod command pays for it. The filter is described as OCI's `linux.seccomp` is
(config-linux.md, "Seccomp"): a default action, architectures, and rules of syscall
names; argument conditions are not supported, and a profile with them is refused.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any

from sdpod.errors import RuntimeSetupError
from sdpod.kernel._libc import ffi as _ffi

LIBRARY = "libseccomp.so.2"

# <seccomp.h>: the actions, and the architectures by their audit tokens.
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
}
_ACT_ERRNO = 0x00050000
ARCHITECTURES = {
    "SCMP_ARCH_X86": 0x40000003,
    "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X32": 0x4000003E,
    "SCMP_ARCH_ARM": 0x40000028,
    "SCMP_ARCH_AARCH64": 0xC00000B7,
}
# libseccomp's answer for a name no architecture knows.
_NR_SCMP_ERROR = -1
# enum scmp_filter_attr: whether seccomp_load sets no_new_privs first (its default).
_SCMP_FLTATR_CTL_NNP = 3


def action_of(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ERRNO":
        return _ACT_ERRNO | ((errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name not in _ACTIONS:
        raise RuntimeSetupError(f"failed to load the seccomp profile: unknown action {name}")
    return _ACTIONS[name]


_library: Any = None


def preload() -> None:
    """Open libseccomp now, while the host's file system is this process's."""
    global _library
    if _library is None:
        _library = _open_library()


def load(profile: dict[str, Any], no_new_privileges: bool = True) -> None:
    """Load `profile` (OCI `linux.seccomp`) for this process and its children, for good.

    libseccomp sets no_new_privs before loading, unless told not to: without it, loading
    needs CAP_SYS_ADMIN (seccomp(2)), which the caller must then still hold.
    """
    preload()
    library = _library
    default = action_of(profile["defaultAction"], profile.get("defaultErrnoRet"))
    context = library.seccomp_init(default)
    if context == _ffi.NULL:
        raise RuntimeSetupError("failed to load the seccomp profile: seccomp_init failed")
    try:
        if not no_new_privileges:
            _check(library.seccomp_attr_set(context, _SCMP_FLTATR_CTL_NNP, 0), "configure")
        _add_architectures(library, context, profile.get("architectures", []))
        for rule in profile.get("syscalls", []):
            _add_rule(library, context, rule)
        _check(library.seccomp_load(context), "load the filter")
    finally:
        library.seccomp_release(context)


def _open_library() -> Any:
    try:
        return _ffi.dlopen(LIBRARY)
    except OSError as error:
        raise RuntimeSetupError(
            f"failed to open {LIBRARY} for the container's seccomp filter: {error}",
            hint="install Debian's package `libseccomp2`",
        ) from None


def _add_architectures(library: Any, context: Any, names: Sequence[str]) -> None:
    """Filter the native architecture and each listed one the kernel can run."""
    for name in names:
        token = ARCHITECTURES.get(name)
        if token is None:
            raise RuntimeSetupError(
                f"failed to load the seccomp profile: unknown architecture {name}"
            )
        result = library.seccomp_arch_add(context, token)
        # Already there (the native one), or one this build of libseccomp cannot
        # combine with the native one: either way nothing runs under it unfiltered.
        if result not in (0, -errno.EEXIST, -errno.EINVAL):
            _check(result, f"add architecture {name}")


def _add_rule(library: Any, context: Any, rule: dict[str, Any]) -> None:
    if rule.get("args"):
        raise RuntimeSetupError(
            "failed to load the seccomp profile: rules with argument conditions are not "
            f"supported (rule for {', '.join(rule.get('names', []))})"
        )
    action = action_of(rule["action"], rule.get("errnoRet"))
    for name in rule.get("names", []):
        number = library.seccomp_syscall_resolve_name(name.encode())
        if number == _NR_SCMP_ERROR:
            continue  # a name no architecture knows: nothing to filter
        result = library.seccomp_rule_add(context, action, number, 0)
        # A pseudo number stands for a syscall the native architecture lacks; libseccomp
        # refuses it where no listed architecture has it either.
        if result < 0 and not (number < 0 and result in (-errno.EDOM, -errno.EINVAL)):
            _check(result, f"add the rule for {name}")


def _check(result: int, step: str) -> None:
    if result < 0:
        raise RuntimeSetupError(f"failed to {step} of the seccomp profile: {os.strerror(-result)}")
