"""Real third-party OCI layouts (see ../shared/fixtures/images/SOURCES.md).

They are read in place, never copied into the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.imagetest import FIXTURES, view
from support.trees import tree

from sdpod.config.model import LayoutImage
from sdpod.errors import ImageError
from sdpod.images.layout import ImageLayout
from sdpod.images.platforms import host_platform
from sdpod.images.store import ImageStore

pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"the shared image fixtures are not at {FIXTURES}"
)

MIXED = FIXTURES / "oci-layout-mixed-index"
BUILDKIT = FIXTURES / "oci-layout-buildkit-multiarch"

# From SOURCES.md: the manifest each multi-platform tag must resolve to, per architecture.
PICKS = {
    "v1": {"amd64": ("1effc9d4", "f668"), "arm64": ("7e87ffc9", "63ba")},
    "v2": {"amd64": ("ee378b79", "2358"), "arm64": ("6bed79d0", "2467")},
    "v3": {"amd64": ("f8c9d547", "2a44"), "arm64": ("e2a061de", "87ab")},
}

# What `docker buildx` put in each image: the v3 tree is SOURCES.md's, v1 and v2 have
# the first two and three of its layers.
V3_TREE = {
    "/base.txt": ("file", "0o644", 2),
    "/layer1": ("file", "0o644", 2),
    "/layer2": ("file", "0o644", 2),
    "/layer3": ("file", "0o644", 2),
    "/dir": ("dir", "0o755"),
    "/dir/layer.tar": ("file", "0o644", 10240),
}
EXPECTED_NAMES = {
    "v1": {"/base.txt", "/layer1"},
    "v2": {"/base.txt", "/layer1", "/layer2"},
    "v3": set(V3_TREE),
}

NOT_IMAGES = ["a1", "a2", "a3", "ai", "child", "loop", "mirror", "a-docker", "a-example"]


def shape(found: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    """Type, mode and size of each path; the content hash is left out."""
    return {path: node[:3] if node[0] == "file" else node for path, node in found.items()}


def import_fixture(tmp_path: Path, layout: Path, tag: str) -> Path:
    return view(ImageStore(tmp_path / "store").import_layout(LayoutImage(layout, tag)), tmp_path)


@pytest.mark.parametrize("tag", ["1", "3", "4"])
def test_mixed_index_resolves_docker_manifests_through_any_index(tmp_path: Path, tag: str) -> None:
    # Tag 1 is an OCI-typed descriptor of a Docker schema 2 manifest, 3 a nested OCI
    # index without platforms, 4 a Docker manifest list: all lead to the same image.
    rootfs = import_fixture(tmp_path, MIXED, tag)

    assert shape(tree(rootfs)) == {
        "/bar": ("file", "0o555", 4),
        "/foo": ("file", "0o555", 4),
    }


def test_mixed_index_refuses_a_descriptor_that_is_no_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"application/vnd\.oci\.descriptor\.v1"):
        import_fixture(tmp_path, MIXED, "2")


@pytest.mark.parametrize("tag", sorted(PICKS))
def test_buildkit_index_picks_this_machines_manifest(tmp_path: Path, tag: str) -> None:
    arch = host_platform().architecture
    if arch not in PICKS[tag]:
        pytest.skip(f"SOURCES.md lists no expected manifest for {arch}")
    start, end = PICKS[tag][arch]

    digest = ImageLayout(BUILDKIT).resolve(tag).manifest.digest.hex

    assert digest.startswith(start) and digest.endswith(end)


@pytest.mark.parametrize("tag", sorted(EXPECTED_NAMES))
def test_buildkit_images_unpack_to_the_expected_tree(tmp_path: Path, tag: str) -> None:
    rootfs = import_fixture(tmp_path, BUILDKIT, tag)

    found = shape(tree(rootfs))
    assert set(found) == EXPECTED_NAMES[tag]
    assert found == {path: V3_TREE[path] for path in found}
    assert (rootfs / "base.txt").read_text() == "A\n"


@pytest.mark.parametrize("tag", NOT_IMAGES)
def test_buildkit_artifacts_are_refused_clearly(tmp_path: Path, tag: str) -> None:
    with pytest.raises(ImageError) as caught:
        import_fixture(tmp_path, BUILDKIT, tag)

    message = str(caught.value)
    assert message.startswith(f"failed to resolve image oci:{BUILDKIT}:{tag}: ")
    assert "not a container image" in message
    assert not (tmp_path / "store/images").exists() or not any(
        (tmp_path / "store/images").iterdir()
    )
