"""An image's layers unpacked again for a keep-id mapping: inside, every owner is the
tarball's.

The store's layer trees are written through the default mapping; a keep-id container
would see their owners shifted. These unpack a busybox image whose second layer holds
files of several owners for a keep-id mapping in real user namespaces, and look at the
result from inside one. Root writes the id maps here, as the namespace tests do without
/etc/subuid.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from pathlib import Path

import pytest
from support.mkimage import Dir, Entry, File, build_layout, busybox_entries

from namespaces.common import MAPPING
from sdpod.config.model import LayoutImage
from sdpod.errors import ImageError
from sdpod.images import removal
from sdpod.images.store import ImageStore, StoredImage
from sdpod.images.usage import ANNOTATION_IMAGE_ID, ANNOTATION_OVERLAY
from sdpod.kernel.userns import Grants, IdMapping, IdRange, keep_id_mapping, run_in_userns

pytestmark = [
    pytest.mark.namespaces,
    pytest.mark.skipif(os.geteuid() != 0, reason="writes id maps, which needs root"),
]

# keep-id for a user 1000 whose subordinate ids start at 400000, apart from MAPPING's.
# The store belongs to root here, not to that user: the namespace reaches it as a real
# keep-id namespace reaches the user's store, through its owner's id, mapped as 70000.
_KEEP = keep_id_mapping(Grants("keeper", 1000, 1000, ((400000, 65536),), ((400000, 65536),)))
_STORE_OWNER = (IdRange(70000, 0, 1),)
KEEP = IdMapping(_KEEP.uids + _STORE_OWNER, _KEEP.gids + _STORE_OWNER)

# (path, uid, gid, mode) as the tarball has them: root, a service user below the
# user's id, the user's own id, the id just above it, and set-id bits.
OWNED = (
    ("srv", 0, 0, 0o755),
    ("srv/setuid", 0, 0, 0o4755),
    ("srv/www", 33, 33, 0o644),
    ("srv/mine", 1000, 1000, 0o600),
    ("srv/next", 1001, 1001, 0o640),
    ("srv/service", 999, 999, 0o2750),
)


def build_image(tmp_path: Path) -> LayoutImage:
    owned: list[Entry] = []
    for path, uid, gid, mode in OWNED:
        if path in ("srv", "srv/service"):
            owned.append(Dir(path, mode=mode, uid=uid, gid=gid))
        else:
            owned.append(File(path, path.encode(), mode=mode, uid=uid, gid=gid))
    build_layout(tmp_path / "layout", "test", [busybox_entries(), owned], {"Cmd": ["sh"]})
    return LayoutImage(tmp_path / "layout", "test")


def seen_inside(mapping: IdMapping, rootfs: Path) -> dict[str, tuple[int, int, int]]:
    """Owner and mode of each OWNED path, as a process in a namespace of `mapping` sees."""
    read_end, write_end = os.pipe()

    def look() -> None:
        found = {}
        for path, *_ in OWNED:
            st = os.lstat(rootfs / path)
            found[path] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
        os.write(write_end, json.dumps(found).encode())

    try:
        run_in_userns(mapping, look)
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as report:
        return {path: tuple(values) for path, values in json.load(report).items()}


def tarball() -> dict[str, tuple[int, int, int]]:
    return {path: (uid, gid, mode) for path, uid, gid, mode in OWNED}


def import_both(tmp_path: Path) -> tuple[ImageStore, StoredImage, StoredImage]:
    store = ImageStore(tmp_path / "store")
    image = store.import_layout(
        build_image(tmp_path), unpack=functools.partial(run_in_userns, MAPPING)
    )
    copy = store.mapped(image, KEEP.fingerprint, functools.partial(run_in_userns, KEEP))
    return store, image, copy


def test_keep_id_trees_show_the_tarballs_owners_inside(tmp_path: Path) -> None:
    _, image, copy = import_both(tmp_path)

    key = KEEP.fingerprint
    assert copy.layers == tuple(
        layer.parent.with_name(f"{layer.parent.name}-{key}") / "tree" for layer in image.layers
    )
    assert copy.config == image.config
    assert seen_inside(KEEP, copy.layers[1]) == tarball()
    # The store's own trees are right for its own mapping, and wrong for keep-id: the
    # user's id (container root there) would show as 1000, and 1000 as another id.
    assert seen_inside(MAPPING, image.layers[1]) == tarball()
    assert seen_inside(KEEP, image.layers[1])["srv"][0] != 0


def test_keep_id_owners_on_disk_are_the_mapped_host_ids(tmp_path: Path) -> None:
    _, _, copy = import_both(tmp_path)

    def owner(path: str) -> tuple[int, int]:
        st = os.lstat(copy.layers[1] / path)
        return st.st_uid, st.st_gid

    assert owner("srv") == (400000, 400000)
    assert owner("srv/www") == (400033, 400033)
    assert owner("srv/mine") == (1000, 1000)
    assert owner("srv/next") == (401000, 401000)


def test_the_trees_are_made_once(tmp_path: Path) -> None:
    store, image, copy = import_both(tmp_path)
    before = [os.lstat(layer).st_ino for layer in copy.layers]

    again = store.mapped(image, KEEP.fingerprint, lambda work: pytest.fail("unpacked again"))

    assert again.layers == copy.layers
    assert [os.lstat(layer).st_ino for layer in again.layers] == before


def use(store: ImageStore, name: str, image: StoredImage) -> Path:
    """A container bundle whose overlay stacks `image`'s trees, as `sdpod up` writes it."""
    bundle = store.root / "containers" / name
    bundle.mkdir(parents=True)
    overlay = json.dumps({"lowers": [str(lower) for lower in image.lowers]})
    annotations = {ANNOTATION_OVERLAY: overlay, ANNOTATION_IMAGE_ID: image.id}
    (bundle / "config.json").write_text(json.dumps({"annotations": annotations}))
    return bundle


def test_trees_in_use_stay_and_go_with_their_last_user(tmp_path: Path) -> None:
    store, image, copy = import_both(tmp_path)
    user = use(store, "keeper", copy)

    with pytest.raises(ImageError, match="container\\(s\\) keeper use it"):
        removal.remove(store, image.id, None, None)
    assert removal.prune(store, None).images == ()
    removal.drop_mapped_copies(store, copy.layers, None)
    assert all(layer.is_dir() for layer in copy.layers)

    # Its last user gone, `sdpod rm` drops the trees of its mapping; the image stays.
    (user / "config.json").unlink()
    user.rmdir()
    removal.drop_mapped_copies(store, copy.layers, None)
    assert not any(layer.parent.exists() for layer in copy.layers)
    assert store.get(image.id) == image


def test_prune_drops_unused_trees_of_used_images_and_image_rm_takes_all(tmp_path: Path) -> None:
    store, image, copy = import_both(tmp_path)
    default_user = use(store, "plain", image)

    assert removal.prune(store, None).images == ()
    assert not any(layer.exists() for layer in copy.layers)
    assert all(layer.is_dir() for layer in image.layers)

    again = store.mapped(image, KEEP.fingerprint, functools.partial(run_in_userns, KEEP))
    (default_user / "config.json").unlink()
    assert removal.remove(store, image.id, None, None).images == (image.id,)
    assert not any(layer.exists() for layer in again.layers + image.layers)
    assert not (store.images / image.id.removeprefix("sha256:")).exists()
    assert os.listdir(store.root / "layers") == []
