"""Import images from files: OCI layouts, oci-archive and docker-archive tarballs.

- An OCI image layout is a directory (`skopeo copy ... oci:DIR:TAG`).
- An oci-archive is a tar of such a directory.
- A docker-archive is what `docker save` and `podman save` write: `manifest.json` lists
  each image's config file, its layer tars in order and its `RepoTags`. Older Docker
  versions keep each layer in `<id>/layer.tar` (deduplicated by symlinks between them),
  Docker 25 and later in `blobs/sha256/<hex>`, the tar then being an OCI layout as well.

Every blob goes into the store through the same verified write as a pulled one. A
docker-archive has no manifest: one is written for it (OCI types), so its image is
stored like any other, and its id is its config's digest, as Docker's is.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sdpod.errors import ImageError
from sdpod.images import mediatypes as mt
from sdpod.images.digest import hash_bytes, hash_stream
from sdpod.images.layout import (
    MAX_INDEX_JSON,
    MAX_JSON_BLOB,
    Descriptor,
    ImageLayout,
    parse_object,
    resolve,
)
from sdpod.images.platforms import HostPlatform
from sdpod.images.reference import parse_reference
from sdpod.images.store import ImageStore, StoredImage, Unpack

# Name annotations that containerd, buildkit and Docker 25 give an index entry.
_NAME_ANNOTATIONS = ("io.containerd.image.name", mt.REF_NAME)
_MAX_LINKS = 8


@dataclass(frozen=True)
class ImportOptions:
    tag: str | None = None
    references: tuple[str, ...] = ()
    platform: HostPlatform | None = None


def split_source(text: str) -> tuple[Path, str | None]:
    """`PATH[:TAG]`: a path that exists as written has no tag."""
    path = Path(text)
    if path.exists():
        return path, None
    head, colon, tag = text.rpartition(":")
    if colon and head and Path(head).exists():
        return Path(head), tag
    raise ImageError(f"failed to import {text}: no such file or directory")


def import_path(
    store: ImageStore, path: Path, options: ImportOptions, unpack: Unpack | None = None
) -> StoredImage:
    """Import the image at `path`, whichever of the three forms it has."""
    if path.is_dir():
        return _import_layout_dir(store, path, options, unpack)
    with _open_tar(path) as tar:
        archive = _Tar(path, tar)
        if archive.has("manifest.json"):
            return _DockerArchive(store, archive, options).run(unpack)
        if archive.has("oci-layout"):
            return _import_oci_archive(store, archive, options, unpack)
    raise ImageError(
        f"failed to import {path}: the tar has neither manifest.json (docker-archive) nor "
        "oci-layout (oci-archive)"
    )


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(
            f"failed to import {path}: it is neither an image layout nor a tar archive ({exc})"
        ) from None


def _import_layout_dir(
    store: ImageStore, path: Path, options: ImportOptions, unpack: Unpack | None
) -> StoredImage:
    from sdpod.config.model import LayoutImage

    layout = ImageLayout(path)
    descriptor, tag = _choose(layout.index(), options.tag, str(path))
    name = f"oci:{path}:{tag}" if tag else f"oci:{path}"
    resolved = resolve(layout, name, descriptor, options.platform)
    references = (*options.references, *_annotated_names(descriptor))
    return store.import_layout(LayoutImage(path, tag or ""), unpack, references, resolved)


def _import_oci_archive(
    store: ImageStore, archive: _Tar, options: ImportOptions, unpack: Unpack | None
) -> StoredImage:
    index = parse_object(archive.read("index.json", MAX_INDEX_JSON), f"{archive.path}: index.json")
    manifests = [
        Descriptor.from_json(item, f"{archive.path}: index.json")
        for item in index.get("manifests") or []
    ]
    descriptor, tag = _choose(manifests, options.tag, str(archive.path))
    name = f"oci-archive:{archive.path}" + (f":{tag}" if tag else "")
    with store.fetching():
        resolved = resolve(_TarBlobs(store, archive), name, descriptor, options.platform)
        for layer in resolved.layers:
            _copy(store, archive, layer.descriptor, "layer")
        references = (*options.references, *_annotated_names(descriptor))
        return store.commit(resolved, name, unpack, references)


def _choose(
    entries: Sequence[Descriptor], tag: str | None, where: str
) -> tuple[Descriptor, str | None]:
    """The index entry tagged `tag`; without a tag, the only entry there is."""
    tags = sorted({t for d in entries if (t := d.annotation(mt.REF_NAME))})
    if tag is not None:
        found = [d for d in entries if d.annotation(mt.REF_NAME) == tag]
        if not found:
            raise ImageError(
                f"failed to import {where}:{tag}: no image is tagged {tag!r}; "
                f"its tags: {', '.join(tags) or 'none'}"
            )
        return found[0], tag
    if len(entries) != 1:
        raise ImageError(
            f"failed to import {where}: it holds {len(entries)} images, name one as "
            f"PATH:TAG; its tags: {', '.join(tags) or 'none'}"
        )
    return entries[0], entries[0].annotation(mt.REF_NAME)


def _annotated_names(descriptor: Descriptor) -> list[str]:
    """A full reference an index entry carries (`io.containerd.image.name`), if any."""
    for key in _NAME_ANNOTATIONS:
        value = descriptor.annotation(key)
        if value and "/" in value:
            try:
                return [str(parse_reference(value))]
            except ImageError:
                continue
    return []


class _Tar:
    """Members of a tar read by path, with symlinks and hard links followed inside it."""

    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = path
        self.tar = tar
        self.members = {posixpath.normpath(m.name.lstrip("/")): m for m in tar.getmembers()}

    def has(self, name: str) -> bool:
        return posixpath.normpath(name) in self.members

    def member(self, name: str) -> tarfile.TarInfo:
        """The regular file `name` leads to."""
        current = posixpath.normpath(name)
        for _ in range(_MAX_LINKS):
            member = self.members.get(current)
            if member is None:
                raise ImageError(f"failed to read {self.path}: it has no file {name!r}")
            if member.isfile():
                return member
            if not (member.issym() or member.islnk()):
                raise ImageError(f"failed to read {self.path}: {name!r} is no regular file")
            base = posixpath.dirname(current) if member.issym() else ""
            current = posixpath.normpath(posixpath.join(base, member.linkname))
            if current.startswith("../") or current == ".." or member.linkname.startswith("/"):
                raise ImageError(
                    f"failed to read {self.path}: the link {member.name!r} -> "
                    f"{member.linkname!r} leads out of the archive"
                )
        raise ImageError(f"failed to read {self.path}: links from {name!r} go round in circles")

    def open(self, name: str) -> IO[bytes]:
        member = self.member(name)
        stream = self.tar.extractfile(member)
        if stream is None:
            raise ImageError(f"failed to read {self.path}: cannot read {name!r}")
        return stream

    def size(self, name: str) -> int:
        return self.member(name).size

    def read(self, name: str, limit: int) -> bytes:
        if self.size(name) > limit:
            raise ImageError(f"failed to read {self.path}: {name!r} is larger than {limit} bytes")
        with self.open(name) as stream:
            return stream.read()


class _TarBlobs:
    """The JSON blobs of an oci-archive, verified and kept in the store as they are read."""

    def __init__(self, store: ImageStore, archive: _Tar) -> None:
        self.store = store
        self.archive = archive

    def read_json_blob(self, descriptor: Descriptor, what: str) -> dict[str, Any]:
        if descriptor.size > MAX_JSON_BLOB:
            raise ImageError(
                f"failed to read {what} {descriptor.digest} of {self.archive.path}: it is "
                f"larger than {MAX_JSON_BLOB} bytes"
            )
        _copy(self.store, self.archive, descriptor, what)
        return self.store.read_json_blob(descriptor, what)


def _copy(store: ImageStore, archive: _Tar, descriptor: Descriptor, what: str) -> None:
    if store.has_blob(descriptor):
        return
    name = f"blobs/{descriptor.digest.algorithm}/{descriptor.digest.hex}"
    with archive.open(name) as stream:
        store.write_blob(stream, descriptor, what, f"{archive.path}: {name}")


class _DockerArchive:
    """One image of a docker-archive, chosen by tag, written into the store."""

    def __init__(self, store: ImageStore, archive: _Tar, options: ImportOptions) -> None:
        self.store = store
        self.archive = archive
        self.options = options

    def fail(self, reason: str) -> ImageError:
        return ImageError(f"failed to import docker-archive {self.archive.path}: {reason}")

    def run(self, unpack: Unpack | None) -> StoredImage:
        entry, tags = self.choose()
        config_name = entry.get("Config")
        layer_names = entry.get("Layers") or []
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise self.fail("manifest.json names no Config or Layers for the image")
        source = f"docker-archive:{self.archive.path}" + (f":{tags[0]}" if tags else "")
        with self.store.fetching():
            config = self.add_json(self.archive.read(config_name, MAX_JSON_BLOB), mt.OCI_CONFIG)
            layers = [self.add_layer(str(name)) for name in layer_names]
            manifest = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": _descriptor_json(config),
                "layers": [_descriptor_json(layer) for layer in layers],
            }
            top = self.add_json(json.dumps(manifest).encode(), mt.OCI_MANIFEST)
            resolved = resolve(self.store, source, top, self.options.platform)
            references = (*self.options.references, *tags)
            return self.store.commit(resolved, source, unpack, references)

    def choose(self) -> tuple[dict[str, Any], list[str]]:
        """The manifest.json entry the tag names, and its tags as full references."""
        entries = json.loads(self.archive.read("manifest.json", MAX_INDEX_JSON) or b"null")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.fail("manifest.json is not a list of images")
        tagged = [(entry, _repo_tags(entry)) for entry in entries]
        wanted = self.options.tag
        if wanted is not None:
            full = str(parse_reference(wanted))
            found = [(e, tags) for e, tags in tagged if full in tags]
            if not found:
                raise self.fail(f"no image is tagged {wanted!r}; {_listing(tagged)}")
            return found[0][0], [full]
        if len(tagged) != 1:
            raise self.fail(
                f"it holds {len(tagged)} images, name one as PATH:TAG; {_listing(tagged)}"
            )
        return tagged[0]

    def add_json(self, data: bytes, media_type: str) -> Descriptor:
        digest, size = hash_bytes(data)
        descriptor = Descriptor(media_type, digest, size)
        if not self.store.has_blob(descriptor):
            where = f"{self.archive.path}: {media_type}"
            self.store.write_blob(io.BytesIO(data), descriptor, "config", where)
        return descriptor

    def add_layer(self, name: str) -> Descriptor:
        """Hash the layer's tar member, then store it: its digest is only known after."""
        with self.archive.open(name) as stream:
            head = stream.read(4)
        with self.archive.open(name) as stream:
            digest, size = hash_stream(stream)
        descriptor = Descriptor(_layer_type(head), digest, size)
        if not self.store.has_blob(descriptor):
            with self.archive.open(name) as stream:
                where = f"{self.archive.path}: {name}"
                self.store.write_blob(stream, descriptor, "layer", where)
        return descriptor


def _repo_tags(entry: dict[str, Any]) -> list[str]:
    tags = entry.get("RepoTags") or []
    out = []
    for tag in tags if isinstance(tags, list) else []:
        try:
            out.append(str(parse_reference(str(tag))))
        except ImageError:
            continue
    return out


def _listing(tagged: Sequence[tuple[dict[str, Any], list[str]]]) -> str:
    tags = sorted(t for _, ts in tagged for t in ts)
    return f"its tags: {', '.join(tags)}" if tags else "it has no tags"


def _layer_type(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return mt.OCI_LAYER_GZIP
    if head == b"\x28\xb5\x2f\xfd":
        return mt.OCI_LAYER_ZSTD
    return mt.OCI_LAYER


def _descriptor_json(descriptor: Descriptor) -> dict[str, Any]:
    return {
        "mediaType": descriptor.media_type,
        "digest": str(descriptor.digest),
        "size": descriptor.size,
    }
