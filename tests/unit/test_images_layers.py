"""Layer trees: each layer unpacked once, shared by the images that have it, its
deletions recorded as overlayfs reads them, and collected once nothing needs it."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from support.imagetest import make_image, view
from support.mkimage import Dir, Entry, File, Opaque, Symlink, Whiteout, build_layout
from support.overlayview import is_opaque, is_whiteout

from sdpod.config.model import LayoutImage, PullPolicy
from sdpod.images import names, removal
from sdpod.images.digest import Digest
from sdpod.images.layered import read_file
from sdpod.images.layout import ImageLayout
from sdpod.images.pull import PullOptions
from sdpod.images.store import ImageStore, StoredImage
from sdpod.images.trees import chain_ids, parse_tree_name, tree_name
from sdpod.images.unpack import LayerFile
from sdpod.images.usage import ANNOTATION_IMAGE_ID, ANNOTATION_OVERLAY
from sdpod.kernel.overlay import MAX_LOWER_LAYERS

BASE: list[Entry] = [
    Dir("etc"),
    File("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    File("etc/gone", b"gone"),
    Dir("srv"),
    File("srv/old", b"old"),
    Dir("var"),
    Dir("var/cache"),
    File("var/cache/a", b"a"),
]
APP: list[Entry] = [Whiteout("etc/gone"), Opaque("srv"), File("srv/new", b"new")]
OTHER: list[Entry] = [File("other", b"other")]


def image_of(tmp_path: Path, name: str, layers: list[list[Entry]]) -> LayoutImage:
    build_layout(tmp_path / name, "t", layers, {"Cmd": ["true"]})
    return LayoutImage(tmp_path / name, "t")


def use(store: ImageStore, name: str, image: StoredImage) -> Path:
    """A container bundle made from `image`, as `sdpod up` writes it."""
    bundle = store.root / "containers" / name
    bundle.mkdir(parents=True)
    overlay = json.dumps({"lowers": [str(lower) for lower in image.lowers]})
    annotations = {ANNOTATION_OVERLAY: overlay, ANNOTATION_IMAGE_ID: image.id}
    (bundle / "config.json").write_text(json.dumps({"annotations": annotations}))
    return bundle


def layer_dirs(store: ImageStore) -> list[str]:
    return sorted(os.listdir(store.root / "layers"))


def test_chain_ids_follow_the_image_spec() -> None:
    a, b = (f"sha256:{c * 64}" for c in "ab")
    layers = [LayerFile(Path(n), "", Digest.parse(d)) for n, d in (("1", a), ("2", b))]

    chains = chain_ids(layers)

    assert chains[0] == a
    assert chains[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert parse_tree_name(tree_name(chains[1], None)) == (chains[1], None)
    assert parse_tree_name(tree_name(a, "0123456789abcdef")) == (a, "0123456789abcdef")
    assert parse_tree_name("not-a-tree") is None


def test_a_layer_without_a_diff_id_is_named_by_its_blob() -> None:
    blob = "sha256:" + "c" * 64
    assert chain_ids([LayerFile(Path("x"), blob, None)]) == [blob]


def test_two_images_share_the_tree_of_their_common_base(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")

    one = store.import_layout(image_of(tmp_path, "one", [BASE, APP]))
    two = store.import_layout(image_of(tmp_path, "two", [BASE, OTHER]))

    assert one.layers[0] == two.layers[0]
    assert one.layers[1] != two.layers[1]
    assert len(layer_dirs(store)) == 3
    assert (one.layers[0] / "etc/passwd").stat().st_ino == (
        two.layers[0] / "etc/passwd"
    ).stat().st_ino


def test_the_same_layer_over_other_layers_gets_a_tree_of_its_own(tmp_path: Path) -> None:
    # What a layer's tree holds depends on what is below it: here `lib` is a symlink in
    # one image and a directory in the other, and the same layer writes through it.
    through: list[Entry] = [File("lib/x.so", b"x")]
    store = ImageStore(tmp_path / "store")
    linked: list[Entry] = [Dir("usr"), Dir("usr/lib"), Symlink("lib", "usr/lib")]

    one = store.import_layout(image_of(tmp_path, "one", [linked, through]))
    two = store.import_layout(image_of(tmp_path, "two", [[Dir("lib")], through]))

    assert one.layers[1] != two.layers[1]
    assert (view(one, tmp_path) / "usr/lib/x.so").read_bytes() == b"x"
    assert (view(two, tmp_path) / "lib/x.so").read_bytes() == b"x"


def test_deletions_are_recorded_as_overlayfs_reads_them(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    app = [*APP, Whiteout("var/cache")]

    stored = store.import_layout(image_of(tmp_path, "one", [BASE, app]))

    top = stored.layers[1]
    assert is_whiteout((top / "etc/gone").lstat())
    assert is_whiteout((top / "var/cache").lstat())
    assert is_opaque(top / "srv")
    assert not is_opaque(top / "etc")
    assert sorted(os.listdir(top / "srv")) == ["new"]
    assert (stored.layers[0] / "etc/gone").read_bytes() == b"gone"  # the base is untouched


def test_a_directory_made_over_a_deleted_one_is_opaque(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    app: list[Entry] = [Whiteout("var/cache"), Dir("var/cache"), File("var/cache/b", b"b")]

    stored = store.import_layout(image_of(tmp_path, "one", [BASE, app]))

    assert is_opaque(stored.layers[1] / "var/cache")
    assert sorted(os.listdir(view(stored, tmp_path) / "var/cache")) == ["b"]


def test_an_opaque_root_hides_every_lower_name(tmp_path: Path) -> None:
    # overlayfs never reads the opaque xattr of a layer's root: names are hidden one by one.
    store = ImageStore(tmp_path / "store")
    app: list[Entry] = [Opaque("."), Dir("etc"), File("etc/hostname", b"h")]

    stored = store.import_layout(image_of(tmp_path, "one", [BASE, app]))

    top = stored.layers[1]
    assert is_whiteout((top / "srv").lstat()) and is_whiteout((top / "var").lstat())
    assert is_opaque(top / "etc")
    merged = view(stored, tmp_path)
    assert sorted(os.listdir(merged)) == ["etc"]
    assert sorted(os.listdir(merged / "etc")) == ["hostname"]


def test_copied_up_directories_keep_the_lower_ones_attributes(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    base: list[Entry] = [Dir("d", mode=0o751, mtime=1_000_000), File("d/a", b"a")]

    stored = store.import_layout(image_of(tmp_path, "one", [base, [File("d/b", b"b")]]))

    copied = (stored.layers[1] / "d").stat()
    assert stat.S_IMODE(copied.st_mode) == 0o751
    assert copied.st_mtime == 1_000_000
    assert sorted(os.listdir(stored.layers[1] / "d")) == ["b"]


def test_removing_one_image_keeps_the_base_the_other_needs(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    one = store.import_layout(image_of(tmp_path, "one", [BASE, APP]))
    two = store.import_layout(image_of(tmp_path, "two", [BASE, OTHER]))

    removed = removal.remove(store, one.id, None, None)

    assert removed.trees == 1
    assert not one.layers[1].exists()
    assert store.get(two.id) == two
    assert layer_dirs(store) == sorted(p.parent.name for p in two.layers)

    removal.remove(store, two.id, None, None)
    assert layer_dirs(store) == []


def test_trees_a_container_stacks_stay_until_it_is_gone(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    one = store.import_layout(image_of(tmp_path, "one", [BASE, APP]))
    two = store.import_layout(image_of(tmp_path, "two", [BASE, OTHER]))
    bundle = use(store, "web", one)

    with pytest.raises(Exception, match=r"container\(s\) web use it"):
        removal.remove(store, one.id, None, None)
    # Same layers below, another image: a container of `one` does not hold `two`.
    assert removal.remove(store, two.id, None, None).images == (two.id,)
    assert removal.prune(store, None).images == ()
    assert all(tree.is_dir() for tree in one.layers)

    (bundle / "config.json").unlink()
    pruned = removal.prune(store, None)
    assert pruned.images == (one.id,) and pruned.trees == 2
    assert layer_dirs(store) == []


def test_an_image_of_more_layers_than_overlayfs_stacks_is_unpacked_whole(
    tmp_path: Path,
) -> None:
    layers: list[list[Entry]] = [[File(f"f{i}", b"x")] for i in range(MAX_LOWER_LAYERS + 1)]
    store = ImageStore(tmp_path / "store")

    stored = store.import_layout(make_image(tmp_path, layers, compress=False))

    assert stored.layers == (store.images / stored.id.removeprefix("sha256:") / "rootfs",)
    assert len(os.listdir(stored.layers[0])) == MAX_LOWER_LAYERS + 1
    assert store.metadata(stored.id)["flattened"] is True
    assert not (store.root / "layers").exists()


def test_an_image_of_as_many_layers_as_overlayfs_stacks_is_layered(tmp_path: Path) -> None:
    layers: list[list[Entry]] = [[File(f"f{i}", b"x")] for i in range(MAX_LOWER_LAYERS)]
    store = ImageStore(tmp_path / "store")

    # Under the file limit a user's service starts with, 1024.
    stored = store.import_layout(make_image(tmp_path, layers, compress=False), forked_at(1024))

    assert len(stored.layers) == MAX_LOWER_LAYERS
    assert len(layer_dirs(store)) == MAX_LOWER_LAYERS


def forked_at(files: int) -> Callable[[Callable[[], None]], None]:
    """A runner that forks, as the user-namespace one does, with at most `files` open."""

    def run(work: Callable[[], None]) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
                work()
                code = 0
            finally:
                os._exit(code)
        os.waitpid(pid, 0)

    return run


def make_legacy(store: ImageStore, image: LayoutImage) -> StoredImage:
    """An image as an sdpod before shared layers stored it: one whole tree, image.json
    without chain ids, no layer trees."""
    stored = store.import_layout(image)
    directory = store.images / stored.id.removeprefix("sha256:")
    store.unpack_into(stored.id, directory)
    metadata = store.metadata(stored.id)
    for key in ("chain_ids", "flattened"):
        del metadata[key]
    (directory / "image.json").write_text(json.dumps(metadata))
    removal.collect_trees(store, [], None, keep_mapped=False)
    assert store.get(stored.id) is None
    return stored


def test_an_image_stored_whole_before_is_unpacked_again_layer_by_layer(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = image_of(tmp_path, "one", [BASE, APP])
    legacy = make_legacy(store, image)
    whole = store.images / legacy.id.removeprefix("sha256:") / "rootfs"
    # A container made before stacks the whole tree; its bundle names no image id.
    bundle = store.root / "containers/old"
    bundle.mkdir(parents=True)
    overlay = json.dumps({"lower": str(whole), "upper": "u", "work": "w", "idmap_lower": ""})
    (bundle / "config.json").write_text(json.dumps({"annotations": {ANNOTATION_OVERLAY: overlay}}))

    again = store.import_layout(image)

    assert again == legacy
    assert whole.is_dir()  # the old container still uses it
    with pytest.raises(Exception, match=r"container\(s\) old use it"):
        removal.remove(store, again.id, None, None)
    (bundle / "config.json").unlink()
    assert removal.prune(store, None).images == (again.id,)
    assert not whole.exists()


def test_a_whole_tree_nobody_uses_goes_when_its_image_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No registries.conf of the caller's may change the reference; nothing is fetched.
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    store = ImageStore(tmp_path / "store")
    legacy = make_legacy(store, image_of(tmp_path, "one", [BASE, APP]))
    reference = "registry.example/app:1"
    names.set_names(store.root, legacy.id, [reference])

    stored = store.ensure(reference, PullPolicy.NEVER, options=PullOptions())

    assert stored == legacy
    assert not (store.images / legacy.id.removeprefix("sha256:") / "rootfs").exists()
    assert (view(stored, tmp_path) / "srv/new").read_bytes() == b"new"


def test_image_files_are_read_through_the_layers(tmp_path: Path) -> None:
    app: list[Entry] = [
        File("etc/group", b"app:x:5:\n"),
        Symlink("etc/shadow", "../../../etc/shadow"),
        Symlink("etc/hosts", "/etc/passwd"),
    ]
    store = ImageStore(tmp_path / "store")
    stored = store.import_layout(image_of(tmp_path, "one", [BASE, APP, app]))

    assert read_file(stored.lowers, "etc/passwd") == b"root:x:0:0::/root:/bin/sh\n"
    assert read_file(stored.lowers, "/etc/group") == b"app:x:5:\n"
    assert read_file(stored.lowers, "etc/hosts") == b"root:x:0:0::/root:/bin/sh\n"
    assert read_file(stored.lowers, "etc/gone") is None
    assert read_file(stored.lowers, "srv/old") is None
    # A symlink climbing out stays inside, as the kernel resolves it in the container.
    assert read_file(stored.lowers, "etc/shadow") is None


def test_a_resolved_layout_names_the_same_trees(tmp_path: Path) -> None:
    image = image_of(tmp_path, "one", [BASE, APP])
    store = ImageStore(tmp_path / "store")
    stored = store.import_layout(image)
    resolved = ImageLayout(image.path).resolve(image.tag)

    diff_ids = [str(layer.diff_id) for layer in resolved.layers]

    assert store.metadata(stored.id)["chain_ids"][0] == diff_ids[0]
    assert stored.layers[0].parent.name == diff_ids[0].removeprefix("sha256:")
