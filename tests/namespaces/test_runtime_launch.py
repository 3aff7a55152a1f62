"""The launcher run by hand, outside systemd: what the container sees from inside.

These fork into real user, mount, pid, uts, ipc, network and cgroup namespaces, and so
need root (to write the id maps without /etc/subuid) plus slirp4netns and tini.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.mkimage import build_busybox_image

from namespaces.common import MAPPING, MARKS, launch_by_hand
from sdpod.config.model import Container, LayoutImage
from sdpod.images.store import ImageStore
from sdpod.kernel import capabilities
from sdpod.kernel.userns import run_in_userns
from sdpod.runtime import bundle
from sdpod.runtime.spec import BundleLayout, build_spec

pytestmark = MARKS

PROBE = """
echo "hostname=$(hostname)"
echo "uid=$(id -u) gid=$(id -g)"
echo "uid_map=$(cat /proc/self/uid_map | tr -s ' ' | tr '\\n' ';')"
echo "pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')"
echo "self=$$"
echo "devices=$(ls /dev | tr '\\n' ' ')"
echo "keys=$(wc -c < /proc/keys 2>&1)"
echo "proc_sys_rw=$(echo x > /proc/sys/kernel/hostname 2>/dev/null && echo yes || echo no)"
echo "sysfs_options=$(awk '$5 == "/sys" {print $6}' /proc/self/mountinfo)"
echo "volume=$(cat /data/note)"
echo "write_volume=$(touch /data/x 2>/dev/null && echo yes || echo no)"
echo "hosts=$(grep -c probe /etc/hosts)"
echo "host_root=$(ls /work 2>&1 | head -1)"
echo "bounding=$(awk '/^CapBnd/ {print $2}' /proc/self/status)"
echo "effective=$(awk '/^CapEff/ {print $2}' /proc/self/status)"
echo "lo=$(cat /sys/class/net/lo/operstate)"
echo "tap0=$(cat /sys/class/net/tap0/address >/dev/null && echo present)"
echo "seccomp=$(awk '/^Seccomp:/ {print $2}' /proc/self/status)"
echo "unshare=$(unshare -U true 2>&1 && echo allowed)"
"""


def run_probe(tmp_path: Path, probe: str = PROBE, **settings: Any) -> dict[str, str]:
    image_dir = tmp_path / "image"
    build_busybox_image(image_dir, "latest")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/note").write_text("from the host\n")

    store = ImageStore(tmp_path / "store")
    image = store.import_layout(
        LayoutImage(image_dir, "latest"), unpack=lambda work: run_in_userns(MAPPING, work)
    )
    from pathlib import PurePosixPath

    from sdpod.config.model import BindVolume

    container = Container(
        name="probe",
        image=LayoutImage(image_dir, "latest"),
        command=("sh", "-c", probe),
        volumes=(BindVolume(tmp_path / "data", PurePosixPath("/data"), read_only=True),),
        **settings,
    )
    layout = BundleLayout.under(tmp_path / "bundle", image.lowers, tmp_path / "volumes")
    spec = build_spec(
        container, image.config, layout, MAPPING, Path(shutil.which("tini-static") or "")
    )
    bundle.prepare(
        layout,
        spec,
        {
            "hosts": "127.0.0.1 localhost probe\n",
            "hostname": "probe\n",
            "resolv.conf": "nameserver 10.0.2.3\n",
        },
        root_owner=(0, 0),
    )

    result = launch_by_hand(layout.bundle, tmp_path / "run")
    # Run by hand, nobody kills the network helper that systemd would kill with the unit.
    # SIGKILL, so that its shell cannot go on to kill the init's (by now free) pid.
    # "--": a pattern that begins with "--" would be taken for an option, killing nothing.
    subprocess.run(["pkill", "-KILL", "-f", "--", f"--api-socket={tmp_path}"], check=False)
    assert result.returncode == 0, result.stderr
    lines = [line.partition("=") for line in result.stdout.splitlines() if "=" in line]
    return {key: value.strip() for key, _, value in lines}


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("launch")
    try:
        return run_probe(path)
    finally:
        run_in_userns(MAPPING, lambda: shutil.rmtree(path))


def test_the_container_has_its_own_names_and_ids(seen: dict[str, str]) -> None:
    assert seen["hostname"] == "probe"
    assert seen["uid"] == "0 gid=0"
    assert seen["uid_map"] == "0 0 1; 1 300000 65536;"


def test_the_init_is_pid_1_and_runs_the_command(seen: dict[str, str]) -> None:
    assert seen["pid1"].startswith("/dev/init -- sh -c")
    assert seen["self"] != "1"


def test_dev_holds_the_devices_every_container_gets(seen: dict[str, str]) -> None:
    for device in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"):
        assert device in seen["devices"].split()


def test_kernel_files_are_masked_and_read_only(seen: dict[str, str]) -> None:
    assert seen["keys"] == "0"
    assert seen["proc_sys_rw"] == "no"
    assert seen["sysfs_options"].split(",")[0] == "ro"


def test_volumes_and_etc_files_are_mounted(seen: dict[str, str]) -> None:
    assert seen["volume"] == "from the host"
    assert seen["write_volume"] == "no"
    assert seen["hosts"] == "1"


def test_the_host_root_is_out_of_reach(seen: dict[str, str]) -> None:
    assert "No such file or directory" in seen["host_root"]


def test_the_network_namespace_has_loopback_and_tap(seen: dict[str, str]) -> None:
    assert seen["lo"] in ("up", "unknown")
    assert seen["tap0"] == "present"


def test_capabilities_are_the_engines_default_set(seen: dict[str, str]) -> None:
    expected = sum(1 << capabilities.NAMES.index(name) for name in capabilities.DEFAULT)
    assert int(seen["bounding"], 16) == expected
    assert int(seen["effective"], 16) == expected


READ_ONLY_PROBE = """
echo "root_write=$(touch /probe 2>/dev/null && echo yes || echo no)"
echo "tmp_write=$(touch /tmp/probe 2>/dev/null && echo yes || echo no)"
echo "run_write=$(touch /run/probe 2>/dev/null && echo yes || echo no)"
echo "uid=$(id -u)"
echo "cwd=$(pwd)"
echo "hostname=$(hostname)"
"""


def test_read_only_root_user_directory_and_host_name(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("readonly")
    try:
        seen = run_probe(
            path,
            READ_ONLY_PROBE,
            read_only=True,
            user="www",
            working_dir="/www",
            hostname="ro.home.arpa",
        )
    finally:
        run_in_userns(MAPPING, lambda: shutil.rmtree(path))
    assert (seen["root_write"], seen["tmp_write"], seen["run_write"]) == ("no", "yes", "yes")
    assert (seen["uid"], seen["cwd"], seen["hostname"]) == ("33", "/www", "ro.home.arpa")


def test_a_seccomp_filter_refuses_what_the_kernel_keeps_for_the_host(
    seen: dict[str, str],
) -> None:
    assert seen["seccomp"] == "2"  # SECCOMP_MODE_FILTER
    assert "Operation not permitted" in seen["unshare"]


SECCOMP_PROBE = """
echo "unshare=$(unshare -U true 2>&1 && echo allowed)"
"""


def test_a_capability_added_lets_its_calls_through(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("sysadmin")
    try:
        seen = run_probe(path, SECCOMP_PROBE, cap_add=("CAP_SYS_ADMIN",))
    finally:
        run_in_userns(MAPPING, lambda: shutil.rmtree(path))
    assert seen["unshare"] == "allowed"
