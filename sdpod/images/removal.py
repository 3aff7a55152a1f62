"""Removing images, and the blobs no image needs any more; re-hashing the blobs that stay.

An image that a container's bundle uses is never removed (`sdpod.images.usage`), nor a
copy of it mapped for other ids that a container uses; copies nobody uses go with the
image, at a prune, or when `sdpod rm` removes their last container. A directory is first
renamed into the store's tmp/, so that it disappears at once, then deleted through the
store's unpack runner: rootless, its files belong to subordinate ids
that only a user namespace can delete. Blobs are collected while both store locks are
held, so no pull or import is between fetching a blob and naming it.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import ImageError
from sdpod.images import blobs, names
from sdpod.images.digest import Digest
from sdpod.images.store import MAPPED, ImageStore, Unpack
from sdpod.images.usage import users_of_rootfs


@dataclass(frozen=True)
class Removed:
    untagged: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    blobs: int = 0


def remove(store: ImageStore, image_id: str, name: str | None, unpack: Unpack | None) -> Removed:
    """Remove the name `name` of an image, and the image once no name is left; without
    `name` (the user gave the id) the image and every name of it go."""
    with store.collecting():
        current = names.names_of(store.names(), image_id)
        if name is not None and len(current) > 1:
            names.drop_name(store.root, name)
            return Removed(untagged=(name,))
        _refuse_in_use(store, image_id)
        names.drop_image(store.root, image_id)
        _delete(store, store.images / Digest.parse(image_id).hex, unpack)
        return Removed(tuple(current), (image_id,), collect_blobs(store))


def prune(store: ImageStore, unpack: Unpack | None) -> Removed:
    """Remove every image that no container uses, the mapped copies of images that no
    container uses, and the blobs only removed images needed."""
    with store.collecting():
        lowers = users_of_rootfs(store.root / "containers")
        used = {i for i in store.image_ids() if _users(store, i, lowers)}
        removed = [image_id for image_id in store.image_ids() if image_id not in used]
        untagged: list[str] = []
        for image_id in removed:
            untagged += names.drop_image(store.root, image_id)
            _delete(store, store.images / Digest.parse(image_id).hex, unpack)
        for image_id in used:
            for copy in _mapped_copies(store, image_id):
                if copy / "rootfs" not in lowers:
                    _delete(store, copy, unpack)
        return Removed(tuple(untagged), tuple(removed), collect_blobs(store))


def drop_mapped_copies(store: ImageStore, lowers: Iterable[Path], unpack: Unpack | None) -> None:
    """Delete those of `lowers` that are mapped copies no container uses any more: what
    `sdpod rm` calls with the lower directories of the containers it removed."""
    with store.locked():
        used = users_of_rootfs(store.root / "containers")
        for lower in lowers:
            copy = lower.parent
            is_copy = copy.parent.name == MAPPED and copy.parent.parent.parent == store.images
            if is_copy and lower not in used:
                _delete(store, copy, unpack)


def _mapped_copies(store: ImageStore, image_id: str) -> list[Path]:
    directory = store.images / Digest.parse(image_id).hex / MAPPED
    return sorted(directory.iterdir()) if directory.is_dir() else []


def _users(store: ImageStore, image_id: str, lowers: dict[Path, list[str]]) -> list[str]:
    """The containers whose lower directory is the image's rootfs or a mapped copy's."""
    directory = store.images / Digest.parse(image_id).hex
    return [
        name for lower, found in lowers.items() if lower.is_relative_to(directory) for name in found
    ]


def _refuse_in_use(store: ImageStore, image_id: str) -> None:
    users = _users(store, image_id, users_of_rootfs(store.root / "containers"))
    if users:
        raise ImageError(
            f"failed to remove image {image_id}: container(s) {', '.join(users)} use it",
            hint="remove the containers first (`sdpod down FILE`)",
        )


def _delete(store: ImageStore, directory: Path, unpack: Unpack | None) -> None:
    """Remove an image's directory, or a mapped copy's, whose files may belong to
    subordinate ids."""
    if not directory.exists():
        return
    doomed = Path(tempfile.mkdtemp(prefix="rm-", dir=store.tmp)) / "image"
    os.rename(directory, doomed)
    run: Callable[[Callable[[], None]], None] = unpack or (lambda work: work())
    run(functools.partial(shutil.rmtree, doomed.parent))


def collect_blobs(store: ImageStore) -> int:
    """Delete blobs that no stored image names (caller holds `store.collecting()`)."""
    wanted: set[str] = set()
    for image_id in store.image_ids():
        metadata = store.metadata(image_id)
        wanted.add(Digest.parse(image_id).hex)
        wanted.add(Digest.parse(metadata.get("manifest")).hex)
        wanted.update(Digest.parse(layer).hex for layer in metadata.get("layers", []))
    removed = 0
    for path in store.blobs.iterdir():
        if path.name.startswith(blobs.TEMP_PREFIX) or path.name in wanted:
            continue
        path.unlink()
        removed += 1
    return removed


def verify(store: ImageStore, report: Callable[[str], None]) -> list[str]:
    """Re-hash every stored blob; return (and `report`) each one whose content is not its
    name, and each image whose blobs are missing."""
    bad: list[str] = []
    for path in sorted(store.blobs.iterdir()) if store.blobs.is_dir() else []:
        if path.name.startswith(blobs.TEMP_PREFIX):
            continue
        found = blobs.verify_blob(path)
        if found.hex != path.name:
            bad.append(f"blob {path}: its content hashes to {found}")
    for image_id in store.image_ids():
        bad += _missing_blobs(store, image_id)
    for line in bad:
        report(line)
    return bad


def _missing_blobs(store: ImageStore, image_id: str) -> Sequence[str]:
    metadata = store.metadata(image_id)
    needed = [image_id, metadata.get("manifest"), *metadata.get("layers", [])]
    return [
        f"image {image_id}: blob {digest} is missing"
        for digest in needed
        if not store.blob_path(Digest.parse(digest)).is_file()
    ]
