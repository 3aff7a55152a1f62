"""Archives: docker-archive tars from real Docker versions, oci-archive, save, zstd layers.

The docker-archive fixtures are read in place (../shared/fixtures/images/SOURCES.md lists
the trees below); the rest is built here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard
from support.imagetest import FIXTURES, make_image, view
from support.mkimage import Dir, File, Layout, Symlink, layer_tar, machine_platform, sha256
from support.trees import tree

from sdpod.errors import ImageError
from sdpod.images import export, removal
from sdpod.images import mediatypes as mt
from sdpod.images.archive import ImportOptions, import_path, split_source
from sdpod.images.platforms import host_platform, parse_platform
from sdpod.images.store import ImageStore

needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"the shared image fixtures are not at {FIXTURES}"
)

# SOURCES.md: path -> (type, mode, size); symlinks as ("symlink", target).
DOCKER_TREES = {
    ("docker-save-1.13/almostempty.tar", None): {"/emptyfile": ("file", "0o664", 0)},
    ("docker-save-symlinked-layer/test_link.tar", "bazel/v1/tarball:test_image_1"): {
        "/bar": ("file", "0o555", 4),
        "/foo": ("file", "0o555", 4),
    },
    ("docker-save-symlinked-layer/test_link.tar", "bazel/v1/tarball:test_image_3"): {
        "/bar": ("file", "0o555", 4),
        "/foo": ("file", "0o555", 4),
        "/test": ("file", "0o640", 6),
    },
    ("docker-save-whiteouts/whiteout_image.tar", None): {"/bar.txt": ("file", "0o555", 4)},
    ("docker-save-whiteouts/overwritten_file.tar", None): {
        "/bar.txt": ("file", "0o555", 4),
        "/foo.txt": ("symlink", "bar.txt"),
    },
}


def shape(found: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    return {path: node[:3] if node[0] == "file" else node for path, node in found.items()}


@needs_fixtures
@pytest.mark.parametrize(("name", "tag"), sorted(DOCKER_TREES, key=str))
def test_docker_archives_unpack_to_the_listed_trees(
    tmp_path: Path, name: str, tag: str | None
) -> None:
    store = ImageStore(tmp_path / "store")

    stored = import_path(store, FIXTURES / name, ImportOptions(tag=tag))

    assert shape(tree(view(stored, tmp_path))) == DOCKER_TREES[(name, tag)]
    assert removal.verify(store, lambda line: None) == []


@needs_fixtures
def test_docker_archive_names_the_image_by_its_repo_tags(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")

    stored = import_path(store, FIXTURES / "docker-save-1.13/almostempty.tar", ImportOptions())

    assert store.names() == {"docker.io/library/emptyimage:latest": stored.id}


@needs_fixtures
def test_two_images_in_one_archive_need_a_tag(tmp_path: Path) -> None:
    path = FIXTURES / "docker-save-symlinked-layer/test_link.tar"

    with pytest.raises(ImageError) as caught:
        import_path(ImageStore(tmp_path / "store"), path, ImportOptions())

    assert str(caught.value) == (
        f"failed to import docker-archive {path}: it holds 2 images, name one as PATH:TAG; "
        "its tags: docker.io/bazel/v1/tarball:test_image_1, "
        "docker.io/bazel/v1/tarball:test_image_3"
    )


@needs_fixtures
def test_docker_25_archive_is_arm64_and_says_so(tmp_path: Path) -> None:
    path = FIXTURES / "docker-save-v25/hello-world-v25.tar"
    store = ImageStore(tmp_path / "store")
    if host_platform().architecture != "arm64":
        with pytest.raises(ImageError, match="built for linux/arm64"):
            import_path(store, path, ImportOptions())

    stored = import_path(store, path, ImportOptions(platform=parse_platform("linux/arm64")))

    assert stored.id.startswith("sha256:ee301c92")
    assert shape(tree(view(stored, tmp_path))) == {"/hello": ("file", "0o755", 9136)}


def test_path_and_tag_are_split_only_where_the_path_exists(tmp_path: Path) -> None:
    (tmp_path / "a:b").mkdir()
    assert split_source(str(tmp_path / "a:b")) == (tmp_path / "a:b", None)
    assert split_source(f"{tmp_path / 'a:b'}:v1") == (tmp_path / "a:b", "v1")
    with pytest.raises(ImageError, match="no such file"):
        split_source(str(tmp_path / "missing:tag"))


def test_save_then_import_an_oci_archive_gives_the_same_image(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[Dir("etc"), File("etc/motd", b"hi")]])
    store = ImageStore(tmp_path / "store")
    first = store.import_layout(image)
    archive = tmp_path / "image.tar"

    export.save_archive(store, first.id, archive, "v1")
    again = import_path(ImageStore(tmp_path / "other"), archive, ImportOptions(tag="v1"))

    assert again.id == first.id
    assert tree(view(again, tmp_path)) == tree(view(first, tmp_path))
    with tarfile.open(archive) as tar:
        assert {"oci-layout", "index.json"} <= set(tar.getnames())


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_a_saved_docker_image_as_oci(tmp_path: Path) -> None:
    if not FIXTURES.is_dir():
        pytest.skip(f"the shared image fixtures are not at {FIXTURES}")
    store = ImageStore(tmp_path / "store")
    mixed = FIXTURES / "oci-layout-mixed-index"  # tag 1: a Docker schema 2 manifest
    stored = import_path(store, mixed, ImportOptions(tag="1"))

    export.save_layout(store, stored.id, tmp_path / "out", "saved")
    found = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{tmp_path / 'out'}:saved"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["rootfs"]["type"] == "layers"
    index = json.loads((tmp_path / "out/index.json").read_text())
    manifest = tmp_path / "out/blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    assert json.loads(manifest.read_text())["config"]["digest"] == stored.id


def test_zstd_layers_unpack(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    tar = layer_tar([Dir("etc"), File("etc/motd", b"zstd"), Symlink("motd", "etc/motd")])
    layer = layout.add_blob(zstandard.ZstdCompressor().compress(tar), mt.OCI_LAYER_ZSTD)
    plat = machine_platform()
    config = {
        "architecture": plat["architecture"],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": layout.add_json(config, mt.OCI_CONFIG).to_json(),
        "layers": [layer.to_json()],
    }
    layout.tag(layout.add_json(manifest, mt.OCI_MANIFEST), "z")
    layout.save()

    stored = import_path(ImageStore(tmp_path / "store"), tmp_path / "layout", ImportOptions())

    assert (view(stored, tmp_path) / "etc/motd").read_bytes() == b"zstd"
    assert tree(view(stored, tmp_path))["/motd"] == ("symlink", "etc/motd")


def test_a_damaged_zstd_layer_is_refused(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    data = zstandard.ZstdCompressor().compress(layer_tar([File("a", b"x" * 4096)]))
    layer = layout.add_blob(data[:-8] + b"\0" * 8, mt.OCI_LAYER_ZSTD)
    config = {"architecture": machine_platform()["architecture"], "os": "linux"}
    manifest = {
        "schemaVersion": 2,
        "config": layout.add_json(config, mt.OCI_CONFIG).to_json(),
        "layers": [layer.to_json()],
    }
    layout.tag(layout.add_json(manifest, mt.OCI_MANIFEST), "z")
    layout.save()

    with pytest.raises(ImageError, match=f"failed to read layer {layer.digest}"):
        import_path(ImageStore(tmp_path / "store"), tmp_path / "layout", ImportOptions())
