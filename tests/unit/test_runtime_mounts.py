"""The mount plan and the path resolution inside a root: pure, no privileges."""

from __future__ import annotations

import os
from pathlib import Path

from sdpod.kernel import syscalls as sc
from sdpod.runtime import mounts
from sdpod.runtime.spec import default_mounts


def test_options_split_into_flags_propagation_and_data() -> None:
    parsed = mounts.parse_options(["nosuid", "ro", "rw", "rprivate", "mode=755", "size=1k"])
    assert parsed.flags == sc.MS_NOSUID
    assert parsed.propagation == sc.MS_PRIVATE | sc.MS_REC
    assert parsed.data == "mode=755,size=1k"


def test_plan_has_the_spec_mounts_then_devices_then_masks() -> None:
    spec = {
        "mounts": default_mounts(),
        "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
    }
    plan = mounts.plan_mounts(spec)
    targets = [op.target for op in plan]
    assert targets[0] == "/proc"
    assert targets.index("/dev") < targets.index("/dev/null") < targets.index("/dev/ptmx")
    assert isinstance(plan[-2], mounts.Mask) and plan[-2].target == "/proc/kcore"
    assert isinstance(plan[-1], mounts.ReadOnly) and plan[-1].target == "/proc/sys"
    cgroup = next(op for op in plan if op.target == "/sys/fs/cgroup")
    assert isinstance(cgroup, mounts.Mount) and cgroup.fstype == "cgroup2"
    assert all(op.describe() for op in plan)


def test_bind_type_becomes_a_bind_mount() -> None:
    plan = mounts.plan_mounts(
        {"mounts": [{"destination": "/www", "type": "bind", "source": "/srv", "options": ["ro"]}]}
    )
    volume = plan[0]
    assert isinstance(volume, mounts.Mount) and volume.is_bind and volume.fstype is None


def test_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "absolute")
    os.symlink("../../../../outside", root / "climbing")
    os.symlink("etc", root / "relative")

    assert mounts.resolve_in_root(str(root), "/absolute/hosts") == str(root / "etc/hosts")
    assert mounts.resolve_in_root(str(root), "/climbing/x") == str(root / "outside/x")
    assert mounts.resolve_in_root(str(root), "/relative/../etc") == str(root / "etc")
    assert mounts.resolve_in_root(str(root), "/../../x") == str(root / "x")


def test_device_links_are_kept_from_an_earlier_start(tmp_path: Path) -> None:
    # A root without a /dev mount keeps the links of its last start, dangling until
    # /proc is mounted: a second start must find them there, not follow them.
    (tmp_path / "dev").mkdir()
    links = [mounts.Symlink(destination, link) for destination, link in mounts.DEVICE_LINKS]

    mounts.execute(links, str(tmp_path))
    mounts.execute(links, str(tmp_path))

    assert os.readlink(tmp_path / "dev/fd") == "/proc/self/fd"
    assert os.readlink(tmp_path / "dev/ptmx") == "pts/ptmx"
