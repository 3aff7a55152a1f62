"""Helpers for system tests that drive the real `sdpod` CLI inside the sandbox host.

A `Project` is a directory under a test user's home holding a TOML file, the `www/`
directory of the example and an OCI layout built by mkimage, all owned by that user;
its methods run `sdpod` and `systemctl --user` as that user and read what they report.
Every wait is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sandbox import SandboxHost
from support.mkimage import BUSYBOX_CONFIG, Entry, build_layout, busybox_entries

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO_ROOT / "examples"
HTTPD = ("httpd", "-f", "-v", "-p", "80", "-h", "/www")
SDPOD_TIMEOUT = 90.0
# What a lingering user runs when no container does: their manager, its PAM helper and
# the session bus that D-Bus activation started.
USER_BASELINE = {"systemd", "(sd-pam)", "dbus-daemon"}


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `probe` every 50 ms until it returns a value; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fetch(url: str, timeout: float = 10.0) -> str:
    """GET `url`, retrying while nothing answers yet; raise the last error after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body.decode()
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def refuses(port: int) -> bool:
    """Whether a TCP connection to 127.0.0.1:`port` is refused."""
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def chown_tree(root: Path, user: str) -> None:
    """Give `root` and everything beneath it to `user`, as the user_dir fixture does."""
    entry = pwd.getpwnam(user)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(Path(directory) / name, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def home_dir(sandbox: SandboxHost, user: str, name: str) -> Iterator[Path]:
    """A fresh directory owned by `user` under their home, removed afterwards."""
    path = sandbox.home(user) / "tests" / name
    path.mkdir(parents=True)
    chown_tree(path.parent, user)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build_image(dest: Path, extra: Sequence[Entry] = ()) -> None:
    """The busybox test image at `dest`, tagged `latest`, with `extra` entries added."""
    entries = busybox_entries() + list(extra)
    build_layout(dest, "latest", [entries], dict(BUSYBOX_CONFIG))


def container_toml(
    name: str,
    port: int,
    *,
    image: str = "oci:image:latest",
    command: Sequence[str] = HTTPD,
    restart: str = "always",
) -> str:
    """A TOML file shaped like examples/web.toml."""
    return (
        "[container]\n"
        f"name = {json.dumps(name)}\n"
        f"image = {json.dumps(image)}\n"
        f"command = {json.dumps(list(command))}\n"
        f'ports = ["127.0.0.1:{port}:80"]\n'
        'volumes = ["./www:/www:ro"]\n'
        f"restart = {json.dumps(restart)}\n"
    )


@dataclass
class Project:
    """One container's files, and the commands that inspect it, run as `user`.

    `directory` is where the TOML file lives as the sandbox sees it; `www` is the site's
    directory as this process sees it (the checkout is bound elsewhere inside).
    """

    sandbox: SandboxHost
    user: str
    directory: str
    toml: str
    www: Path
    name: str
    port: int

    @classmethod
    def create(
        cls,
        sandbox: SandboxHost,
        user: str,
        directory: Path,
        name: str,
        port: int,
        *,
        command: Sequence[str] = HTTPD,
        restart: str = "always",
        extra: Sequence[Entry] = (),
    ) -> Project:
        """Copy the example's www/, build the image, write `web.toml`, give it all to `user`."""
        shutil.copytree(EXAMPLES / "www", directory / "www")
        build_image(directory / "image", extra)
        path = directory / "web.toml"
        path.write_text(container_toml(name, port, command=command, restart=restart))
        chown_tree(directory, user)
        return cls(sandbox, user, str(directory), str(path), directory / "www", name, port)

    def rewrite(self, text: str) -> None:
        """Replace the TOML file with `text` (only for projects that `create` made)."""
        Path(self.toml).write_text(text)
        chown_tree(Path(self.toml), self.user)

    @property
    def unit(self) -> str:
        return f"sdpod-{self.name}.service"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def index_html(self) -> str:
        return (self.www / "index.html").read_text()

    @property
    def container_dir(self) -> Path:
        return self.sandbox.home(self.user) / ".local/share/sdpod/containers" / self.name

    def runtime_files(self) -> list[str]:
        """`$XDG_RUNTIME_DIR/sdpod/NAME.*`, read through the sandbox's root: /run is its own."""
        runtime = f"/proc/{self.sandbox.pid}/root/run/user/{self.sandbox.uid(self.user)}/sdpod"
        return sorted(p.name for p in Path(runtime).glob(f"{self.name}.*"))

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `argv` as the user in the project's directory; never raise on its status."""
        return self.sandbox.run_as_user(
            argv, self.user, check=False, timeout=timeout, cwd=self.directory
        )

    def sdpod(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(["sdpod", *args], timeout=SDPOD_TIMEOUT)

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.sdpod("up", self.toml)

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.sdpod("down", self.toml)

    def show(self) -> dict[str, str]:
        """ActiveState, SubState, MainPID, ControlGroup, NRestarts and LoadState of the unit."""
        props = "ActiveState,SubState,MainPID,ControlGroup,NRestarts,LoadState"
        out = self.run(["systemctl", "--user", "show", "-p", props, self.unit])
        assert out.returncode == 0, out.stderr
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def read(self, path: str) -> str | None:
        """The text of `path` as the user reads it inside the sandbox, None if unreadable."""
        out = self.run(["cat", path])
        return out.stdout if out.returncode == 0 else None

    def cgroup_pids(self, control_group: str, leaf: str) -> list[int]:
        text = self.read(f"/sys/fs/cgroup{control_group}/{leaf}/cgroup.procs")
        assert text is not None, f"no cgroup leaf {leaf} under {control_group}"
        return [int(pid) for pid in text.split()]

    def comm(self, pid: int) -> str:
        return (self.read(f"/proc/{pid}/comm") or "").strip()

    def journal(self, since: float) -> str:
        """The unit's messages since `since` (seconds since the epoch, as time.time())."""
        argv = ["journalctl", "--user", "-u", self.unit, "-o", "cat", "--no-pager"]
        return self.run([*argv, f"--since=@{since:.6f}"]).stdout

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command name) of every process of the user, but the `ps` that lists them."""
        out = self.run(["ps", "-u", self.user, "-o", "pid=,comm="])
        rows = [line.split(None, 1) for line in out.stdout.splitlines() if line.strip()]
        return [(int(pid), comm.strip()) for pid, comm in rows if comm.strip() != "ps"]

    def sdpod_units(self) -> list[str]:
        """Every sdpod unit the user's manager has loaded, in any state."""
        argv = ["systemctl", "--user", "list-units", "--all", "--plain", "--no-legend"]
        out = self.run([*argv, "sdpod-*"])
        return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]

    def mounts_of_container(self) -> list[str]:
        """Lines of any process's mountinfo in the sandbox naming the container's directory."""
        script = 'cat /proc/[0-9]*/mountinfo 2>/dev/null | grep -F -- "$0" || true'
        out = self.sandbox.run_as_root(["sh", "-c", script, str(self.container_dir)])
        return sorted(set(out.stdout.splitlines()))


# How long a container may take to start and write the report `report` reads.
START_TIMEOUT = 30.0


def report(project: Project) -> dict[str, str]:
    """The files a container wrote into its project's data/ volume, once it wrote the
    last, `done`; on a timeout, the unit's state and journal say why."""
    data = Path(project.directory) / "data"

    def done() -> bool | None:
        return (data / "done").exists() or None

    try:
        wait_for(done, START_TIMEOUT, f"{project.name} to write its report")
    except AssertionError:
        raise AssertionError(f"{project.show()}\n{project.journal(0)}") from None
    return {path.name: path.read_text() for path in data.iterdir() if path.is_file()}
