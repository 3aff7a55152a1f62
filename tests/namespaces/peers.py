"""Running one bundle with `sdpod runtime`, crun and runc alike, for the comparison tests.

Each run happens in a mount namespace of its own whose /sys/fs/cgroup is the unified
(v2) hierarchy alone, with its mounts shared among themselves (as on a systemd host, and
isolated from the real host's): crun 1.8.1 refuses this machine's mixed v1/v2 layout
(DESIGN.md), and a rootfsPropagation can only be seen on shared mounts. The runtime
starts in a unit-like cgroup of the test's own (`sdpod-peers-*.service`), delegated to
the user of a rootless run, as systemd would delegate a user's unit.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.probe import PROBE_PATH, make_rootfs, parse

from sdpod.runtime import cgroup

REPOSITORY = Path(__file__).resolve().parents[2]
RUNTIMES = ("sdpod", "crun", "runc")
ROOTLESS_USER = "sdpod-test"

# $0: the cgroup under /sys/fs/cgroup; $1: UID:GID to become, or "" to stay root.
_ENVIRONMENT = """
set -e
mount --make-rshared /
umount -R /sys/fs/cgroup 2>/dev/null || true
mount -t cgroup2 none /sys/fs/cgroup
unit=/sys/fs/cgroup/$0
mkdir -p "$unit"
user=$1
shift
if [ -n "$user" ]; then
    chown "$user" "$unit" "$unit/cgroup.procs" "$unit/cgroup.threads" "$unit/cgroup.subtree_control"
fi
echo $$ > "$unit/cgroup.procs"
if [ -n "$user" ]; then
    exec setpriv --reuid="${user%:*}" --regid="${user#*:}" --init-groups "$@"
fi
exec "$@"
"""


@dataclass(frozen=True)
class Peer:
    """Who runs the bundle, and as whom."""

    runtime: str
    user: pwd.struct_passwd | None = None

    @property
    def rootless(self) -> bool:
        return self.user is not None

    def argv(self, state: Path) -> list[str]:
        if self.runtime == "sdpod":
            return [sys.executable, "-m", "sdpod.cli.runtime", "--root", str(state)]
        return [self.runtime, "--root", str(state)]


def missing(runtime: str) -> str | None:
    """Why `runtime` cannot run here, or None."""
    if runtime != "sdpod" and shutil.which(runtime) is None:
        return f"{runtime} is not installed (scripts/install --test installs it)"
    return None


def rootless_user() -> pwd.struct_passwd | None:
    """The user with subordinate ids that the sandbox set-up makes, if it exists."""
    try:
        return pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        return None


class Workspace:
    """A directory every user can reach, for bundles, state roots and hook output."""

    def __init__(self, owner: pwd.struct_passwd | None) -> None:
        token = secrets.token_hex(4)
        self.path = Path(f"/tmp/sdpod-peers-{token}")
        # The same for every run, so that what a container sees of its cgroup compares.
        self.container_id = f"peers-{token}"
        self.unit = f"sdpod-peers-{token}.service"
        self.path.mkdir(mode=0o755)
        self.owner = owner
        self._own(self.path)

    def directory(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        self._own(path)
        return path

    def bundle(self, name: str, spec: dict[str, Any], probe: Path) -> Path:
        bundle = self.directory(name)
        owner = (self.owner.pw_uid, self.owner.pw_gid) if self.owner else None
        make_rootfs(bundle / "rootfs", probe, owner)
        (bundle / "config.json").write_text(json.dumps(spec, indent=1))
        self._own(bundle / "config.json")
        return bundle

    def _own(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def run(
    peer: Peer,
    workspace: Workspace,
    bundle: Path,
    verb: list[str],
    timeout: float = 60,
    output: Path | None = None,
    keep_unit: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`RUNTIME --root STATE VERB...` in the comparison environment, from the bundle.

    With `output`, standard output and error go to that file instead of being captured:
    a created container keeps them, and a pipe would stay open until it ends. With
    `keep_unit`, the unit's cgroup outlives the command, for a container that does;
    `remove_unit` removes it.
    """
    user = f"{peer.user.pw_uid}:{peer.user.pw_gid}" if peer.user else ""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(REPOSITORY),
        "XDG_RUNTIME_DIR": str(workspace.directory("xdg")),
        "HOME": str(workspace.path),
    }
    argv = [
        *["unshare", "--mount", "--propagation", "private"],
        *["sh", "-c", _ENVIRONMENT, workspace.unit, user],
        *peer.argv(workspace.directory(f"state-{peer.runtime}")),
        *verb,
    ]
    try:
        if output is None:
            return subprocess.run(
                argv, cwd=bundle, env=env, capture_output=True, text=True, timeout=timeout
            )
        with output.open("a") as sink:
            return subprocess.run(
                argv, cwd=bundle, env=env, stdout=sink, stderr=sink, text=True, timeout=timeout
            )
    finally:
        if not keep_unit:
            remove_unit(workspace)


def remove_unit(workspace: Workspace) -> None:
    """Kill whatever is left in the workspace's unit cgroup, and remove it."""
    mount = cgroup.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    if mount is not None and (mount / workspace.unit).is_dir():
        cgroup.remove(mount / workspace.unit)


def probe(peer: Peer, workspace: Workspace, bundle: Path) -> dict[str, str]:
    """What the probe reports when `peer` runs the bundle."""
    done = run(peer, workspace, bundle, ["run", "--bundle", str(bundle), workspace.container_id])
    assert done.returncode == 0, f"{peer.runtime} failed ({done.returncode}): {done.stderr}"
    # `run` deletes what it made: a cgroup left at the root would mean it could not (as
    # when the container's unmounting reached the runtime's own /sys/fs/cgroup).
    mount = cgroup.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    assert mount is None or not (mount / workspace.container_id).exists(), peer.runtime
    return parse(done.stdout)


def with_probe(spec: dict[str, Any], *files: str) -> dict[str, Any]:
    """`spec` running the probe without a terminal."""
    spec = json.loads(json.dumps(spec))
    spec["process"]["terminal"] = False
    spec["process"]["args"] = [PROBE_PATH, *files]
    return spec
