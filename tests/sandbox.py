"""A throwaway systemd host for tests, on a machine where systemd is not PID 1.

As root, `SandboxHost.start()` boots `/usr/lib/systemd/systemd` in new pid, mount, cgroup
and uts namespaces, rooted in a cgroup of its own, and brings up the user managers of a
test user with subordinate ids and, optionally, of a second user without them. The
network namespace is the host's: a port published inside is reachable on the host's
127.0.0.1, and the reverse.

The sandbox shares the host's files, with these exceptions, all private to it: `/run`,
`/tmp`, `/proc`, `/sys/fs/cgroup`, `/var/log/journal` (so that journals of parallel
sandboxes do not collide and the host's disk stays clean) and `/dev/console` (a log
file). Files both sides see therefore live under the users' homes; the checkout is bound
at `CHECKOUT_MOUNT` inside. Units that the host's administrator enabled, and the few of
systemd's own that would change the host's kernel or consoles, are masked for the boot.

Library use (pytest: see conftest.py):

    with SandboxHost() as host:
        host.run_as_user(["systemctl", "--user", "is-system-running"])

Script use, as root:

    python3 tests/sandbox.py shell [--user NAME]
    python3 tests/sandbox.py run [--user NAME] -- CMD...
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

log = logging.getLogger("sdpod.sandbox")
T = TypeVar("T")

DEFAULT_USER = "sdpod-test"
NOSUB_USER = "sdpod-nosub"
SUBID_COUNT = 65536
SUBID_MIN = 100000
CGROUP_PREFIX = "sdpod-sandbox"
STATE_DIR = Path("/run/sdpod-sandbox")
REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_MOUNT = "/run/sdpod-checkout"
SYSTEMD = "/usr/lib/systemd/systemd"
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
REQUIRED_TOOLS = ("nsenter", "unshare", "setpriv", "useradd", "usermod", "mount")

# Units of systemd itself that, run by real root in a container sharing the host's
# kernel, /dev and network namespace, would change the host: sysctls (net.* included,
# the network namespace is shared), kernel modules, binfmt handlers, device nodes, and
# gettys on the host's consoles.
MASKED_UNITS = (
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-tmpfiles-setup-dev.service",
    "getty.target",
    "getty-static.service",
    "console-getty.service",
)


class SandboxError(RuntimeError):
    """The sandbox host cannot be set up, booted or stopped."""


class SandboxCommandError(subprocess.CalledProcessError):
    """A command run inside the sandbox failed; the message carries its output."""

    def __str__(self) -> str:
        parts = [f"{shlex.join(self.cmd)} exited with status {self.returncode}"]
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                parts.append(f"--- {name} ---\n{text.rstrip()}")
        return "\n".join(parts)


# -- cgroups ---------------------------------------------------------------------------


def cgroup2_root() -> Path:
    """The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup/unified` here)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fs_type = fields[fields.index("-") + 1]
        if fs_type == "cgroup2":
            return Path(fields[4])
    raise SandboxError("failed to find the cgroup2 hierarchy: it is not mounted")


def process_start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot, None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in field 2 may contain spaces; fields after it are plain.
    return int(stat.rpartition(")")[2].split()[19])


def owner_alive(cgroup_name: str) -> bool:
    """Whether the process named in a sandbox cgroup's name still runs."""
    try:
        _, pid, start, _ = cgroup_name.split(".")
        return process_start_time(int(pid)) == int(start)
    except ValueError:
        return False


def destroy_cgroup(path: Path, timeout: float = 10.0) -> None:
    """Kill every process under `path`, wait until it is empty, remove the sub-tree."""
    if not path.exists():
        return
    deadline = time.monotonic() + timeout
    while "populated 1" in (path / "cgroup.events").read_text():
        kill_cgroup(path)
        if time.monotonic() > deadline:
            raise SandboxError(f"failed to empty cgroup {path}: processes survive SIGKILL")
        time.sleep(0.02)

    for parent, _, _ in os.walk(path, topdown=False):
        os.rmdir(parent)


def kill_cgroup(path: Path) -> None:
    """SIGKILL every process under `path`: cgroup.kill, or one by one before Linux 5.14."""
    if (path / "cgroup.kill").exists():
        (path / "cgroup.kill").write_text("1")
        return
    for procs in path.rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def remove_stale_sandboxes(root: Path) -> None:
    """Remove the cgroups and logs of sandboxes whose owning process has died."""
    for path in root.glob(f"{CGROUP_PREFIX}.*"):
        if not owner_alive(path.name):
            log.info("removing stale sandbox %s", path.name)
            destroy_cgroup(path)
    for console in STATE_DIR.glob(f"{CGROUP_PREFIX}.*.log"):
        if not owner_alive(console.name.removesuffix(".log")):
            console.unlink(missing_ok=True)


# -- users ------------------------------------------------------------------------------


def read_subids(path: Path) -> list[tuple[str, int, int]]:
    """The entries of /etc/subuid or /etc/subgid as (owner, start, count)."""
    entries = []
    if path.exists():
        for line in path.read_text().splitlines():
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                entries.append((fields[0], int(fields[1]), int(fields[2])))
    return entries


def free_subid_start(taken: Sequence[tuple[str, int, int]]) -> int:
    """The lowest start, SUBID_MIN plus a multiple of SUBID_COUNT, overlapping no entry."""
    start = SUBID_MIN
    while any(s < start + SUBID_COUNT and start < s + n for _, s, n in taken):
        start += SUBID_COUNT
    return start


def run_host(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a command on the host as root; raise SandboxCommandError on failure."""
    log.debug("host: %s", shlex.join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SandboxCommandError(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc


def ensure_user(name: str, subids: bool) -> None:
    """Create `name` unless it exists; give it a subordinate range or take all away."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        # useradd would pick ranges itself (SUB_UID_COUNT in login.defs); we choose them
        # below so that a range never overlaps what another user holds.
        home = ["--create-home", "--home-dir", f"/home/{name}", "--shell", "/bin/bash"]
        no_subids = ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
        run_host(["useradd", *home, "--user-group", *no_subids, name])

    files = {"uids": Path("/etc/subuid"), "gids": Path("/etc/subgid")}
    for path in files.values():
        # usermod refuses to add ranges to a file that does not exist.
        if not path.exists():
            path.touch(mode=0o644)
    entries = {kind: read_subids(path) for kind, path in files.items()}
    own = {kind: [(s, n) for o, s, n in found if o == name] for kind, found in entries.items()}
    if subids:
        start = free_subid_start(entries["uids"] + entries["gids"])
        end = start + SUBID_COUNT - 1
        for kind in files:
            if not own[kind]:
                run_host(["usermod", f"--add-sub{kind}", f"{start}-{end}", name])
    else:
        for kind in files:
            for s, n in own[kind]:
                run_host(["usermod", f"--del-sub{kind}", f"{s}-{s + n - 1}", name])


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Serialise user and subid changes between sandboxes started at the same time."""
    STATE_DIR.mkdir(mode=0o755, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# -- the boot ---------------------------------------------------------------------------


def host_masked_units() -> list[str]:
    """The units the host's administrator enabled, and systemd's that touch the host."""
    enabled = {p.name for p in Path("/etc/systemd/system").glob("*.wants/*")}
    enabled |= {p.name for p in Path("/etc/systemd/system").glob("*.requires/*")}
    return sorted(enabled | set(MASKED_UNITS))


def boot_script(console: Path, checkout: Path | None) -> str:
    """The shell script that runs as PID 1 of the new namespaces and becomes systemd."""
    q = shlex.quote
    lines = [
        "set -eu",
        # Private copies of what systemd writes to; `unshare` made `/` private already,
        # so none of these mounts propagates to the host.
        f"if [ -e /dev/console ]; then mount --bind {q(str(console))} /dev/console; fi",
        "mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run",
    ]
    if checkout is not None:
        lines += [f"mkdir {CHECKOUT_MOUNT}", f"mount --bind {q(str(checkout))} {CHECKOUT_MOUNT}"]
    lines += [
        "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp",
        "mount -t proc -o nosuid,nodev,noexec proc /proc",
        # The cgroup namespace is rooted at the sandbox's cgroup: cgroup2 mounted here
        # shows systemd that sub-tree as the whole hierarchy.
        "umount -R -l /sys/fs/cgroup",
        "mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup",
        # A persistent journal (user journals readable by their users, as on a booted
        # machine) that is private to this boot.
        "mkdir -p /var/log/journal",
        "mount -t tmpfs -o mode=2755,nosuid,nodev tmpfs /var/log/journal",
        # Linger flags private to this boot: logind starts only the managers of the
        # users this host let linger, and it re-reads a user's flag whenever it
        # considers stopping them, so the flag must stay in place while they run.
        "mkdir -p /var/lib/systemd/linger",
        "mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs /var/lib/systemd/linger",
        "mkdir -p /run/systemd/system /run/systemd/journald.conf.d",
        "printf '[Journal]\\nReadKMsg=no\\n' > /run/systemd/journald.conf.d/sandbox.conf",
    ]
    lines += [f"ln -s /dev/null /run/systemd/system/{q(u)}" for u in host_masked_units()]
    lines += [
        "mount --make-rshared /",
        f"exec env -i container={CGROUP_PREFIX} PATH={USER_PATH} {SYSTEMD}"
        " --unit=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


class SandboxHost:
    """A systemd host booted in namespaces of its own, with test users lingering in it.

    `user` gets subordinate ids, `nosub_user` (None: not created) gets none. `checkout`
    is bound at CHECKOUT_MOUNT inside (None: nothing is bound). Commands run through
    `run_as_user` and `run_as_root` enter all its namespaces.
    """

    def __init__(
        self,
        user: str = DEFAULT_USER,
        *,
        nosub_user: str | None = NOSUB_USER,
        checkout: Path | None = REPO_ROOT,
        boot_timeout: float = 60.0,
    ) -> None:
        self.user = user
        self.nosub_user = nosub_user
        self.checkout = checkout
        self.boot_timeout = boot_timeout
        self.name = f"{CGROUP_PREFIX}.{os.getpid()}.{process_start_time(os.getpid())}"
        self.name += f".{secrets.token_hex(3)}"
        self.cgroup = cgroup2_root() / self.name
        self.console_log = STATE_DIR / f"{self.name}.log"
        self.pid = 0  # systemd, PID 1 inside, as the host sees it
        self.state = ""  # "running" or "degraded" once booted
        self.failed_units: list[str] = []
        self.boot_seconds = 0.0
        self._launcher: subprocess.Popen[bytes] | None = None

    @property
    def users(self) -> list[str]:
        return [self.user] + ([self.nosub_user] if self.nosub_user else [])

    def __enter__(self) -> SandboxHost:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> SandboxHost:
        """Boot the host and bring up the users' managers; stop it again on failure."""
        check_prerequisites()
        began = time.monotonic()
        with state_lock():
            remove_stale_sandboxes(self.cgroup.parent)
            ensure_user(self.user, subids=True)
            if self.nosub_user:
                ensure_user(self.nosub_user, subids=False)
        open_tun_device()

        try:
            self._launch()
            self._wait_system()
            for user in self.users:
                self._start_user_manager(user)
        except BaseException:
            self.stop()
            raise

        self.boot_seconds = time.monotonic() - began
        log.info("sandbox %s is %s after %.2f s", self.name, self.state, self.boot_seconds)
        return self

    def stop(self) -> None:
        """Power the host off, kill what is left, remove its cgroup and log."""
        if self._launcher is not None:
            self._power_off(self._launcher)
            self._launcher = None
        destroy_cgroup(self.cgroup)
        self.console_log.unlink(missing_ok=True)
        self.pid = 0

    def _power_off(self, launcher: subprocess.Popen[bytes]) -> None:
        """Ask systemd to power off (systemd(1): SIGRTMIN+4); kill it if it does not."""
        try:
            if self.pid:
                os.kill(self.pid, signal.SIGRTMIN + 4)
                launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("sandbox %s did not power off in 30 s: killing it", self.name)
        except ProcessLookupError:
            pass
        # Killing unshare(1) kills its child, PID 1 inside, and with it the namespace.
        launcher.kill()
        launcher.wait()

    def uid(self, user: str | None = None) -> int:
        return pwd.getpwnam(user or self.user).pw_uid

    def home(self, user: str | None = None) -> Path:
        return Path(pwd.getpwnam(user or self.user).pw_dir)

    def user_env(self, user: str | None = None) -> dict[str, str]:
        """The environment of a lingering user's login, as `run_as_user` sets it."""
        entry = pwd.getpwnam(user or self.user)
        runtime = f"/run/user/{entry.pw_uid}"
        return {
            "HOME": entry.pw_dir,
            "USER": entry.pw_name,
            "LOGNAME": entry.pw_name,
            "SHELL": entry.pw_shell,
            "PATH": USER_PATH,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": runtime,
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={runtime}/bus",
        }

    def user_command(
        self, argv: Sequence[str], user: str | None = None, cwd: str | None = None
    ) -> list[str]:
        """The host command line that runs `argv` as `user` inside the sandbox."""
        entry = pwd.getpwnam(user or self.user)
        ids = [f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]
        return self.root_command(["setpriv", *ids, "--", *argv], cwd or entry.pw_dir)

    def root_command(self, argv: Sequence[str], cwd: str | None = None) -> list[str]:
        """The host command line that runs `argv` as root inside the sandbox.

        The command first joins a leaf of the sandbox's cgroup, so that it sees a cgroup
        path inside the sandbox and dies with it, then enters all its namespaces.
        """
        if not self.pid:
            raise SandboxError("the sandbox host is not running")
        procs = self.cgroup / "sandbox-exec" / "cgroup.procs"
        # The host shell's PWD would describe the wrong directory inside.
        join = 'echo $$ > "$0" && unset PWD OLDPWD && exec "$@"'
        enter = ["nsenter", f"--target={self.pid}", "--all", f"--wdns={cwd or '/'}"]
        return ["/bin/sh", "-c", join, str(procs), *enter, *argv]

    def run_as_user(
        self,
        argv: Sequence[str],
        user: str | None = None,
        *,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 120.0,
        cwd: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as `user` (default: the test user) in their home or `cwd`."""
        command = self.user_command(argv, user, cwd)
        full_env = self.user_env(user) | dict(env or {})
        return self._run(command, argv, check, input, full_env, timeout, capture)

    def run_as_root(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 120.0,
        cwd: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as root inside the sandbox, in `/` or `cwd`."""
        full_env = {"HOME": "/root", "PATH": USER_PATH, "LANG": "C.UTF-8"} | dict(env or {})
        command = self.root_command(argv, cwd)
        return self._run(command, argv, check, input, full_env, timeout, capture)

    def _run(
        self,
        command: list[str],
        argv: Sequence[str],
        check: bool,
        input: str | None,
        env: dict[str, str],
        timeout: float | None,
        capture: bool,
    ) -> subprocess.CompletedProcess[str]:
        log.debug("sandbox: %s", shlex.join(argv))
        proc = subprocess.run(
            command,
            input=input,
            env=env,
            timeout=timeout,
            capture_output=capture,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SandboxCommandError(proc.returncode, list(argv), proc.stdout, proc.stderr)
        return subprocess.CompletedProcess(list(argv), proc.returncode, proc.stdout, proc.stderr)

    def _launch(self) -> None:
        """Start the launcher: it joins the new cgroup, then unshares and boots systemd."""
        self.cgroup.mkdir()
        (self.cgroup / "sandbox-exec").mkdir()
        STATE_DIR.mkdir(mode=0o755, exist_ok=True)
        self.console_log.touch(mode=0o600)
        script = boot_script(self.console_log, self.checkout)
        # The launcher, not this process, moves into the cgroup: the cgroup namespace
        # that unshare(1) creates is rooted where its caller lives. pdeathsig and
        # --kill-child take the whole pid namespace down if this process dies.
        join = 'echo $$ > "$0" && exec "$@"'
        unshare = [
            "unshare",
            "--pid",
            "--mount",
            "--cgroup",
            "--uts",
            "--kill-child",
            "--propagation=private",
            "/bin/sh",
            "-c",
            script,
        ]
        argv = [
            "/bin/sh",
            "-c",
            join,
            str(self.cgroup / "cgroup.procs"),
            "setpriv",
            "--pdeathsig=KILL",
            *unshare,
        ]
        with open(self.console_log, "ab") as out:
            self._launcher = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={"PATH": USER_PATH},
                start_new_session=True,
            )
        self.pid = self._wait_for(self._systemd_pid, "systemd to start")

    def _systemd_pid(self) -> int | None:
        assert self._launcher is not None
        pid = self._launcher.pid
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            child = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if child and os.readlink(f"/proc/{child[0]}/exe") == SYSTEMD:
                return int(child[0])
        return None

    def _wait_system(self) -> None:
        """Wait until systemd reports the boot finished; list the units that failed."""

        def finished() -> str | None:
            proc = self.run_as_root(["systemctl", "is-system-running"], check=False)
            state = proc.stdout.strip()
            if state in ("maintenance", "stopping"):
                raise SandboxError(f"failed to boot the sandbox host: it is {state}")
            return state if state in ("running", "degraded") else None

        self.state = self._wait_for(finished, "the system manager to finish booting")
        if self.state == "degraded":
            failed = ["systemctl", "--failed", "--plain", "--no-legend"]
            lines = self.run_as_root(failed, check=False).stdout.splitlines()
            self.failed_units = [line.split()[0] for line in lines if line.strip()]
            log.warning("sandbox host is degraded: failed units: %s", self.failed_units)

    def _start_user_manager(self, user: str) -> None:
        """Let `user` linger and wait until their manager and session bus are up."""
        self.run_as_root(["loginctl", "enable-linger", user])
        bus = Path(f"/proc/{self.pid}/root/run/user/{self.uid(user)}/bus")
        self._wait_for(lambda: bus.exists() or None, f"the session bus of {user}")

        def finished() -> str | None:
            argv = ["systemctl", "--user", "is-system-running"]
            state = self.run_as_user(argv, user, check=False).stdout.strip()
            return state if state in ("running", "degraded") else None

        if self._wait_for(finished, f"the user manager of {user}") == "degraded":
            argv = ["systemctl", "--user", "--failed", "--plain", "--no-legend"]
            failed = self.run_as_user(argv, user, check=False).stdout.strip()
            log.warning("user manager of %s is degraded:\n%s", user, failed)

    def _wait_for(self, probe: Callable[[], T | None], what: str) -> T:
        """Poll `probe` until it returns a value; fail if the launcher exits or time runs out."""
        deadline = time.monotonic() + self.boot_timeout
        while True:
            value = probe()
            if value is not None:
                return value
            if self._launcher is None or self._launcher.poll() is not None:
                raise SandboxError(
                    f"the sandbox host exited while waiting for {what}" + self._console_tail()
                )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"timed out after {self.boot_timeout:.0f} s waiting for "
                    f"{what}" + self._console_tail()
                )
            time.sleep(0.05)

    def _console_tail(self) -> str:
        try:
            lines = self.console_log.read_text(errors="replace").splitlines()[-20:]
        except FileNotFoundError:
            return ""
        return "\n--- console ---\n" + "\n".join(lines) if lines else ""


def check_prerequisites() -> None:
    """Fail early, naming what is missing, when the host cannot boot a sandbox."""
    if os.geteuid() != 0:
        raise SandboxError("the sandbox host needs root (run the tests with sudo)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not os.access(SYSTEMD, os.X_OK):
        missing.append(SYSTEMD)
    if not Path("/usr/lib/systemd/user/dbus.socket").exists():
        missing.append("dbus-user-session (the users' session bus)")
    if missing:
        raise SandboxError(f"the sandbox host needs {', '.join(missing)}: run scripts/install")


def open_tun_device() -> None:
    """Make /dev/net/tun usable by every user, as distributions ship it.

    The sandbox's /dev is the host's, and pasta and slirp4netns open it as the user.
    """
    tun = Path("/dev/net/tun")
    if tun.exists() and tun.stat().st_mode & 0o777 != 0o666:
        tun.chmod(0o666)


# -- the command line -------------------------------------------------------------------


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Boot a throwaway systemd host (as root).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="verb", required=True)
    shell = sub.add_parser("shell", help="an interactive shell as the user, in the checkout")
    run = sub.add_parser("run", help="run one command as the user, in the checkout")
    for p in (shell, run):
        p.add_argument("--user", default=DEFAULT_USER, help=f"default: {DEFAULT_USER}")
    run.add_argument("command", nargs="+", help="the command and its arguments, after --")
    opts = parser.parse_args(args)
    logging.basicConfig(
        level=logging.DEBUG if opts.verbose else logging.INFO,
        format="sandbox: %(message)s",
    )

    host = SandboxHost(DEFAULT_USER if opts.user == NOSUB_USER else opts.user)
    argv = opts.command if opts.verb == "run" else ["/bin/bash", "--login"]
    try:
        with host:
            command = host.user_command(argv, opts.user, cwd=CHECKOUT_MOUNT)
            env = host.user_env(opts.user) | {"TERM": os.environ.get("TERM", "dumb")}
            if opts.verb == "shell":
                log.info("shell as %s in %s; exit powers the host off", opts.user, CHECKOUT_MOUNT)
            # The command owns the terminal: ^C is for it, not for us.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                return subprocess.run(command, env=env, check=False).returncode
            finally:
                signal.signal(signal.SIGINT, previous)
    except (SandboxError, subprocess.CalledProcessError) as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
