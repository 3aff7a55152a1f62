"""The network modes in real namespaces: none, host, and another container's network.

Containers are started by the launcher by hand, as in test_runtime_launch. Those that
others join run in a cgroup of the test's own named like their unit,
`sdpod-NAME.service`, where the launcher makes its leaves as under systemd and where a
joiner's launcher looks for them; the cgroup is killed afterwards, slirp4netns with it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.mkimage import build_busybox_image

from namespaces.common import MAPPING, MARKS, remove_cgroup
from sdpod.config.model import Container, LayoutImage, Network, NetworkMode
from sdpod.images.store import ImageStore, StoredImage
from sdpod.kernel.userns import run_in_userns
from sdpod.network import files
from sdpod.runtime import bundle, cgroup, exec, shared
from sdpod.runtime.spec import BundleLayout, build_spec

pytestmark = MARKS

SERVED = "hello from sdpod"  # the busybox image's /www/index.html
LOOPBACK_PORT = 8080
# /proc/net/tcp: 127.0.0.1:8080 in hex, and the state LISTEN.
LISTENING = f"0100007F:{LOOPBACK_PORT:04X} 00000000:0000 0A"

NETWORK_PROBE = """
echo "devices=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ')"
echo "lo_flags=$(cat /sys/class/net/lo/flags)"
echo "net=$(readlink /proc/self/ns/net)"
echo "user=$(readlink /proc/self/ns/user)"
echo "mnt=$(readlink /proc/self/ns/mnt)"
echo "hostname=$(hostname)"
echo "resolv=$(tr '\\n' ';' < /etc/resolv.conf)"
"""
JOINER_PROBE = NETWORK_PROBE + f'echo "page=$(wget -qO- http://127.0.0.1:{LOOPBACK_PORT}/)"\n'


@dataclass
class World:
    """What every container of a test module shares: the image and the runtime directory."""

    root: Path
    image: StoredImage

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.root / "run")}
        env.pop("NOTIFY_SOCKET", None)
        return env

    def bundle(self, name: str, network: Network, command: str) -> Path:
        """Write container `name`'s bundle; return its directory."""
        image_ref = LayoutImage(self.root / "image", "latest")
        container = Container(name, image_ref, command=("sh", "-c", command), network=network)
        layout = BundleLayout.under(self.root / name, self.image.lowers, self.root / "volumes")
        joined = None
        if network.container is not None:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("XDG_RUNTIME_DIR", str(self.root / "run"))
                joined = shared.namespace_paths(network.container)
        init = Path(shutil.which("tini-static") or "")
        spec = build_spec(container, self.image.config, layout, MAPPING, init, shared=joined)
        host = files.HostFiles(Path("/etc/hosts").read_text(), Path("/etc/resolv.conf").read_text())
        # The files of a joiner are its owner's, whose own settings are all defaults here.
        owner = Container(network.container, image_ref) if network.container else container
        bundle.prepare(layout, spec, files.etc_files(container, owner, host), (0, 0))
        return layout.bundle

    def launcher(self, bundle_dir: Path) -> list[str]:
        return [sys.executable, "-m", "sdpod.runtime", "launch", str(bundle_dir)]

    def probe(self, name: str, network: Network, probe: str) -> dict[str, str]:
        """Run `probe` in a new container `name` until it exits; what it printed."""
        result = subprocess.run(
            self.launcher(self.bundle(name, network, probe)),
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
        )
        assert result.returncode == 0, result.stderr
        return parse(result.stdout)


def parse(output: str) -> dict[str, str]:
    lines = [line.partition("=") for line in output.splitlines() if "=" in line]
    return {key: value.strip() for key, _, value in lines}


@dataclass
class Running:
    """A container that keeps running in a cgroup named like its unit."""

    name: str
    init_pid: int
    spec: dict[str, Any]

    def namespace(self, kind: str) -> str:
        return os.readlink(f"/proc/{self.init_pid}/ns/{kind}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("network")
    build_busybox_image(root / "image", "latest")
    store = ImageStore(root / "store")
    image = store.import_layout(
        LayoutImage(root / "image", "latest"), unpack=lambda work: run_in_userns(MAPPING, work)
    )
    (root / "run").mkdir()
    try:
        yield World(root, image)
    finally:
        run_in_userns(MAPPING, lambda: shutil.rmtree(root))


@pytest.fixture(scope="module")
def unit_cgroups() -> Iterator[list[Path]]:
    """Cgroups named like units, each killed and removed at the end of the module."""
    made: list[Path] = []
    yield made
    for path in made:
        remove_cgroup(path)


def start_running(
    world: World, unit_cgroups: list[Path], stem: str, network: Network, command: str
) -> Running:
    mount = cgroup.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    if mount is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    name = f"{stem}-{secrets.token_hex(3)}"
    unit = mount / f"sdpod-{name}.service"
    unit.mkdir()
    unit_cgroups.append(unit)

    bundle_dir = world.bundle(name, network, command)
    join = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    # The container inherits the launcher's output and keeps running: a file, not a pipe.
    log = world.root / f"{name}.log"
    with log.open("w") as output:
        result = subprocess.run(
            ["/bin/sh", "-c", join, str(unit), *world.launcher(bundle_dir)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=60,
            env=world.env,
        )
    assert result.returncode == 0, log.read_text()
    init_pid = int((world.root / f"run/sdpod/{name}.pid").read_text())
    return Running(name, init_pid, exec.read_spec(bundle_dir))


@pytest.fixture(scope="module")
def server(world: World, unit_cgroups: list[Path]) -> Running:
    """A container of its own network (slirp4netns) serving only on its loopback."""
    command = f"exec httpd -f -p 127.0.0.1:{LOOPBACK_PORT} -h /www"
    running = start_running(world, unit_cgroups, "server", Network(), command)
    deadline = time.monotonic() + 10
    while LISTENING not in Path(f"/proc/{running.init_pid}/net/tcp").read_text():
        assert time.monotonic() < deadline, "httpd did not listen on the container's loopback"
        time.sleep(0.05)
    return running


@pytest.fixture(scope="module")
def on_host(world: World, unit_cgroups: list[Path]) -> Running:
    """A container on the host's network that stays."""
    return start_running(world, unit_cgroups, "onhost", Network(NetworkMode.HOST), "exec sleep 600")


def host_devices() -> str:
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return " ".join(sorted(line.split(":")[0].strip() for line in lines))


# -- none ------------------------------------------------------------------------------


def test_no_network_has_loopback_alone_and_up(world: World) -> None:
    seen = world.probe("alone", Network(NetworkMode.NONE), NETWORK_PROBE)
    assert seen["devices"] == "lo"
    assert int(seen["lo_flags"], 16) & 0x1, seen["lo_flags"]  # IFF_UP
    assert seen["net"] != os.readlink("/proc/self/ns/net")
    assert "nameserver" not in seen["resolv"]


# -- host ------------------------------------------------------------------------------


def test_the_host_network_shows_the_hosts_interfaces(world: World) -> None:
    seen = world.probe("hostnet", Network(NetworkMode.HOST), NETWORK_PROBE)
    assert seen["devices"] == host_devices()
    assert seen["net"] == os.readlink("/proc/self/ns/net")
    host_resolv = Path("/etc/resolv.conf").read_text().splitlines()
    assert [line for line in seen["resolv"].split(";") if line] == [
        line for line in host_resolv if line
    ]
    # Its names stay its own.
    assert seen["hostname"] == "hostnet" != os.uname().nodename


def test_exec_enters_a_container_on_the_host_network(on_host: Running) -> None:
    output = os.memfd_create("probe-output")
    try:
        argv = ["sh", "-c", NETWORK_PROBE]
        status = exec.run(on_host.init_pid, on_host.spec, argv, stdio=exec.Stdio(None, output))
        os.lseek(output, 0, os.SEEK_SET)
        seen = parse(os.read(output, 65536).decode())
    finally:
        os.close(output)
    assert status == 0
    assert seen["devices"] == host_devices()
    assert seen["mnt"] == on_host.namespace("mnt")


# -- container:NAME --------------------------------------------------------------------


def test_a_joiner_is_in_its_owners_network_and_reaches_its_loopback(
    world: World, server: Running
) -> None:
    seen = world.probe("joiner", Network(NetworkMode.CONTAINER, server.name), JOINER_PROBE)
    assert seen["net"] == server.namespace("net")
    assert seen["user"] == server.namespace("user")
    assert seen["page"] == SERVED
    assert "tap0" in seen["devices"].split()
    # Its mount and UTS namespaces are its own.
    assert seen["mnt"] != server.namespace("mnt")
    assert seen["hostname"] == "joiner"


def test_a_joiner_of_a_host_network_container_is_on_the_host_network(
    world: World, on_host: Running
) -> None:
    network = Network(NetworkMode.CONTAINER, on_host.name)
    seen = world.probe("hostjoiner", network, NETWORK_PROBE)
    assert seen["devices"] == host_devices()
    assert seen["user"] == on_host.namespace("user")


def test_joining_a_container_that_is_not_running_fails_with_its_name(world: World) -> None:
    bundle_dir = world.bundle("orphan", Network(NetworkMode.CONTAINER, "nowhere"), "true")
    result = subprocess.run(
        world.launcher(bundle_dir), capture_output=True, text=True, timeout=60, env=world.env
    )
    assert result.returncode == 1
    assert "failed to join the network of container nowhere: it is not running" in result.stderr, (
        result.stderr
    )
