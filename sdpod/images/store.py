"""The image store: verified blobs, and each layer of an image unpacked once.

    <root>/lock                     flock(2)ed around every change
    <root>/gc.lock                  shared while a pull fetches blobs outside `lock`,
                                    exclusive while blobs nobody names are deleted
    <root>/blobs/sha256/<hex>       content-addressed copies of manifests, configs, layers
    <root>/layers/<chain>[-<key>]/  each layer's own tree, shared by every image with the
                                    same layers below it (`sdpod.images.trees`); `key`
                                    names an id mapping other than the store's
    <root>/images/<hex>/image.json  what was imported, <hex> being the config's digest,
                                    with the chain id of each of its layers
    <root>/images/<hex>/rootfs      the layers applied into one tree, for an image of more
                                    layers than overlayfs stacks (or none); stores of an
                                    sdpod before shared layers hold one for every image
    <root>/images/<hex>/mapped/<key>/rootfs
                                    that one tree again, for another id mapping
    <root>/names.json               references naming images (`sdpod.images.names`)
    <root>/tmp/                     imports in progress; whatever is here when the lock is
                                    free was left by an interrupted import

A container stacks the trees of its image's layers with overlayfs. A directory under
images/ or layers/ appears by one rename(2) of a finished staging directory, so it is
complete; image.json is written after the trees it names. A blob appears by one rename
of a verified file (`sdpod.images.blobs`). Locks are taken in the order gc.lock, then lock.

An image stored by an sdpod before shared layers has no chain ids: it is unpacked again,
layer by layer, from the blobs the store holds, the next time it is imported, pulled or
started (`restore`); its whole tree stays while a container made before uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sdpod.config.model import LayoutImage
from sdpod.errors import ImageError, SdpodError
from sdpod.images import blobs, names, usage
from sdpod.images.config import ImageConfig, parse_config
from sdpod.images.digest import Digest, Readable, check, hash_bytes
from sdpod.images.jsonfile import read_json
from sdpod.images.layout import MAX_JSON_BLOB, Descriptor, ImageLayout, Layer, ResolvedImage
from sdpod.images.trees import (
    DONE,
    LayerTrees,
    Unpack,
    chain_ids,
    fsync_dir,
    mark_done,
    recording,
    run_recorded,
)
from sdpod.images.unpack import LayerFile, unpack_layers
from sdpod.kernel import overlay

if TYPE_CHECKING:
    from sdpod.images.pull import PullOptions, PullPolicy

__all__ = ["ImageStore", "StoredImage", "Unpack"]

log = logging.getLogger(__name__)

_METADATA = "image.json"
MAPPED = "mapped"
ROOTFS = "rootfs"


@dataclass(frozen=True)
class StoredImage:
    """An image ready to run. `layers` are its layer trees, base first, or its one whole
    tree; none is ever written once the import has finished."""

    id: str
    layers: tuple[Path, ...]
    config: ImageConfig

    @property
    def lowers(self) -> tuple[Path, ...]:
        """The trees in the order overlayfs stacks them: the top layer first."""
        return self.layers[::-1]


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.images = root / "images"
        self.tmp = root / "tmp"
        self.trees = LayerTrees(root, self.tmp)

    def get(self, image_id: str) -> StoredImage | None:
        """The imported image whose config has digest `image_id`, if it is there whole."""
        digest = Digest.parse(image_id)
        directory = self.images / digest.hex
        if not (directory / _METADATA).is_file():
            return None
        layers = self._trees_of(self.metadata(image_id), directory)
        if layers is None:
            return None
        return StoredImage(str(digest), layers, self._config(digest))

    def _config(self, digest: Digest) -> ImageConfig:
        config_path = self.blobs / digest.hex
        data = _read_file(config_path, "image config")
        check("image config", config_path, digest, len(data), hash_bytes(data))
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise ImageError(f"failed to parse image config {config_path}: {exc}") from None
        return parse_config(document, str(digest))

    def _trees_of(
        self, metadata: dict[str, Any], directory: Path, key: str | None = None
    ) -> tuple[Path, ...] | None:
        """An image's trees for the mapping `key` names (None: the store's); None where
        one is missing, or the image was stored without chain ids."""
        if metadata.get("flattened"):
            rootfs = directory / ROOTFS if key is None else directory / MAPPED / key / ROOTFS
            return (rootfs,) if rootfs.is_dir() else None
        chains = metadata.get("chain_ids")
        if not isinstance(chains, list):
            return None
        return self.trees.paths(chains, key)

    def metadata(self, image_id: str) -> dict[str, Any]:
        """What image.json records of an imported image: manifest, layers, source, size."""
        path = self.images / Digest.parse(image_id).hex / _METADATA
        document = read_json(path)
        if not isinstance(document, dict):
            raise ImageError(f"failed to parse {path}: expected a JSON object")
        return document

    def image_ids(self) -> list[str]:
        """Every imported image, as its id."""
        if not self.images.is_dir():
            return []
        found = (p.name for p in self.images.iterdir() if (p / _METADATA).is_file())
        return sorted(f"sha256:{name}" for name in found)

    def names(self) -> dict[str, str]:
        return names.read_names(self.root)

    def lookup(self, image: LayoutImage) -> StoredImage | None:
        """The stored copy of the image `image` names today, if it was imported."""
        return self.get(ImageLayout(image.path).resolve(image.tag).id)

    def import_layout(
        self,
        image: LayoutImage,
        unpack: Unpack | None = None,
        references: Iterable[str] = (),
        resolved: ResolvedImage | None = None,
    ) -> StoredImage:
        """Copy the image `image` names into the store, verified, and apply its layers.

        `unpack` runs the extraction (see `Unpack`); by default it runs in this process.
        `references` name the image in the store. `resolved` is the image already
        resolved from the layout (for another platform than this machine's).
        Importing an image already stored costs reading its index, manifest and config.
        """
        layout = ImageLayout(image.path)
        resolved = resolved or layout.resolve(image.tag)
        stored = self.get(resolved.id)
        if stored is not None and not references:
            return stored
        # The shared lock keeps a prune from taking the copied blobs before they are used.
        with self.fetching():
            try:
                with self.locked():
                    self._copy_blobs(layout, resolved)
            except OSError as exc:
                raise ImageError(
                    f"failed to import image {image} into {self.root}: {exc}"
                ) from None
            return self.commit(resolved, str(image), unpack, references)

    def commit(
        self,
        resolved: ResolvedImage,
        source: str,
        unpack: Unpack | None = None,
        references: Iterable[str] = (),
    ) -> StoredImage:
        """Apply the layers of `resolved`, whose blobs are all stored, unless that was done;
        then point `references` at it. `source` says where it came from, for people."""
        try:
            with self.locked():
                if self.get(resolved.id) is None:
                    self._clean_stale(unpack or _in_process)
                    self._build(resolved, source, unpack or _in_process)
                names.set_names(self.root, resolved.id, references)
        except OSError as exc:
            raise ImageError(f"failed to import image {source} into {self.root}: {exc}") from None
        stored = self.get(resolved.id)
        if stored is None:
            raise ImageError(f"failed to import image {source}: {self.images} lost it meanwhile")
        return stored

    def restore(self, image_id: str, unpack: Unpack | None = None) -> StoredImage | None:
        """An image whose image.json is stored, with any tree it lacks made again from its
        stored blobs: an image of an sdpod before shared layers. None where the image, or
        one of its blobs, is not stored."""
        directory = self.images / Digest.parse(image_id).hex
        if not (directory / _METADATA).is_file():
            return None
        metadata = self.metadata(image_id)
        resolved = _resolved_from(metadata, image_id, self._config(Digest.parse(image_id)))
        if not all(self.has_blob(layer.descriptor) for layer in resolved.layers):
            return None
        return self.commit(resolved, str(metadata.get("source") or image_id), unpack)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock: no other sdpod changes images, names or blobs meanwhile."""
        self._make_dirs()
        with _flock(self.root / "lock", fcntl.LOCK_EX):
            yield

    @contextlib.contextmanager
    def fetching(self) -> Iterator[None]:
        """Keep blobs from being collected while this process fetches them, unlocked."""
        self._make_dirs()
        with _flock(self.root / "gc.lock", fcntl.LOCK_SH):
            blobs.clean_temporary(self.blobs)
            yield

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """Hold both locks: no fetch or import runs, so unnamed blobs may be deleted."""
        self._make_dirs()
        with _flock(self.root / "gc.lock", fcntl.LOCK_EX), self.locked():
            yield

    def _make_dirs(self) -> None:
        for directory in (self.blobs, self.images, self.tmp):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def has_blob(self, descriptor: Descriptor) -> bool:
        return blobs.has_blob(self.blobs, descriptor.digest, descriptor.size)

    def blob_path(self, digest: Digest) -> Path:
        return blobs.blob_path(self.blobs, digest)

    def write_blob(
        self,
        source: Readable,
        descriptor: Descriptor,
        what: str,
        where: str,
        progress: blobs.Progress | None = None,
    ) -> None:
        """Store a blob read from `source` (`where` names it), verified against `descriptor`."""
        blobs.write_blob(
            self.blobs, source, descriptor.digest, descriptor.size, what, where, progress
        )

    def open_blob(self, descriptor: Descriptor, what: str) -> BinaryIO:
        path = self.blob_path(descriptor.digest)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise ImageError(f"failed to read {what} {descriptor.digest}: not stored") from None

    def read_json_blob(self, descriptor: Descriptor, what: str) -> dict[str, Any]:
        """A stored JSON blob, verified again: the store resolves images like a layout."""
        path = self.blob_path(descriptor.digest)
        with self.open_blob(descriptor, what) as blob:
            data = blob.read(MAX_JSON_BLOB + 1)
        check(what, path, descriptor.digest, descriptor.size, hash_bytes(data))
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise ImageError(f"failed to parse {what} {path}: {exc}") from None
        if not isinstance(document, dict):
            raise ImageError(f"failed to parse {what} {path}: expected a JSON object")
        return document

    def ensure(
        self,
        reference: str,
        pull_policy: PullPolicy,
        unpack: Unpack | None = None,
        options: PullOptions | None = None,
    ) -> StoredImage:
        """The image `reference` names, pulled as `pull_policy` says: when it is missing,
        always, or never (then a missing image is an error)."""
        from sdpod.images import pull

        return pull.ensure(self, reference, pull_policy, unpack, options)

    def unpack_into(self, image_id: str, directory: Path, unpack: Unpack | None = None) -> None:
        """Apply a stored image's layers into `directory/rootfs`, which must not exist."""
        _flatten(unpack or _in_process, directory, self._layers_of(image_id), image_id)
        (directory / DONE).unlink()

    def mapped_dir(self, image_id: str, key: str) -> Path:
        return self.images / Digest.parse(image_id).hex / MAPPED / key

    def mapped(self, image: StoredImage, key: str, unpack: Unpack) -> StoredImage:
        """`image` with its layers applied again by `unpack`, kept under `key`.

        A user namespace that maps ids otherwise than the store's runner sees the owners
        of `image.layers` as other ids; it needs trees whose owners were written through
        its own mapping, as podman gives such containers. `key` names that mapping; each
        tree is made once, and shared by the images that share the layer.
        """
        directory = self.images / Digest.parse(image.id).hex
        layers = self._trees_of(self.metadata(image.id), directory, key)
        if layers is None:
            try:
                with self.locked():
                    self._build_mapped(image.id, key, unpack)
            except OSError as exc:
                raise ImageError(
                    f"failed to unpack image {image.id} for mapping {key}: {exc}"
                ) from None
            layers = self._trees_of(self.metadata(image.id), directory, key)
        if layers is None:
            raise ImageError(f"failed to unpack image {image.id} for mapping {key}")
        return dataclasses.replace(image, layers=layers)

    def _build_mapped(self, image_id: str, key: str, unpack: Unpack) -> None:
        metadata = self.metadata(image_id)
        layers = self._layers_of(image_id)
        if not metadata.get("flattened"):
            self.trees.build(layers, key, unpack, image_id)
            return
        directory = self.mapped_dir(image_id, key)
        if directory.exists():
            return
        staging = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=self.tmp))
        _flatten(unpack, staging, layers, image_id)
        directory.parent.mkdir(mode=0o700, exist_ok=True)
        os.sync()
        os.rename(staging, directory)
        fsync_dir(directory.parent)

    def _layers_of(self, image_id: str) -> list[LayerFile]:
        metadata = self.metadata(image_id)
        return [
            LayerFile(self.blob_path(Digest.parse(digest)), digest, _diff_id(metadata, i))
            for i, digest in enumerate(metadata.get("layers", []))
        ]

    def _clean_stale(self, run: Unpack) -> None:
        """Remove what interrupted imports left; their files may belong to subordinate ids."""
        blobs.clean_temporary(self.blobs)
        stale = sorted(self.tmp.iterdir())
        if not stale:
            return
        try:
            run(functools.partial(_remove_trees, stale))
        except (SdpodError, OSError) as exc:
            log.warning("failed to remove unfinished imports in %s: %s", self.tmp, exc)

    def discard(self, path: Path, run: Unpack | None) -> None:
        """Delete a tree at once (renamed into tmp/ first), its files through `run`: they
        may belong to subordinate ids."""
        if not path.exists():
            return
        doomed = Path(tempfile.mkdtemp(prefix="rm-", dir=self.tmp)) / path.name
        os.rename(path, doomed)
        (run or _in_process)(functools.partial(shutil.rmtree, doomed.parent))

    def _copy_blobs(self, layout: ImageLayout, resolved: ResolvedImage) -> None:
        self._copy_blob(layout, resolved.manifest, "manifest")
        self._copy_blob(layout, resolved.config_descriptor, "config")
        for layer in resolved.layers:
            self._copy_blob(layout, layer.descriptor, "layer")
        fsync_dir(self.blobs)

    def _copy_blob(self, layout: ImageLayout, descriptor: Descriptor, what: str) -> None:
        """Copy one blob into the store, verifying it; only a verified file gets its name."""
        if self.has_blob(descriptor):
            return  # it was verified before it was given that name
        where = str(layout.blob_path(descriptor.digest))
        with layout.open_blob(descriptor, what) as source:
            self.write_blob(source, descriptor, what, where)

    def _build(self, resolved: ResolvedImage, source: str, run: Unpack) -> None:
        """Make the image's layer trees (or its one tree), then its image.json.

        A new image appears by the rename of a staging directory. An image stored before
        (by an sdpod before shared layers, or whose trees went missing) keeps its
        directory, which a container made before may use; its image.json is replaced.
        """
        hex_id = Digest.parse(resolved.id).hex
        directory = self.images / hex_id
        layers = [
            LayerFile(
                self.blob_path(layer.descriptor.digest), str(layer.descriptor.digest), layer.diff_id
            )
            for layer in resolved.layers
        ]
        chains = chain_ids(layers)
        flattened = not 0 < len(layers) <= overlay.MAX_LOWER_LAYERS
        if not flattened:
            self.trees.build(layers, None, run, source)
        staging = Path(tempfile.mkdtemp(prefix=f"{hex_id[:16]}-", dir=self.tmp))
        if not flattened:
            size = sum(self.trees.size(chain) for chain in chains)
        elif (directory / ROOTFS).is_dir():
            size = int(self.metadata(resolved.id).get("size") or 0)
        else:
            size = _flatten(run, staging, layers, source)
        _write_metadata(staging, resolved, source, size, chains, flattened)
        # rename(2) makes the image visible at once; sync first, so that after a crash
        # the name never points at files whose data never reached the disk.
        os.sync()
        if not directory.exists():
            os.rename(staging, directory)
            fsync_dir(self.images)
            return
        if flattened and not (directory / ROOTFS).is_dir():
            os.rename(staging / ROOTFS, directory / ROOTFS)
        os.rename(staging / _METADATA, directory / _METADATA)
        fsync_dir(directory)
        shutil.rmtree(staging, ignore_errors=True)
        if not flattened:
            self._drop_whole_tree(directory / ROOTFS, run)

    def _drop_whole_tree(self, rootfs: Path, run: Unpack) -> None:
        """Delete the whole tree of an image now unpacked layer by layer, unless a
        container made before uses it: then `image prune` deletes it once none does."""
        if not rootfs.exists():
            return
        try:
            if rootfs in usage.users_of_trees(self.root / "containers"):
                return
            self.discard(rootfs, run)
        except (SdpodError, OSError) as exc:
            log.warning("kept %s, which the image no longer needs: %s", rootfs, exc)


def _resolved_from(metadata: dict[str, Any], image_id: str, config: ImageConfig) -> ResolvedImage:
    """The image that image.json describes, as resolving its manifest gave it."""
    layers = metadata.get("layers", [])
    types = metadata.get("layer_types") or [""] * len(layers)
    sizes = metadata.get("layer_sizes") or [0] * len(layers)
    return ResolvedImage(
        manifest=Descriptor(
            str(metadata.get("manifest_type") or ""),
            Digest.parse(metadata.get("manifest")),
            int(metadata.get("manifest_size") or 0),
        ),
        config_descriptor=Descriptor(
            str(metadata.get("config_type") or ""),
            Digest.parse(image_id),
            int(metadata.get("config_size") or 0),
        ),
        config=config,
        layers=tuple(
            Layer(Descriptor(str(kind), Digest.parse(digest), int(size)), _diff_id(metadata, i))
            for i, (digest, kind, size) in enumerate(zip(layers, types, sizes, strict=True))
        ),
    )


def _diff_id(metadata: dict[str, Any], position: int) -> Digest | None:
    diff_ids = metadata.get("diff_ids") or []
    value = diff_ids[position] if position < len(diff_ids) else None
    return Digest.parse(value) if value else None


def _in_process(work: Callable[[], None]) -> None:
    work()


def _flatten(run: Unpack, staging: Path, layers: Sequence[LayerFile], source: str) -> int:
    """Apply every layer onto `staging/rootfs`, through `run`; return the tree's size."""
    work = functools.partial(_flatten_work, staging, tuple(layers))
    return run_recorded(run, work, [staging], source)[0]


def _flatten_work(staging: Path, layers: tuple[LayerFile, ...]) -> None:
    with recording(staging):
        rootfs = staging / ROOTFS
        rootfs.mkdir(mode=0o755)
        unpack_layers(rootfs, layers)
        mark_done(staging, rootfs)


def _write_metadata(
    staging: Path,
    resolved: ResolvedImage,
    source: str,
    size: int,
    chains: list[str],
    flattened: bool,
) -> None:
    metadata = {
        "id": resolved.id,
        "manifest": str(resolved.manifest.digest),
        "manifest_type": resolved.manifest.media_type,
        "manifest_size": resolved.manifest.size,
        "config_type": resolved.config_descriptor.media_type,
        "config_size": resolved.config_descriptor.size,
        "layers": [str(layer.descriptor.digest) for layer in resolved.layers],
        "layer_types": [layer.descriptor.media_type for layer in resolved.layers],
        "layer_sizes": [layer.descriptor.size for layer in resolved.layers],
        "diff_ids": [str(layer.diff_id) if layer.diff_id else None for layer in resolved.layers],
        "chain_ids": chains,
        "flattened": flattened,
        "source": source,
        "size": size,
    }
    (staging / _METADATA).write_text(json.dumps(metadata, indent=2) + "\n")


def _remove_trees(paths: Sequence[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"failed to read {what} {path}: {exc.strerror}") from None


@contextlib.contextmanager
def _flock(path: Path, operation: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)
