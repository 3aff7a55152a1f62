"""Root mode: as root, sdpod runs containers as system services, each in its own id range."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost

from system.helpers import EXAMPLES, build_image, fetch, free_port, refuses

pytestmark = pytest.mark.system

IDRANGES = Path("/var/lib/sdpod/idranges.json")


def as_root(sandbox: SandboxHost, *argv: str) -> subprocess.CompletedProcess[str]:
    return sandbox.run_as_root(list(argv), check=False, timeout=90)


def show(sandbox: SandboxHost, unit: str) -> dict[str, str]:
    out = as_root(sandbox, "systemctl", "show", "-p", "ActiveState,MainPID,LoadState", unit)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def process_uid(sandbox: SandboxHost, pid: str) -> int:
    status = as_root(sandbox, "cat", f"/proc/{pid}/status").stdout
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


def two_container_toml(ports: list[int], network: str) -> str:
    """Two web servers on container ports 80 and 81, on `network`."""
    tables = []
    for index, port in enumerate(ports, start=1):
        command = ["httpd", "-f", "-p", str(79 + index), "-h", "/www"]
        tables.append(
            f"[containers.rootweb{index}]\n"
            'image = "oci:image:latest"\n'
            f"command = {json.dumps(command)}\n"
            f'ports = ["127.0.0.1:{port}:{79 + index}"]\n'
            'volumes = ["./www:/www:ro"]\n'
            f'network = "{network}"\n'
        )
    return "\n".join(tables)


@pytest.fixture
def two_containers(sandbox: SandboxHost, user_dir: Path) -> Iterator[tuple[Path, list[int]]]:
    """A file with two busybox web containers, `rootweb1` and `rootweb2`."""
    shutil.copytree(EXAMPLES / "www", user_dir / "www")
    build_image(user_dir / "image", ())
    ports = [free_port(), free_port()]
    toml = user_dir / "root.toml"
    toml.write_text(two_container_toml(ports, "slirp4netns"))
    yield toml, ports
    as_root(sandbox, "sdpod", "down", str(toml))


def test_root_runs_each_container_in_its_own_range(
    sandbox: SandboxHost, two_containers: tuple[Path, list[int]]
) -> None:
    toml, ports = two_containers

    up = as_root(sandbox, "sdpod", "up", str(toml))
    assert up.returncode == 0, up.stderr

    uids = []
    for name, port in zip(("rootweb1", "rootweb2"), ports, strict=True):
        state = show(sandbox, f"sdpod-{name}.service")
        assert state["ActiveState"] == "active", state
        uids.append(process_uid(sandbox, state["MainPID"]))
        assert fetch(f"http://127.0.0.1:{port}/") == (EXAMPLES / "www/index.html").read_text()
    assert all(uid >= 1 << 30 for uid in uids), uids
    assert abs(uids[0] - uids[1]) >= 65536, uids
    assert set(json.loads(IDRANGES.read_text())) >= {"rootweb1", "rootweb2"}

    down = as_root(sandbox, "sdpod", "down", str(toml))
    assert down.returncode == 0, down.stderr
    for name, port in zip(("rootweb1", "rootweb2"), ports, strict=True):
        assert show(sandbox, f"sdpod-{name}.service")["LoadState"] == "not-found"
        assert not (Path("/var/lib/sdpod/containers") / name).exists()
        assert refuses(port)
    assert not set(json.loads(IDRANGES.read_text())) & {"rootweb1", "rootweb2"}


def test_root_gives_the_containers_of_a_pod_the_range_of_its_holder(
    sandbox: SandboxHost, two_containers: tuple[Path, list[int]]
) -> None:
    toml, ports = two_containers
    toml.write_text(two_container_toml(ports, "private"))

    up = as_root(sandbox, "sdpod", "up", str(toml))
    assert up.returncode == 0, up.stderr
    states = [show(sandbox, f"sdpod-{name}.service") for name in ("rootweb1", "rootweb2")]
    uids = {process_uid(sandbox, state["MainPID"]) for state in states}
    # One user namespace for both, whose root is the first id of the holder's block.
    assert len(uids) == 1 and min(uids) >= 1 << 30, uids
    ranges = json.loads(IDRANGES.read_text())
    assert ranges["root-pod"] == ranges["rootweb1"] == ranges["rootweb2"], ranges
    for port in ports:
        assert fetch(f"http://127.0.0.1:{port}/") == (EXAMPLES / "www/index.html").read_text()

    # A new port replaces the holder, which keeps its range: the next `up` changes nothing.
    extra = free_port()
    second, both = (
        f'"127.0.0.1:{ports[1]}:81"',
        f'"127.0.0.1:{ports[1]}:81", "127.0.0.1:{extra}:81"',
    )
    toml.write_text(toml.read_text().replace(second, both))
    edited = as_root(sandbox, "sdpod", "up", str(toml))
    assert edited.returncode == 0 and "root-pod: replaced" in edited.stdout, edited.stdout
    again = as_root(sandbox, "sdpod", "up", str(toml))
    assert again.returncode == 0 and "replaced" not in again.stdout, again.stdout
    assert json.loads(IDRANGES.read_text())["root-pod"] == ranges["root-pod"]

    down = as_root(sandbox, "sdpod", "down", str(toml))
    assert down.returncode == 0, down.stderr
    assert "root-pod: stopped and removed" in down.stdout, down.stdout
    assert not set(json.loads(IDRANGES.read_text())) & {"root-pod", "rootweb1", "rootweb2"}


def test_an_idmapped_volume_shows_the_host_ids_unchanged(
    sandbox: SandboxHost, user_dir: Path
) -> None:
    build_image(user_dir / "image", ())
    shared = user_dir / "shared"
    shared.mkdir()
    (shared / "owned").write_text("by 1234\n")
    os.chown(shared / "owned", 1234, 1234)
    toml = user_dir / "idmap.toml"
    toml.write_text(
        "[container]\n"
        'name = "rootidmap"\n'
        'image = "oci:image:latest"\n'
        'command = ["sleep", "3600"]\n'
        'volumes = ["./shared:/shared:idmap"]\n'
    )
    try:
        up = as_root(sandbox, "sdpod", "up", str(toml))
        assert up.returncode == 0, up.stderr

        listing = as_root(sandbox, "sdpod", "exec", "rootidmap", "ls", "-ln", "/shared/owned")
        assert listing.stdout.split()[2:4] == ["1234", "1234"], listing
        made = as_root(sandbox, "sdpod", "exec", "rootidmap", "sh", "-c", "echo > /shared/made")
        assert made.returncode == 0, made.stderr
        # Container root writes through the view as the host's root: ids are unchanged.
        assert ((shared / "made").stat().st_uid, (shared / "made").stat().st_gid) == (0, 0)
    finally:
        as_root(sandbox, "sdpod", "down", str(toml))
