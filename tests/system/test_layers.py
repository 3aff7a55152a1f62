"""Images of several layers through the real CLI, as the sandbox's test user: each layer
unpacked once into the user's store, and a container seeing them merged.

The image's top layer deletes a file of the layer below and makes a directory opaque;
the container reports what it sees into a bind volume. A second image has the same
base, which the store keeps once, and keeps while either image needs it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sandbox import SandboxHost
from support.mkimage import (
    BUSYBOX_CONFIG,
    Dir,
    Entry,
    File,
    Opaque,
    Whiteout,
    build_layout,
    busybox_entries,
)

from system.helpers import Project, chown_tree, report

pytestmark = pytest.mark.system

MIDDLE: list[Entry] = [
    File("etc/motd", b"from the middle layer\n"),
    File("etc/keep", b"kept\n"),
    Dir("srv"),
    File("srv/old", b"old\n"),
    Dir("srv/sub"),
    File("srv/sub/deep", b"deep\n"),
]
TOP: list[Entry] = [Whiteout("etc/motd"), Dir("srv"), Opaque("srv"), File("srv/new", b"new\n")]
OTHER: list[Entry] = [File("etc/other", b"other\n")]
REPORT = (
    "(test -e /etc/motd && echo present || echo absent) > /data/motd; "
    "cat /etc/keep > /data/keep; ls -A /srv > /data/srv; ls /etc > /data/etc; "
    "echo done > /data/done; "
    "exec sleep 600"
)


def write_project(directory: Path, name: str, layers: Sequence[Sequence[Entry]]) -> Path:
    """An OCI layout of `layers` and a TOML file running REPORT, in `directory`."""
    (directory / "data").mkdir(parents=True)
    build_layout(directory / "image", "latest", layers, dict(BUSYBOX_CONFIG))
    toml = directory / "layers.toml"
    toml.write_text(
        "[container]\n"
        f"name = {json.dumps(name)}\n"
        'image = "oci:image:latest"\n'
        f"command = {json.dumps(['sh', '-c', REPORT])}\n"
        'volumes = ["./data:/data"]\n'
        'network = "none"\n'
    )
    return toml


@pytest.fixture
def projects(sandbox: SandboxHost, user_dir: Path) -> Iterator[list[Project]]:
    """Two containers of the test user: one of three layers, one sharing its base."""
    made = []
    for name, layers in (("three", [busybox_entries(), MIDDLE, TOP]), ("other", [OTHER])):
        full = f"layers-{name}-{secrets.token_hex(3)}"
        base = [busybox_entries()] if name == "other" else []
        toml = write_project(user_dir / full, full, [*base, *layers])
        chown_tree(user_dir / full, sandbox.user)
        made.append(
            Project(sandbox, sandbox.user, str(user_dir / full), str(toml), Path(), full, 0)
        )
    yield made
    for project in made:
        project.down()
        project.sdpod("rm", "--force", project.name)


def annotations_of(project: Project) -> dict[str, str]:
    config = json.loads((project.container_dir / "config.json").read_text())
    found: dict[str, str] = config["annotations"]
    return found


def lowers_of(project: Project) -> list[Path]:
    overlay = json.loads(annotations_of(project)["io.sdpod.rootfs.overlay"])
    return [Path(lower) for lower in overlay["lowers"]]


def test_a_container_sees_its_layers_merged(projects: list[Project]) -> None:
    three = projects[0]

    up = three.up()
    assert up.returncode == 0, up.stderr
    seen = report(three)

    assert seen["motd"] == "absent\n"  # the top layer deleted it
    assert seen["keep"] == "kept\n"
    assert seen["srv"] == "new\n"  # opaque: the middle layer's old and sub are hidden
    store = three.sandbox.home(three.user) / ".local/share/sdpod/layers"
    lowers = lowers_of(three)
    assert len(lowers) == 3
    assert all(lower.parent.parent == store for lower in lowers)


def test_two_images_share_their_base_and_keep_it_for_each_other(projects: list[Project]) -> None:
    three, other = projects
    for project in projects:
        up = project.up()
        assert up.returncode == 0, up.stderr
        report(project)
    top, *_, base = lowers_of(three)
    assert lowers_of(other)[-1] == base
    image = annotations_of(three)["io.sdpod.image.id"]
    kept = annotations_of(other)["io.sdpod.image.id"]
    for project in projects:
        assert project.down().returncode == 0

    removed = three.sdpod("image", "rm", image)

    assert removed.returncode == 0, removed.stderr
    assert three.sdpod("image", "inspect", image).returncode != 0
    assert not top.exists()
    assert (base / "bin/busybox").is_file()
    (Path(other.directory) / "data/done").unlink()
    up = other.up()
    assert up.returncode == 0, up.stderr
    assert "other" in report(other)["etc"].split()  # its own layer, over the shared base
    assert other.down().returncode == 0
    removed = other.sdpod("image", "rm", kept)
    assert removed.returncode == 0, removed.stderr
