"""What every namespace test shares: who may run them, and the id mapping they use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdpod.kernel.userns import IdMapping, IdRange

MARKS = [
    pytest.mark.namespaces,
    pytest.mark.skipif(os.geteuid() != 0, reason="writes id maps and cgroups, which needs root"),
    pytest.mark.skipif(
        not (shutil.which("slirp4netns") and shutil.which("tini-static")),
        reason="needs slirp4netns and tini-static (scripts/install installs both)",
    ),
]

# Root of the container is root outside: the tests run as root without /etc/subuid.
MAPPING = IdMapping(
    uids=(IdRange(0, 0, 1), IdRange(1, 300000, 65536)),
    gids=(IdRange(0, 0, 1), IdRange(1, 300000, 65536)),
)


def remove_cgroup(path: Path) -> None:
    """Kill everything in a test's cgroup (cgroup.kill, Linux 5.14) and remove it."""
    (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + 10
    while "populated 1" in (path / "cgroup.events").read_text():
        assert time.monotonic() < deadline, f"processes of {path} did not die"
        time.sleep(0.05)
    for leaf in path.iterdir():
        if leaf.is_dir():
            leaf.rmdir()
    path.rmdir()


def launch_by_hand(bundle: Path, run_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the unit's launcher on `bundle` as systemd would, but from the test: no
    notify socket, its runtime files under `run_dir`."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run_dir)}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        [sys.executable, "-m", "sdpod.runtime", "launch", str(bundle)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
