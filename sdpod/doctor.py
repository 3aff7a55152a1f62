"""`sdpod doctor`: check what rootless containers need of this machine, and say what to fix.

Each check is a small function of what it looked at (file contents, modes, a command's
output) returning a `Check`; the `probe_*` functions gather those facts from the running
system and call them. Nothing here changes the system: the fixes are commands for a
person to run.
"""

from __future__ import annotations

import enum
import errno
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import RuntimeSetupError
from sdpod.kernel import userns
from sdpod.kernel.userns import SUBGID, SUBUID
from sdpod.network.backends import PASTA_OLDEST, installed_pasta, pasta_build
from sdpod.network.proxy import find_proxy
from sdpod.runtime.cgroup import cgroup2_mount

LINGER_DIR = Path("/var/lib/systemd/linger")
TUN = Path("/dev/net/tun")
MOUNTINFO = Path("/proc/self/mountinfo")
MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")
USERNS_CLONE = Path("/proc/sys/kernel/unprivileged_userns_clone")
APPARMOR_USERNS = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
UNPRIVILEGED_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")

# A container's ids 1 to 65535 come from the user's subordinate range, so an image can
# use every id up to `nobody` (65534) only with a range this large.
SUBID_WANTED = 65536
LIMIT_CONTROLLERS = ("memory", "cpu", "pids")
COMMAND_TIMEOUT_SECONDS = 10

DELEGATE_FIX = (
    "sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\n"
    "Delegate=cpu cpuset io memory pids\\n' | sudo tee "
    "/etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload"
)


class Level(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Check:
    """The verdict on one thing sdpod needs; `fix` is a command that would mend it."""

    name: str
    level: Level
    message: str
    fix: str | None = None


# -- subordinate ids -------------------------------------------------------------------


Ranges = list[tuple[int, int]]


def check_subids(user: str, uids: Ranges, gids: Ranges, free: tuple[int, int]) -> Check:
    """Whether `user` has (start, count) ranges in both files; `free` is a block that no
    range granted so far overlaps, for the fix to name."""
    span = f"{free[0]}-{free[1]}"
    fix = f"sudo usermod --add-subuids {span} --add-subgids {span} {user}"
    counts = {
        SUBUID: sum(count for _, count in uids),
        SUBGID: sum(count for _, count in gids),
    }

    missing = [str(path) for path, count in counts.items() if count == 0]
    if missing:
        return Check(
            "subordinate ids",
            Level.PROBLEM,
            f"{user} has no range in {' and '.join(missing)}: containers get a single-id "
            "mapping, so images with files of other users than root cannot be used",
            fix,
        )
    few = {path: count for path, count in counts.items() if count < SUBID_WANTED}
    if few:
        listed = ", ".join(f"{count} in {path}" for path, count in few.items())
        return Check(
            "subordinate ids",
            Level.WARNING,
            f"{user} has only {listed}: image files owned by higher ids cannot be mapped "
            f"({SUBID_WANTED} covers every id up to nobody, 65534)",
            fix,
        )
    return Check(
        "subordinate ids",
        Level.OK,
        f"{user} has {counts[SUBUID]} uids in {SUBUID} and {counts[SUBGID]} gids in {SUBGID}",
    )


def probe_subids(user: str, uid: int) -> Check:
    uids = userns.subordinate_ranges(SUBUID, user, uid)
    gids = userns.subordinate_ranges(SUBGID, user, uid)
    return check_subids(user, uids, gids, userns.free_range(SUBID_WANTED))


def check_id_helper(name: str, path: str | None, mode: int, owner: int, caps: bool) -> Check:
    """newuidmap or newgidmap: installed, and setuid root or with file capabilities."""
    if path is None:
        return Check(
            name,
            Level.PROBLEM,
            f"{name} is not installed: only a single-id mapping is possible",
            "sudo apt-get install uidmap",
        )
    if mode & stat.S_ISUID and owner == 0:
        return Check(name, Level.OK, f"{path} is setuid root")
    if caps:
        return Check(name, Level.OK, f"{path} has file capabilities")
    return Check(
        name,
        Level.PROBLEM,
        f"{path} is neither setuid root nor has file capabilities: it cannot map subordinate ids",
        f"sudo chown root {path} && sudo chmod u+s {path}",
    )


def probe_id_helper(name: str) -> Check:
    path = shutil.which(name)
    if path is None:
        return check_id_helper(name, None, 0, 0, False)
    info = os.stat(path)
    try:
        caps = bool(os.getxattr(path, "security.capability"))
    except OSError:
        caps = False
    return check_id_helper(name, path, info.st_mode, info.st_uid, caps)


# -- the user's manager ----------------------------------------------------------------


def check_linger(user: str, lingering: bool) -> Check:
    """Whether logind starts the user's manager at boot and keeps it after logout.

    `lingering` is whether logind's flag file exists (loginctl(1) enable-linger writes it);
    logind's own User.Linger property is not asked, since the file is what logind reads.
    """
    if lingering:
        return Check("linger", Level.OK, f"{user}'s manager runs without a login, from boot")
    return Check(
        "linger",
        Level.WARNING,
        f"{user} does not linger: the user's manager, and every container with it, stops "
        "at the last logout and does not start at boot",
        f"sudo loginctl enable-linger {user}",
    )


def probe_manager() -> tuple[Check, str | None]:
    """Whether the manager answers over D-Bus, and the cgroup it runs in."""
    from sdpod.errors import SdpodError
    from sdpod.units import status
    from sdpod.units.manager import Manager

    try:
        with Manager.connect() as manager:
            count = len(manager.list_units("sdpod-*.service"))
            group = status.manager_cgroup(manager)
            kind = "user" if manager.user else "system"
    except SdpodError as error:
        message = str(error).splitlines()[0]
        return Check("systemd manager", Level.PROBLEM, message, error.hint), None
    units = f"{count} sdpod unit{'s' * (count != 1)} loaded"
    return Check("systemd manager", Level.OK, f"the {kind} manager answers ({units})"), group


# -- programs --------------------------------------------------------------------------


def check_slirp4netns(path: str | None, version: str) -> Check:
    if path is None:
        return Check(
            "slirp4netns",
            Level.PROBLEM,
            "slirp4netns is not installed: containers with a network cannot start",
            "sudo apt-get install slirp4netns",
        )
    first = version.strip().splitlines()[0] if version.strip() else "version unknown"
    return Check("slirp4netns", Level.OK, f"{path} ({first})")


def check_pasta(path: str | None, version: str) -> Check:
    if path is None:
        return Check("pasta", Level.OK, "pasta is not installed: sdpod uses slirp4netns")
    first = version.strip().splitlines()[0] if version.strip() else "no version output"
    build = pasta_build(version)
    if build is None or build < PASTA_OLDEST:
        return Check(
            "pasta",
            Level.WARNING,
            f"{path} says {first!r}, older than the {PASTA_OLDEST:%Y_%m_%d} build that "
            "works well (unknown counts as older): sdpod uses slirp4netns, and pasta only "
            'where a file says network = "pasta"',
            f"install passt {PASTA_OLDEST:%Y_%m_%d} or newer",
        )
    return Check("pasta", Level.OK, f"{path} ({first}) is recent enough: sdpod uses it")


def check_tini(path: str | None) -> Check:
    if path is None:
        return Check(
            "tini-static",
            Level.PROBLEM,
            "tini-static, each container's PID 1, is not installed: no container can start",
            "sudo apt-get install tini",
        )
    return Check("tini-static", Level.OK, path)


def check_catatonit(path: str | None) -> Check:
    if path is None:
        return Check(
            "catatonit",
            Level.PROBLEM,
            "catatonit, which holds the network that the containers of one file share, is "
            "not installed: files with two or more containers on the default network cannot start",
            "sudo apt-get install catatonit",
        )
    return Check("catatonit", Level.OK, path)


def check_port_proxy(path: str | None) -> Check:
    if path is None:
        return Check(
            "port proxy",
            Level.PROBLEM,
            "systemd-socket-proxyd or nsenter, which forward published TCP ports into "
            "containers, is missing: containers with TCP ports on slirp4netns or with "
            'network = "none" cannot start',
            "sudo apt-get install systemd util-linux",
        )
    return Check("port proxy", Level.OK, path)


def _port_proxy() -> str | None:
    try:
        return " and ".join(find_proxy())
    except RuntimeSetupError:
        return None


def check_tun(is_char_device: bool, usable: bool) -> Check:
    """/dev/net/tun, which slirp4netns and pasta open as the user."""
    if not is_char_device:
        return Check(
            "/dev/net/tun",
            Level.PROBLEM,
            f"{TUN} is missing: the network helpers cannot make a container's interface",
            "sudo modprobe tun",
        )
    if not usable:
        return Check(
            "/dev/net/tun",
            Level.PROBLEM,
            f"{TUN} is not readable and writable by you: the network helpers need it",
            f"sudo chmod 0666 {TUN}",
        )
    return Check("/dev/net/tun", Level.OK, f"{TUN} is readable and writable by you")


def _version(path: str | None) -> str:
    """The output of `PATH --version`, empty where it cannot be run."""
    if path is None:
        return ""
    try:
        result = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout or result.stderr


# -- cgroups ---------------------------------------------------------------------------


def check_cgroup2(mount: Path | None) -> Check:
    if mount is None:
        return Check(
            "cgroup v2",
            Level.PROBLEM,
            "no cgroup2 hierarchy is mounted: systemd cannot delegate a cgroup to a container",
            "boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line",
        )
    if mount != Path("/sys/fs/cgroup"):
        return Check(
            "cgroup v2",
            Level.OK,
            f"mounted at {mount}, beside cgroup v1 hierarchies (a hybrid layout)",
        )
    return Check("cgroup v2", Level.OK, f"mounted at {mount}")


def check_delegation(user: str, uid: int, directory: str, owner: int | None) -> Check:
    """Whether the user owns their manager's cgroup, which systemd does on `Delegate=yes`."""
    if owner is None:
        return Check(
            "cgroup delegation",
            Level.PROBLEM,
            f"{directory} does not exist: your manager does not run in its own cgroup",
            f"sudo loginctl enable-linger {user}",
        )
    if owner != uid:
        return Check(
            "cgroup delegation",
            Level.PROBLEM,
            f"{directory} belongs to uid {owner}, not to you: systemd has not delegated it, "
            "so a container cannot have a cgroup of its own",
            DELEGATE_FIX,
        )
    return Check("cgroup delegation", Level.OK, f"{directory} is delegated to you")


def check_controllers(directory: str, mine: str, root: str) -> Check:
    """The controllers in `cgroup.controllers` of the manager's cgroup and of the root."""
    missing = [c for c in LIMIT_CONTROLLERS if c not in mine.split()]
    if not missing:
        return Check("cgroup controllers", Level.OK, f"{directory} has {mine.strip()}")
    absent_at_root = [c for c in missing if c not in root.split()]
    fix = (
        "boot with systemd.unified_cgroup_hierarchy=1, so that cgroup v2 owns the controllers"
        if absent_at_root
        else DELEGATE_FIX
    )
    return Check(
        "cgroup controllers",
        Level.WARNING,
        f"{directory} has {mine.strip() or 'no controllers'}, lacking {', '.join(missing)}: "
        "limits (MemoryMax=, CPUQuota=, TasksMax=) are set on the units but not enforced, "
        "and `sdpod status` may show memory and tasks as not accounted",
        fix,
    )


def probe_cgroups(user: str, uid: int | None, manager_group: str | None) -> list[Check]:
    """cgroup v2, the delegation of `uid`'s manager cgroup (None: root's) and controllers."""
    mount = cgroup2_mount(_read(MOUNTINFO) or "")
    checks = [check_cgroup2(mount)]
    if mount is None:
        return checks

    if manager_group is None:
        # The manager did not answer: look where logind puts a user's manager.
        manager_group = (
            f"/user.slice/user-{uid}.slice/user@{uid}.service" if uid is not None else "/"
        )
    directory = mount / manager_group.strip("/")
    if uid is not None:
        try:
            owner: int | None = directory.stat().st_uid
        except OSError:
            owner = None
        checks.append(check_delegation(user, uid, str(directory), owner))
    mine = _read(directory / "cgroup.controllers") or ""
    root = _read(mount / "cgroup.controllers") or ""
    checks.append(check_controllers(str(directory), mine, root))
    return checks


# -- the kernel ------------------------------------------------------------------------


def check_userns(
    max_namespaces: str | None,
    userns_clone: str | None,
    apparmor_restrict: str | None,
    unshare_error: int | None,
) -> Check:
    """The sysctls that allow unprivileged user namespaces (None: the file does not exist),
    and the errno of an actual unshare(CLONE_NEWUSER) by the user (None: it worked)."""
    name = "user namespaces"
    if max_namespaces is not None and max_namespaces.strip() == "0":
        fix = "sudo sysctl -w user.max_user_namespaces=28633"
        return Check(name, Level.PROBLEM, "user.max_user_namespaces is 0", fix)
    if userns_clone is not None and userns_clone.strip() == "0":
        fix = "sudo sysctl -w kernel.unprivileged_userns_clone=1"
        return Check(name, Level.PROBLEM, "kernel.unprivileged_userns_clone is 0", fix)
    if apparmor_restrict is not None and apparmor_restrict.strip() == "1":
        fix = "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        message = "AppArmor takes every capability from unprivileged user namespaces"
        return Check(name, Level.PROBLEM, message, fix)
    if unshare_error is not None:
        message = f"unshare(CLONE_NEWUSER) fails: {os.strerror(unshare_error)}"
        return Check(name, Level.PROBLEM, message, "check the kernel's user namespace settings")
    return Check(name, Level.OK, "unshare(CLONE_NEWUSER) works for you")


def try_unshare_user() -> int | None:
    """Fork a child that creates a user namespace; its errno, or None where it worked."""
    from sdpod.kernel import syscalls

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        except OSError as error:
            os.write(write_end, str(error.errno or errno.EPERM).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        reported = pipe.read()
    os.waitpid(pid, 0)
    return int(reported) if reported else None


def check_ports(start_text: str | None) -> Check:
    """net.ipv4.ip_unprivileged_port_start: host ports below it need privileges."""
    name = "low ports"
    if start_text is None or not start_text.strip().isdigit():
        return Check(name, Level.WARNING, f"cannot read {UNPRIVILEGED_PORT_START}")
    start = int(start_text)
    if start == 0:
        return Check(name, Level.OK, "every host port can be published")
    return Check(
        name,
        Level.OK,
        f"host ports {start} and up can be published; ports 1 to {start - 1} only after "
        "`sudo sysctl -w net.ipv4.ip_unprivileged_port_start=PORT` (PORT the lowest one "
        "you publish)",
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


# -- all of them -----------------------------------------------------------------------


def run_checks() -> list[Check]:
    """Every check, in the order a set-up is best mended: ids, manager, helpers, kernel.

    As root only the machine's checks run: root mode maps each container's ids itself,
    without the helpers or subordinate ids of a user, and uses the system manager, which
    needs no linger and no delegation.
    """
    uid = os.getuid()
    rootless = os.geteuid() != 0
    user = pwd.getpwuid(uid).pw_name
    checks: list[Check] = []
    if rootless:
        checks.append(probe_subids(user, uid))
        checks += [probe_id_helper("newuidmap"), probe_id_helper("newgidmap")]
        checks.append(check_linger(user, (LINGER_DIR / user).exists()))
    manager_check, manager_group = probe_manager()
    checks.append(manager_check)
    checks += _programs()
    checks.append(check_tun(_is_char_device(TUN), os.access(TUN, os.R_OK | os.W_OK)))
    checks += probe_cgroups(user, uid if rootless else None, manager_group)
    checks.append(
        check_userns(
            _read(MAX_USER_NAMESPACES),
            _read(USERNS_CLONE),
            _read(APPARMOR_USERNS),
            try_unshare_user(),
        )
    )
    if rootless:
        checks.append(check_ports(_read(UNPRIVILEGED_PORT_START)))
    return checks


def _programs() -> list[Check]:
    slirp, pasta = shutil.which("slirp4netns"), shutil.which("pasta")
    return [
        check_slirp4netns(slirp, _version(slirp)),
        check_pasta(pasta, installed_pasta().version),
        check_tini(shutil.which("tini-static")),
        check_catatonit(shutil.which("catatonit")),
        check_port_proxy(_port_proxy()),
    ]


def _is_char_device(path: Path) -> bool:
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:
        return False
