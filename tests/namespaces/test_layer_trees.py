"""Layer trees seen through the kernel's overlay, as a container sees its image.

Each image is unpacked layer by layer through a user namespace (the store's own path),
and also whole, as `sdpod image unpack` writes it. Inside a user namespace of the same
mapping, the layer trees are mounted as the launcher mounts them (`_mount_layers`: a
bind mount per tree, overlayfs with `userxattr`, a container's own upper directory) and
compared with the whole tree, file for file, owners and hard links included. Then real
containers are started from multi-layer images by the launcher, rootless-style and as
root through idmapped trees. Root writes the id maps, as the other namespace tests do.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.mkimage import (
    Dir,
    Entry,
    File,
    Hardlink,
    Opaque,
    Symlink,
    Whiteout,
    build_layout,
    busybox_entries,
)
from support.overlayview import materialize
from support.trees import Node, tree
from unit.test_images_umoci import LAYER_2, LAYER_3, inode_groups
from unit.test_images_unpack import LOWER

from namespaces.common import MAPPING, MARKS, launch_by_hand
from sdpod.config.model import Container, LayoutImage, Network, NetworkMode
from sdpod.images import removal
from sdpod.images.store import ImageStore, StoredImage
from sdpod.kernel import syscalls
from sdpod.kernel.overlay import MAX_LOWER_LAYERS
from sdpod.kernel.userns import IdMapping, IdRange, run_in_userns
from sdpod.runtime import bundle
from sdpod.runtime.container import _mount_layers
from sdpod.runtime.spec import (
    ANNOTATION_OVERLAY,
    BundleLayout,
    build_spec,
    overlay_annotation,
)

pytestmark = MARKS

IN_USERNS = functools.partial(run_in_userns, MAPPING)

# What the launcher's system tests check too: a file an upper layer deletes is gone, an
# opaque directory shows only the upper layer's files, a deleted directory comes back
# empty, hard links and symlinks of lower layers are written through.
UPPER: list[Entry] = [
    Whiteout("etc/gone"),
    Dir("srv"),
    Opaque("srv"),
    File("srv/new", b"new\n"),
    Whiteout("var/cache"),
    Dir("var/cache"),
    File("var/cache/fresh", b"fresh\n"),
    Hardlink("etc/keep-link", "etc/keep"),
    Dir("www", uid=33, gid=33),
    File("www/index.html", b"layered\n", uid=33, gid=33, mode=0o640),
]
TOP: list[Entry] = [
    Whiteout("srv/inner"),
    File("usr-lib/from-top", b"top\n"),
    Opaque("var"),
    Dir("var/cache"),
    File("var/cache/top", b"top\n"),
]
LINKED: list[Entry] = [Dir("usr"), Dir("usr/lib"), Symlink("usr-lib", "usr/lib")]

IMAGES: dict[str, list[list[Entry]]] = {
    "umoci-fixture": [busybox_entries(), LAYER_2, LAYER_3],
    "whiteouts-and-opaque": [busybox_entries(), LOWER, LINKED, UPPER, TOP],
    "opaque-root": [LOWER, [Opaque("."), Dir("etc"), File("etc/only", b"only\n")]],
}


def store_image(
    tmp_path: Path, layers: Sequence[Sequence[Entry]]
) -> tuple[ImageStore, StoredImage]:
    build_layout(tmp_path / "layout", "t", layers, {"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    store = ImageStore(tmp_path / "store")
    return store, store.import_layout(LayoutImage(tmp_path / "layout", "t"), IN_USERNS)


def overlay_and_whole(
    tmp_path: Path, store: ImageStore, image: StoredImage
) -> tuple[dict[str, Node], dict[str, Node], set[frozenset[str]], set[frozenset[str]]]:
    """Both trees, and their hard links, as a process in the image's user namespace sees
    them: the overlay mounted as the launcher mounts it, and the whole unpack."""
    (tmp_path / "whole").mkdir()
    store.unpack_into(image.id, tmp_path / "whole", IN_USERNS)
    layout = BundleLayout.under(tmp_path / "bundle", image.lowers, tmp_path / "volumes")
    for directory in (layout.rootfs, layout.upper, layout.work, layout.lower_mount):
        directory.mkdir(parents=True)
    for index in range(len(image.lowers)):
        layout.lower_attach(index).mkdir()
    report = tmp_path / "report.json"

    def look() -> None:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        _mount_layers(json.loads(overlay_annotation(layout, idmap=False)), str(layout.rootfs))
        rootfs, whole = layout.rootfs, tmp_path / "whole/rootfs"
        found = [tree(rootfs, owners=True), tree(whole, owners=True)]
        groups = [sorted(sorted(g) for g in inode_groups(p)) for p in (rootfs, whole)]
        report.write_text(json.dumps([found, groups]))

    IN_USERNS(look)
    (ours, whole), (our_groups, whole_groups) = json.loads(report.read_text())
    return (
        {k: tuple(v) for k, v in ours.items()},
        {k: tuple(v) for k, v in whole.items()},
        {frozenset(g) for g in our_groups},
        {frozenset(g) for g in whole_groups},
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # The trees belong to subordinate ids: only the namespace may delete them.
    IN_USERNS(lambda: shutil.rmtree(tmp_path, ignore_errors=True))


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_overlay_of_the_layer_trees_is_the_whole_unpack(scratch: Path, name: str) -> None:
    store, image = store_image(scratch, IMAGES[name])

    ours, whole, our_links, whole_links = overlay_and_whole(scratch, store, image)

    assert ours == whole
    assert our_links == whole_links
    assert len(ours) >= 2  # the comparison above did compare something
    # The tests' own model of overlayfs, which the unit tests use, agrees with the kernel.
    assert tree(materialize(image.lowers, scratch / "model")).keys() == ours.keys()


def test_the_whiteouts_and_opaque_fixture_shows_what_its_layers_say(scratch: Path) -> None:
    store, image = store_image(scratch, IMAGES["whiteouts-and-opaque"])

    ours, *_ = overlay_and_whole(scratch, store, image)

    assert "/etc/gone" not in ours and "/etc/keep" in ours
    assert sorted(p for p in ours if p.startswith("/srv/")) == ["/srv/new"]
    assert sorted(p for p in ours if p.startswith("/var/")) == ["/var/cache", "/var/cache/top"]
    assert ours["/usr/lib/from-top"][0] == "file"
    assert ours["/usr-lib"] == ("symlink", "usr/lib", 0, 0)
    assert ours["/www/index.html"][1] == "0o640" and ours["/www/index.html"][-2:] == (33, 33)


def test_two_images_share_their_base_layer_on_disk(scratch: Path) -> None:
    base = [*busybox_entries(), *LOWER]
    build_layout(scratch / "one", "t", [base, UPPER], {"Cmd": ["sh"]})
    build_layout(scratch / "two", "t", [base, TOP], {"Cmd": ["sh"]})
    store = ImageStore(scratch / "store")

    one = store.import_layout(LayoutImage(scratch / "one", "t"), IN_USERNS)
    two = store.import_layout(LayoutImage(scratch / "two", "t"), IN_USERNS)

    assert one.layers[0] == two.layers[0]
    busybox = one.layers[0] / "bin/busybox"
    assert busybox.stat().st_nlink == 1  # one copy, named once, for both images
    assert len(os.listdir(store.root / "layers")) == 3

    removal.remove(store, one.id, None, IN_USERNS)

    assert busybox.is_file()
    assert store.get(two.id) == two
    assert not one.layers[1].exists()


# What a container of the "whiteouts-and-opaque" image reports from inside.
PROBE = (
    "echo etc=$(ls /etc | tr '\\n' ' '); echo srv=$(ls /srv | tr '\\n' ' '); "
    "echo cache=$(ls /var/cache | tr '\\n' ' '); cat /usr/lib/from-top; "
    "echo www=$(ls -ln /www | tail -1 | tr -s ' ' | cut -d' ' -f1,3,4)"
)


def launch(
    tmp_path: Path,
    image: StoredImage,
    command: Sequence[str],
    mapping: IdMapping,
    idmap: bool,
    legacy: Path | None = None,
) -> str:
    """Start a container of `image` with the launcher, as its unit would; its output.
    With `legacy`, its bundle stacks that one whole tree, as an sdpod before shared layers
    wrote bundles."""
    container = Container(
        name="layers",
        image=LayoutImage(tmp_path / "layout", "t"),
        command=tuple(command),
        network=Network(NetworkMode.NONE),
    )
    layout = BundleLayout.under(tmp_path / "bundle", image.lowers, tmp_path / "volumes")
    init = Path(shutil.which("tini-static") or "")
    spec = build_spec(container, image.config, layout, mapping, init, idmap_lower=idmap)
    etc = {"hosts": "127.0.0.1 localhost\n", "hostname": "layers\n", "resolv.conf": ""}
    if legacy is not None:
        overlay = {"lower": str(legacy), "upper": str(layout.upper), "work": str(layout.work)}
        spec["annotations"][ANNOTATION_OVERLAY] = json.dumps({**overlay, "idmap_lower": ""})
    bundle.prepare(layout, spec, etc, root_owner=(mapping.host_root))
    result = launch_by_hand(layout.bundle, tmp_path / "run")
    assert result.returncode == 0, result.stderr
    return result.stdout


EXPECTED = [
    "etc=group hostname hosts keep keep-link passwd resolv.conf",
    "srv=new",
    "cache=top",
    "top",
    "www=-rw-r----- 33 33",
]


def test_a_container_sees_its_layers_merged(scratch: Path) -> None:
    _, image = store_image(scratch, IMAGES["whiteouts-and-opaque"])

    seen = launch(scratch, image, ["sh", "-c", PROBE], MAPPING, idmap=False)

    assert seen.splitlines() == EXPECTED


def test_a_bundle_made_before_shared_layers_still_starts(scratch: Path) -> None:
    store, image = store_image(scratch, IMAGES["whiteouts-and-opaque"])
    (scratch / "whole").mkdir()
    store.unpack_into(image.id, scratch / "whole", IN_USERNS)

    seen = launch(scratch, image, ["sh", "-c", PROBE], MAPPING, False, scratch / "whole/rootfs")

    assert seen.splitlines() == EXPECTED


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every id may pass through, as /var/lib/sdpod is: a container's range
    as root maps none of the ids that own pytest's own directories."""
    path = Path(tempfile.mkdtemp(prefix="sdpod-layer-trees-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_as_root_each_layer_tree_is_seen_through_an_idmapped_mount(public_dir: Path) -> None:
    # As root the store keeps the image's own ids; the container's range is elsewhere.
    build_layout(public_dir / "layout", "t", IMAGES["whiteouts-and-opaque"], {"Cmd": ["sh"]})
    store = ImageStore(public_dir / "store")
    image = store.import_layout(LayoutImage(public_dir / "layout", "t"))
    block = IdMapping(uids=(IdRange(0, 700000, 65536),), gids=(IdRange(0, 700000, 65536),))

    seen = launch(public_dir, image, ["sh", "-c", PROBE], block, idmap=True)

    assert seen.splitlines() == EXPECTED
    assert (image.layers[3] / "www").stat().st_uid == 33  # never shifted on disk


@pytest.mark.parametrize("count", [MAX_LOWER_LAYERS, MAX_LOWER_LAYERS + 1])
def test_an_image_of_many_layers_runs(scratch: Path, count: int) -> None:
    layers: list[list[Entry]] = [busybox_entries()]
    layers += [[File(f"n/{i:03}", b"")] for i in range(1, count)]
    build_layout(scratch / "layout", "t", layers, {"Cmd": ["sh"]}, compress=False)
    store = ImageStore(scratch / "store")
    image = store.import_layout(LayoutImage(scratch / "layout", "t"), IN_USERNS)

    seen = launch(scratch, image, ["sh", "-c", "ls /n | wc -l"], MAPPING, idmap=False)

    assert seen.strip() == str(count - 1)
    # Up to overlayfs's limit every layer is a tree of its own; past it, one whole tree.
    assert len(image.layers) == (count if count <= MAX_LOWER_LAYERS else 1)
