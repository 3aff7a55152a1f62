"""The image store: verified blobs, and each image's root filesystem, applied once.

    <root>/lock                     flock(2)ed around every change
    <root>/gc.lock                  shared while a pull fetches blobs outside `lock`,
                                    exclusive while blobs nobody names are deleted
    <root>/blobs/sha256/<hex>       content-addressed copies of manifests, configs, layers
    <root>/images/<hex>/image.json  what was imported, <hex> being the config's digest
    <root>/images/<hex>/rootfs      the layers applied, in order
    <root>/images/<hex>/mapped/<key>/rootfs
                                    the layers applied again for a container whose ids map
                                    otherwise than the store's (`key` names the mapping)
    <root>/names.json               references naming images (`sdpod.images.names`)
    <root>/tmp/                     imports in progress; whatever is here when the lock is
                                    free was left by an interrupted import

An image directory, and each mapped copy, appears by one rename(2) of a finished staging
directory, so a directory under images/ is complete; a blob appears by one rename of a verified file
(`sdpod.images.blobs`). Locks are taken in the order gc.lock, then lock.
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
from sdpod.images import blobs, names
from sdpod.images.config import ImageConfig, parse_config
from sdpod.images.digest import Digest, Readable, check, hash_bytes
from sdpod.images.layout import MAX_JSON_BLOB, Descriptor, ImageLayout, ResolvedImage
from sdpod.images.unpack import LayerFile, unpack_layers

if TYPE_CHECKING:
    from sdpod.images.pull import PullOptions, PullPolicy

log = logging.getLogger(__name__)

# Runs a closure somewhere that may own the image's files (a user namespace mapped
# through the user's subordinate ids). The closure only writes to disk.
Unpack = Callable[[Callable[[], None]], None]

_METADATA = "image.json"
MAPPED = "mapped"
_DONE = "unpacked"
_ERROR = "error.json"


@dataclass(frozen=True)
class StoredImage:
    """An image ready to run: `rootfs` is never written once the import has finished."""

    id: str
    rootfs: Path
    config: ImageConfig


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.images = root / "images"
        self.tmp = root / "tmp"

    def get(self, image_id: str) -> StoredImage | None:
        """The imported image whose config has digest `image_id`, if there is one."""
        digest = Digest.parse(image_id)
        directory = self.images / digest.hex
        if not (directory / _METADATA).is_file():
            return None
        config_path = self.blobs / digest.hex
        data = _read_file(config_path, "image config")
        check("image config", config_path, digest, len(data), hash_bytes(data))
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise ImageError(f"failed to parse image config {config_path}: {exc}") from None
        config = parse_config(document, str(digest))
        return StoredImage(str(digest), directory / "rootfs", config)

    def metadata(self, image_id: str) -> dict[str, Any]:
        """What image.json records of an imported image: manifest, layers, source, size."""
        path = self.images / Digest.parse(image_id).hex / _METADATA
        try:
            document = json.loads(path.read_bytes())
        except OSError as exc:
            raise ImageError(f"failed to read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ImageError(f"failed to parse {path}: {exc}") from None
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
        _run_unpack(unpack or _in_process, directory, self._layers_of(image_id), image_id)
        (directory / _DONE).unlink()

    def mapped_dir(self, image_id: str, key: str) -> Path:
        return self.images / Digest.parse(image_id).hex / MAPPED / key

    def mapped(self, image: StoredImage, key: str, unpack: Unpack) -> StoredImage:
        """`image` with its layers applied again by `unpack`, kept under `key`.

        A user namespace that maps ids otherwise than the store's runner sees the owners
        of `image.rootfs` as other ids; it needs a copy whose owners were written through
        its own mapping, as podman gives such containers. `key` names that mapping; the
        copy is made once, and goes with the image.
        """
        directory = self.mapped_dir(image.id, key)
        if not (directory / "rootfs").is_dir():
            try:
                with self.locked():
                    if not directory.exists():
                        self._build_mapped(image.id, directory, unpack)
            except OSError as exc:
                raise ImageError(
                    f"failed to unpack image {image.id} for mapping {key}: {exc}"
                ) from None
        return dataclasses.replace(image, rootfs=directory / "rootfs")

    def _build_mapped(self, image_id: str, directory: Path, unpack: Unpack) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f"{directory.name}-", dir=self.tmp))
        _run_unpack(unpack, staging, self._layers_of(image_id), image_id)
        directory.parent.mkdir(mode=0o700, exist_ok=True)
        os.sync()
        os.rename(staging, directory)
        _fsync_dir(directory.parent)

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

    def _copy_blobs(self, layout: ImageLayout, resolved: ResolvedImage) -> None:
        self._copy_blob(layout, resolved.manifest, "manifest")
        self._copy_blob(layout, resolved.config_descriptor, "config")
        for layer in resolved.layers:
            self._copy_blob(layout, layer.descriptor, "layer")
        _fsync_dir(self.blobs)

    def _copy_blob(self, layout: ImageLayout, descriptor: Descriptor, what: str) -> None:
        """Copy one blob into the store, verifying it; only a verified file gets its name."""
        if self.has_blob(descriptor):
            return  # it was verified before it was given that name
        where = str(layout.blob_path(descriptor.digest))
        with layout.open_blob(descriptor, what) as source:
            self.write_blob(source, descriptor, what, where)

    def _build(self, resolved: ResolvedImage, source: str, run: Unpack) -> None:
        """Apply the layers in a staging directory, then rename it into place."""
        hex_id = Digest.parse(resolved.id).hex
        staging = Path(tempfile.mkdtemp(prefix=f"{hex_id[:16]}-", dir=self.tmp))
        layers = [
            LayerFile(
                self.blobs / layer.descriptor.digest.hex,
                str(layer.descriptor.digest),
                layer.diff_id,
            )
            for layer in resolved.layers
        ]
        size = _run_unpack(run, staging, layers, source)
        _write_metadata(staging, resolved, source, size)
        # rename(2) makes the image visible at once; sync first, so that after a crash
        # the name never points at files whose data never reached the disk.
        os.sync()
        os.rename(staging, self.images / hex_id)
        _fsync_dir(self.images)


def _diff_id(metadata: dict[str, Any], position: int) -> Digest | None:
    diff_ids = metadata.get("diff_ids") or []
    value = diff_ids[position] if position < len(diff_ids) else None
    return Digest.parse(value) if value else None


def _in_process(work: Callable[[], None]) -> None:
    work()


def _run_unpack(run: Unpack, staging: Path, layers: Sequence[LayerFile], source: str) -> int:
    """Run the extraction through `run`, and learn its outcome from the disk alone.

    `run` may fork, and its errors then arrive as plain text, if at all; the closure leaves
    a marker holding the tree's size when it finishes, and its ImageError (with the hint)
    in a file when it fails. Returns the size.
    """
    work = functools.partial(_unpack_work, staging, tuple(layers))
    try:
        run(work)
    except BaseException:
        recorded = _recorded_error(staging)
        if recorded is not None:
            raise recorded from None
        raise
    recorded = _recorded_error(staging)
    if recorded is not None:
        raise recorded
    try:
        return int((staging / _DONE).read_text())
    except (OSError, ValueError):
        raise ImageError(
            f"failed to unpack image {source}: the extraction ended unfinished"
        ) from None


def _unpack_work(staging: Path, layers: tuple[LayerFile, ...]) -> None:
    """The extraction itself: everything it reports, it writes into `staging`."""
    try:
        rootfs = staging / "rootfs"
        rootfs.mkdir(mode=0o755)
        unpack_layers(rootfs, layers)
        # Counted here, where every directory can be read: outside the user namespace,
        # directories of subordinate ids with mode 0700 cannot.
        (staging / _DONE).write_text(str(tree_size(rootfs)))
    except Exception as exc:
        error = exc if isinstance(exc, ImageError) else ImageError(f"failed to unpack: {exc!r}")
        record = {"message": str(error), "hint": error.hint}
        (staging / _ERROR).write_text(json.dumps(record))
        raise


def _recorded_error(staging: Path) -> ImageError | None:
    try:
        record = json.loads((staging / _ERROR).read_text())
    except (OSError, ValueError):
        return None
    return ImageError(str(record.get("message")), record.get("hint"))


def tree_size(root: Path) -> int:
    """Bytes of the regular files and symlinks beneath `root`, each inode counted once."""
    seen: set[int] = set()
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def _write_metadata(staging: Path, resolved: ResolvedImage, source: str, size: int) -> None:
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
