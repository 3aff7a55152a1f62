"""`sdpod doctor` as the test user, and as a user without subordinate ids.

The verdicts are checked against what the machine says through other means (the files,
`pasta --version`, the manager's cgroup as the user reads it), so that the known gaps of
this machine (an old pasta, a cgroup tree without controllers) are expected exactly
where they exist.
"""

from __future__ import annotations

import re
import subprocess
from datetime import date

import pytest
from sandbox import SandboxHost

pytestmark = pytest.mark.system

ALWAYS_OK = (
    "subordinate ids",
    "newuidmap",
    "newgidmap",
    "linger",
    "systemd manager",
    "slirp4netns",
    "tini-static",
    "/dev/net/tun",
    "cgroup v2",
    "cgroup delegation",
    "user namespaces",
    "low ports",
)
LINE = re.compile(r"(ok|warning|problem) +([^:]+): (.*)")


Checks = dict[str, tuple[str, str]]


def doctor(sandbox: SandboxHost, user: str) -> tuple[subprocess.CompletedProcess[str], Checks]:
    """Run `sdpod doctor` as `user`: the result, and each check's (level, rest of line)."""
    result = sandbox.run_as_user(["sdpod", "doctor"], user, check=False, timeout=60)
    checks: Checks = {}
    for line in result.stdout.splitlines():
        found = LINE.fullmatch(line)
        if found:
            level, name, rest = found.groups()
            assert name not in checks, f"{name} reported twice:\n{result.stdout}"
            checks[name] = (level, rest)
    return result, checks


def pasta_is_old(sandbox: SandboxHost, user: str) -> bool | None:
    """Whether the installed pasta predates 2023-12-04 (or hides its date); None: absent."""
    found = sandbox.run_as_user(["sh", "-c", "command -v pasta"], user, check=False)
    if found.returncode != 0:
        return None
    version = sandbox.run_as_user(["pasta", "--version"], user, check=False).stdout
    stamp = re.search(r"(20\d\d)_(\d\d)_(\d\d)", version)
    return stamp is None or date(*map(int, stamp.groups())) < date(2023, 12, 4)


def manager_controllers(sandbox: SandboxHost, user: str) -> list[str]:
    uid = sandbox.uid(user)
    path = f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
    return sandbox.run_as_user(["cat", path], user).stdout.split()


def test_doctor_finds_no_problem_for_the_test_user(sandbox: SandboxHost) -> None:
    result, checks = doctor(sandbox, sandbox.user)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for name in ALWAYS_OK:
        assert checks.get(name, ("missing",))[0] == "ok", (name, result.stdout)

    old = pasta_is_old(sandbox, sandbox.user)
    expected = "warning" if old else "ok"
    assert checks["pasta"][0] == expected, result.stdout
    if old is not False:
        assert "slirp4netns" in checks["pasta"][1], result.stdout

    missing = {"memory", "cpu", "pids"} - set(manager_controllers(sandbox, sandbox.user))
    level, rest = checks["cgroup controllers"]
    assert level == ("warning" if missing else "ok"), result.stdout
    if missing:
        assert "not enforced" in rest and all(c in rest for c in missing), result.stdout

    # Every line is one of the checks, and the summary counts them.
    warnings = sum(level == "warning" for level, _ in checks.values())
    assert result.stdout.rstrip().splitlines()[-1] == f"0 problems, {warnings} warning" + (
        "s" if warnings != 1 else ""
    )


def test_doctor_names_the_fix_for_a_user_without_subordinate_ids(sandbox: SandboxHost) -> None:
    user = sandbox.nosub_user
    assert user is not None
    result, checks = doctor(sandbox, user)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr

    level, rest = checks["subordinate ids"]
    assert level == "problem", result.stdout
    fix = re.search(r"fix: sudo usermod --add-subuids (\d+)-(\d+) --add-subgids \1-\2 (\S+)$", rest)
    assert fix is not None, rest
    first, last, named = int(fix[1]), int(fix[2]), fix[3]
    assert named == user and last - first + 1 == 65536, rest

    # The range offered is free: it starts after every range the files grant now.
    for path in ("/etc/subuid", "/etc/subgid"):
        text = sandbox.run_as_user(["cat", path], user).stdout
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) != 3 or not (fields[1].isdigit() and fields[2].isdigit()):
                continue
            start, count = fields[1], fields[2]
            assert first >= int(start) + int(count), (path, line, rest)

    # Only the ids are missing: the rest of the set-up is the test user's.
    problems = [name for name, (level, _) in checks.items() if level == "problem"]
    assert problems == ["subordinate ids"], result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("1 problem, ")
