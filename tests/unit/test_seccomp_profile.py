"""The default seccomp profile, built from the container's capabilities: pure."""

from __future__ import annotations

from sdpod.kernel.capability_names import DEFAULT
from sdpod.runtime.seccomp_profile import default_profile


def refused(profile: dict[str, object]) -> set[str]:
    (rule,) = profile["syscalls"]  # type: ignore[misc]
    assert rule["action"] == "SCMP_ACT_ERRNO" and rule["errnoRet"] == 1
    return set(rule["names"])


def test_the_default_set_refuses_host_wide_calls_and_allows_the_rest() -> None:
    profile = default_profile(DEFAULT, "x86_64")
    names = refused(profile)
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {"keyctl", "bpf", "mount", "unshare", "setns", "reboot", "init_module"} <= names
    assert not {"read", "execve", "clone", "ptrace", "chown", "setuid"} & names


def test_a_capability_lets_its_group_through_but_never_the_keyrings() -> None:
    names = refused(default_profile([*DEFAULT, "CAP_SYS_ADMIN", "CAP_SYS_TIME"], "x86_64"))
    assert not {"mount", "unshare", "setns", "settimeofday"} & names
    assert {"keyctl", "add_key", "bpf", "reboot"} <= names


def test_32_bit_calls_of_a_64_bit_machine_are_filtered_too() -> None:
    assert default_profile(DEFAULT, "x86_64")["architectures"] == [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
    ]
    assert default_profile(DEFAULT, "aarch64")["architectures"] == [
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
    ]
