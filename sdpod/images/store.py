"""The image store: verified blobs, and each image's root filesystem, applied once.

    <root>/lock                     flock(2)ed around every change
    <root>/blobs/sha256/<hex>       content-addressed copies of manifests, configs, layers
    <root>/images/<hex>/image.json  what was imported, <hex> being the config's digest
    <root>/images/<hex>/rootfs      the layers applied, in order
    <root>/tmp/                     imports in progress; whatever is here when the lock is
                                    free was left by an interrupted import

An image directory appears by one rename(2) of a finished staging directory, so a
directory under images/ is complete; a blob appears by one rename of a verified file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdpod.config.model import LayoutImage
from sdpod.errors import ImageError, SdpodError
from sdpod.images.config import ImageConfig, parse_config
from sdpod.images.digest import Digest, check, hash_bytes, hash_stream
from sdpod.images.layout import Descriptor, ImageLayout, ResolvedImage
from sdpod.images.unpack import LayerFile, unpack_layers

log = logging.getLogger(__name__)

# Runs a closure somewhere that may own the image's files (a user namespace mapped
# through the user's subordinate ids). The closure only writes to disk.
Unpack = Callable[[Callable[[], None]], None]

_METADATA = "image.json"
_DONE = "unpacked"
_ERROR = "error.json"
_BLOB_TEMP_PREFIX = ".tmp-"


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

    def lookup(self, image: LayoutImage) -> StoredImage | None:
        """The stored copy of the image `image` names today, if it was imported."""
        return self.get(ImageLayout(image.path).resolve(image.tag).id)

    def import_layout(self, image: LayoutImage, unpack: Unpack | None = None) -> StoredImage:
        """Copy the image `image` names into the store, verified, and apply its layers.

        `unpack` runs the extraction (see `Unpack`); by default it runs in this process.
        Importing an image already stored costs reading its index, manifest and config.
        """
        layout = ImageLayout(image.path)
        resolved = layout.resolve(image.tag)
        stored = self.get(resolved.id)
        if stored is not None:
            return stored
        try:
            self._import(layout, resolved, str(image), unpack or _in_process)
        except OSError as exc:
            raise ImageError(f"failed to import image {image} into {self.root}: {exc}") from None
        stored = self.get(resolved.id)
        if stored is None:
            raise ImageError(f"failed to import image {image}: {self.images} lost it meanwhile")
        return stored

    def _import(
        self, layout: ImageLayout, resolved: ResolvedImage, source: str, run: Unpack
    ) -> None:
        with self._locked():
            if self.get(resolved.id) is not None:
                return  # another sdpod imported it while we waited for the lock
            self._clean_stale(run)
            self._copy_blobs(layout, resolved)
            self._build(resolved, source, run)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        for directory in (self.blobs, self.images, self.tmp):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _clean_stale(self, run: Unpack) -> None:
        """Remove what interrupted imports left; their files may belong to subordinate ids."""
        for leftover in self.blobs.glob(_BLOB_TEMP_PREFIX + "*"):
            leftover.unlink(missing_ok=True)
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
        target = self.blobs / descriptor.digest.hex
        if target.is_file() and target.stat().st_size == descriptor.size:
            return  # it was verified before it was given that name
        source_path = layout.blob_path(descriptor.digest)
        with (
            layout.open_blob(descriptor, what) as source,
            tempfile.NamedTemporaryFile(
                dir=self.blobs, prefix=_BLOB_TEMP_PREFIX, delete=False
            ) as temp,
        ):
            try:
                found = hash_stream(source, temp)
                temp.flush()
                os.fsync(temp.fileno())
                check(what, source_path, descriptor.digest, descriptor.size, found)
            except BaseException:
                os.unlink(temp.name)
                raise
        os.rename(temp.name, target)

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
        _run_unpack(run, staging, layers, source)
        _write_metadata(staging, resolved, source)
        # rename(2) makes the image visible at once; sync first, so that after a crash
        # the name never points at files whose data never reached the disk.
        os.sync()
        os.rename(staging, self.images / hex_id)
        _fsync_dir(self.images)


def _in_process(work: Callable[[], None]) -> None:
    work()


def _run_unpack(run: Unpack, staging: Path, layers: Sequence[LayerFile], source: str) -> None:
    """Run the extraction through `run`, and learn its outcome from the disk alone.

    `run` may fork, and its errors then arrive as plain text, if at all; the closure leaves
    a marker when it finishes and its ImageError (with the hint) in a file when it fails.
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
    if not (staging / _DONE).exists():
        raise ImageError(f"failed to unpack image {source}: the extraction ended unfinished")


def _unpack_work(staging: Path, layers: tuple[LayerFile, ...]) -> None:
    """The extraction itself: everything it reports, it writes into `staging`."""
    try:
        rootfs = staging / "rootfs"
        rootfs.mkdir(mode=0o755)
        unpack_layers(rootfs, layers)
        (staging / _DONE).touch()
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


def _write_metadata(staging: Path, resolved: ResolvedImage, source: str) -> None:
    metadata = {
        "id": resolved.id,
        "manifest": str(resolved.manifest.digest),
        "layers": [str(layer.descriptor.digest) for layer in resolved.layers],
        "source": source,
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
