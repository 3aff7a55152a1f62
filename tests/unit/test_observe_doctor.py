"""The checks of `sdpod doctor`, fed prepared file contents, modes and command output."""

from __future__ import annotations

import errno
import stat
from datetime import date
from pathlib import Path

import pytest

from sdpod.cli.doctor import line
from sdpod.doctor import (
    DELEGATE_FIX,
    Check,
    Level,
    check_catatonit,
    check_cgroup2,
    check_controllers,
    check_delegation,
    check_id_helper,
    check_linger,
    check_pasta,
    check_ports,
    check_slirp4netns,
    check_subids,
    check_tini,
    check_tun,
    check_userns,
    pasta_build,
)

FREE = (231072, 296607)


def test_user_with_full_ranges_is_ok() -> None:
    check = check_subids("alice", [(100000, 65536)], [(100000, 65536)], FREE)
    assert check.level is Level.OK
    assert "65536 uids" in check.message and "65536 gids" in check.message


def test_ranges_are_added_up_and_too_few_ids_are_a_warning() -> None:
    check = check_subids("dave", [(231072, 1000), (300000, 24)], [(231072, 65536)], FREE)
    assert check.level is Level.WARNING  # 1024 ids: too few for nobody's 65534
    assert "1024 in /etc/subuid" in check.message and "subgid" not in check.message


def test_user_without_ranges_is_a_problem_with_the_free_range_to_add() -> None:
    check = check_subids("erin", [], [], FREE)
    assert check.level is Level.PROBLEM
    assert "/etc/subuid and /etc/subgid" in check.message
    assert check.fix == (
        "sudo usermod --add-subuids 231072-296607 --add-subgids 231072-296607 erin"
    )


def test_a_range_in_one_file_only_names_the_other() -> None:
    check = check_subids("alice", [(100000, 65536)], [], FREE)
    assert check.level is Level.PROBLEM
    assert "/etc/subgid" in check.message and "/etc/subuid" not in check.message


SETUID = stat.S_IFREG | stat.S_ISUID | 0o755
PLAIN = stat.S_IFREG | 0o755


@pytest.mark.parametrize(
    ("path", "mode", "owner", "caps", "level"),
    [
        ("/usr/bin/newuidmap", SETUID, 0, False, Level.OK),
        ("/usr/bin/newuidmap", PLAIN, 0, True, Level.OK),
        ("/usr/bin/newuidmap", PLAIN, 0, False, Level.PROBLEM),
        ("/usr/bin/newuidmap", SETUID, 1000, False, Level.PROBLEM),
        (None, 0, 0, False, Level.PROBLEM),
    ],
)
def test_id_helpers_must_be_setuid_root_or_carry_capabilities(
    path: str | None, mode: int, owner: int, caps: bool, level: Level
) -> None:
    check = check_id_helper("newuidmap", path, mode, owner, caps)
    assert check.level is level, check
    if level is Level.PROBLEM:
        assert check.fix is not None
    if path is None:
        assert check.fix == "sudo apt-get install uidmap"


def test_linger() -> None:
    assert check_linger("alice", True).level is Level.OK
    missing = check_linger("alice", False)
    assert missing.level is Level.WARNING
    assert missing.fix == "sudo loginctl enable-linger alice"


@pytest.mark.parametrize(
    ("output", "built"),
    [
        ("pasta 2024_06_24.1ee2eca\nCopyright Red Hat\n", date(2024, 6, 24)),
        ("pasta 2023_12_04.b86afe3\n", date(2023, 12, 4)),
        ("pasta 0^20240821.g1d6142f-1.fc40.x86_64\n", date(2024, 8, 21)),
        ("pasta unknown version\nCopyright Red Hat\n", None),
        ("pasta 2023_13_45.x\n", None),
        ("", None),
    ],
)
def test_pasta_build_dates_are_read_from_what_it_prints(output: str, built: date | None) -> None:
    assert pasta_build(output) == built


def test_pasta_older_than_december_2023_or_unknown_means_slirp4netns() -> None:
    for output in ("pasta unknown version\n", "pasta 2023_03_09.7c7625d\n"):
        check = check_pasta("/usr/bin/pasta", output)
        assert check.level is Level.WARNING
        assert "slirp4netns" in check.message
    assert check_pasta("/usr/bin/pasta", "pasta 2023_12_04.b86afe3\n").level is Level.OK
    absent = check_pasta(None, "")
    assert absent.level is Level.OK and "slirp4netns" in absent.message


def test_programs_that_every_container_needs() -> None:
    assert check_slirp4netns("/usr/bin/slirp4netns", "slirp4netns version 1.2.0\n").level is (
        Level.OK
    )
    assert "1.2.0" in check_slirp4netns("/usr/bin/slirp4netns", "slirp4netns version 1.2.0").message
    assert check_slirp4netns(None, "").fix == "sudo apt-get install slirp4netns"
    assert check_tini("/usr/bin/tini-static").level is Level.OK
    assert check_tini(None).fix == "sudo apt-get install tini"
    assert check_catatonit("/usr/bin/catatonit").level is Level.OK
    assert check_catatonit(None).level is Level.PROBLEM
    assert check_catatonit(None).fix == "sudo apt-get install catatonit"


def test_tun_device() -> None:
    assert check_tun(True, True).level is Level.OK
    assert check_tun(True, False).fix == "sudo chmod 0666 /dev/net/tun"
    assert check_tun(False, False).fix == "sudo modprobe tun"


def test_cgroup2_mount() -> None:
    assert check_cgroup2(Path("/sys/fs/cgroup")).level is Level.OK
    hybrid = check_cgroup2(Path("/sys/fs/cgroup/unified"))
    assert hybrid.level is Level.OK and "hybrid" in hybrid.message
    assert check_cgroup2(None).level is Level.PROBLEM


def test_delegation_is_ownership_of_the_managers_cgroup() -> None:
    directory = "/sys/fs/cgroup/user.slice/user-1001.slice/user@1001.service"
    assert check_delegation("alice", 1001, directory, 1001).level is Level.OK
    foreign = check_delegation("alice", 1001, directory, 0)
    assert foreign.level is Level.PROBLEM and foreign.fix == DELEGATE_FIX
    assert check_delegation("alice", 1001, directory, None).level is Level.PROBLEM


def test_missing_controllers_mean_limits_are_not_enforced() -> None:
    directory = "/sys/fs/cgroup/user.slice/user-1001.slice/user@1001.service"
    assert check_controllers(directory, "cpu memory pids\n", "cpu io memory pids\n").level is (
        Level.OK
    )

    undelegated = check_controllers(directory, "memory pids\n", "cpu io memory pids\n")
    assert undelegated.level is Level.WARNING
    assert "lacking cpu" in undelegated.message and "not enforced" in undelegated.message
    assert undelegated.fix == DELEGATE_FIX

    # This machine's layout: cgroup v1 owns the controllers, the v2 tree has none.
    hybrid = check_controllers(directory, "", "")
    assert "no controllers, lacking memory, cpu, pids" in hybrid.message
    assert hybrid.fix is not None and "systemd.unified_cgroup_hierarchy=1" in hybrid.fix


@pytest.mark.parametrize(
    ("inputs", "level", "word"),
    [
        (("15000\n", None, None, None), Level.OK, "works"),
        (("0\n", None, None, None), Level.PROBLEM, "user.max_user_namespaces"),
        (("15000\n", "0\n", None, None), Level.PROBLEM, "unprivileged_userns_clone"),
        (("15000\n", "1\n", "1\n", None), Level.PROBLEM, "AppArmor"),
        (("15000\n", "1\n", "0\n", errno.EPERM), Level.PROBLEM, "Operation not permitted"),
    ],
)
def test_user_namespaces(
    inputs: tuple[str | None, str | None, str | None, int | None], level: Level, word: str
) -> None:
    check = check_userns(*inputs)
    assert check.level is level, check
    assert word in check.message
    assert (check.fix is None) == (level is Level.OK)


def test_low_ports_say_which_need_the_sysctl() -> None:
    default = check_ports("1024\n")
    assert default.level is Level.OK
    assert "1 to 1023" in default.message
    assert "net.ipv4.ip_unprivileged_port_start" in default.message
    assert "every host port" in check_ports("0\n").message
    assert check_ports(None).level is Level.WARNING


def test_a_doctor_line_holds_the_level_the_check_and_the_fix() -> None:
    assert line(Check("linger", Level.OK, "alice lingers")) == "ok       linger: alice lingers"
    problem = Check("tini-static", Level.PROBLEM, "not installed", "sudo apt-get install tini")
    assert line(problem) == ("problem  tini-static: not installed; fix: sudo apt-get install tini")
