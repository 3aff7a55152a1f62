"""Removing images, and the layer trees and blobs no image needs any more; re-hashing
the blobs that stay.

An image that a container's bundle uses is never removed (`sdpod.images.usage`), nor a
layer tree a container stacks. Trees written through another id mapping than the
store's go with the last image that has their layer, at a prune once no container uses
them, or when `sdpod rm` removes their last container. A directory is first renamed
into the store's tmp/, so that it disappears at once, then deleted through the store's
unpack runner: rootless, its files belong to subordinate ids that only a user namespace
can delete. Blobs and trees are collected while both store locks are held, so no pull
or import is between fetching a blob and naming it, or between making a tree and
naming it in its image.json.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import ImageError
from sdpod.images import blobs, names, usage
from sdpod.images.digest import Digest
from sdpod.images.store import MAPPED, ROOTFS, ImageStore, Unpack
from sdpod.images.trees import TREE, parse_tree_name


@dataclass(frozen=True)
class Removed:
    untagged: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    blobs: int = 0
    trees: int = 0


def remove(store: ImageStore, image_id: str, name: str | None, unpack: Unpack | None) -> Removed:
    """Remove the name `name` of an image, and the image once no name is left; without
    `name` (the user gave the id) the image and every name of it go."""
    with store.collecting():
        current = names.names_of(store.names(), image_id)
        if name is not None and len(current) > 1:
            names.drop_name(store.root, name)
            return Removed(untagged=(name,))
        uses = usage.uses(store.root / "containers")
        _refuse_in_use(store, image_id, uses)
        names.drop_image(store.root, image_id)
        store.discard(store.images / Digest.parse(image_id).hex, unpack)
        trees = collect_trees(store, uses, unpack, keep_mapped=True)
        return Removed(tuple(current), (image_id,), collect_blobs(store), trees)


def prune(store: ImageStore, unpack: Unpack | None) -> Removed:
    """Remove every image that no container uses, the trees that no image needs or that
    another id mapping's containers used, and the blobs only removed images needed."""
    with store.collecting():
        uses = usage.uses(store.root / "containers")
        in_use = {tree for use in uses for tree in use.trees}
        used = {i for i in store.image_ids() if _users(store, i, uses)}
        removed = [image_id for image_id in store.image_ids() if image_id not in used]
        untagged: list[str] = []
        for image_id in removed:
            untagged += names.drop_image(store.root, image_id)
            store.discard(store.images / Digest.parse(image_id).hex, unpack)
        for image_id in used:
            for tree in _whole_trees(store, image_id):
                if tree not in in_use:
                    store.discard(
                        tree.parent if tree.parent.parent.name == MAPPED else tree, unpack
                    )
        trees = collect_trees(store, uses, unpack, keep_mapped=False)
        return Removed(tuple(untagged), tuple(removed), collect_blobs(store), trees)


def drop_mapped_copies(store: ImageStore, lowers: Iterable[Path], unpack: Unpack | None) -> None:
    """Delete those of `lowers` that were written through another id mapping than the
    store's (layer trees, or an image's whole tree) and that no container uses any more:
    what `sdpod rm` calls with the trees of the containers it removed."""
    with store.locked():
        used = usage.users_of_trees(store.root / "containers")
        for lower in lowers:
            if lower not in used and (_is_mapped_tree(store, lower) or _is_copy(store, lower)):
                store.discard(lower.parent, unpack)


def _is_copy(store: ImageStore, tree: Path) -> bool:
    """Whether `tree` is an image's whole tree written through another id mapping."""
    copies = tree.parent.parent
    return tree.name == ROOTFS and copies.name == MAPPED and copies.parent.parent == store.images


def _is_mapped_tree(store: ImageStore, tree: Path) -> bool:
    """Whether `tree` is a layer tree written through another id mapping."""
    parsed = parse_tree_name(tree.parent.name)
    return (
        tree.name == TREE and tree.parent.parent == store.trees.dir and bool(parsed and parsed[1])
    )


def _whole_trees(store: ImageStore, image_id: str) -> list[Path]:
    """The whole trees an image does not need: those of other mappings, and its own one
    once it is unpacked layer by layer (left by an sdpod before shared layers)."""
    directory = store.images / Digest.parse(image_id).hex
    mapped = directory / MAPPED
    found = sorted(copy / ROOTFS for copy in mapped.iterdir()) if mapped.is_dir() else []
    metadata = store.metadata(image_id)
    if isinstance(metadata.get("chain_ids"), list) and not metadata.get("flattened"):
        found.append(directory / ROOTFS)
    return [tree for tree in found if tree.exists()]


def collect_trees(
    store: ImageStore, uses: Sequence[usage.Use], unpack: Unpack | None, keep_mapped: bool
) -> int:
    """Delete the layer trees no stored image has and no container stacks; with
    `keep_mapped` unset, those of other id mappings too once no container stacks them.
    The caller holds `store.collecting()`."""
    if not store.trees.dir.is_dir():
        return 0
    wanted: set[str] = set()
    for image_id in store.image_ids():
        chains = store.metadata(image_id).get("chain_ids")
        wanted.update(chains if isinstance(chains, list) else [])
    in_use = {tree for use in uses for tree in use.trees}
    removed = 0
    for directory in sorted(store.trees.dir.iterdir()):
        parsed = parse_tree_name(directory.name)
        if parsed is None or directory / TREE in in_use:
            continue
        chain, key = parsed
        if chain in wanted and (key is None or keep_mapped):
            continue
        store.discard(directory, unpack)
        removed += 1
    return removed


def _users(store: ImageStore, image_id: str, uses: Sequence[usage.Use]) -> list[str]:
    """The containers made from the image; for bundles that do not name their image's
    id (made by an sdpod before shared layers), those whose tree is the image's."""
    directory = store.images / Digest.parse(image_id).hex
    return [
        use.container
        for use in uses
        if use.image_id == image_id
        or (use.image_id is None and any(tree.is_relative_to(directory) for tree in use.trees))
    ]


def _refuse_in_use(store: ImageStore, image_id: str, uses: Sequence[usage.Use]) -> None:
    users = _users(store, image_id, uses)
    if users:
        raise ImageError(
            f"failed to remove image {image_id}: container(s) {', '.join(users)} use it",
            hint="remove the containers first (`sdpod down FILE`)",
        )


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
