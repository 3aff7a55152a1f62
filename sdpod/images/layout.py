"""Reading an OCI image layout: from a tag in index.json to a verified manifest and config.

Every JSON blob is checked against its descriptor's size and digest before it is parsed.
Layer blobs are large, so they are only opened here; whoever copies them checks them as
they stream (see `sdpod.images.store`).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from sdpod.errors import ImageError
from sdpod.images import mediatypes as mt
from sdpod.images.config import ImageConfig, parse_config
from sdpod.images.digest import Digest, check, hash_bytes
from sdpod.images.platforms import HostPlatform, Platform, host_platform

# Registries refuse manifests above 4 MiB; an index.json of a large local layout may be
# longer, but nothing sane comes near these.
MAX_JSON_BLOB = 4 << 20
MAX_INDEX_JSON = 16 << 20

# Indexes may nest (an index naming an index); real images nest once at most.
MAX_NESTING = 8


@dataclass(frozen=True)
class Descriptor:
    """A reference to a blob: its type, digest and size, as a manifest or index gives it."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)

    @classmethod
    def from_json(cls, value: object, where: str) -> Descriptor:
        if not isinstance(value, dict):
            raise ImageError(f"failed to read {where}: a descriptor is not an object")
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"failed to read {where}: descriptor size {size!r} is not a count")
        media_type = value.get("mediaType", "")
        annotations = value.get("annotations") or {}
        if not isinstance(media_type, str) or not isinstance(annotations, dict):
            raise ImageError(f"failed to read {where}: malformed descriptor {value!r}")
        pairs = tuple(sorted((str(k), str(v)) for k, v in annotations.items()))
        platform = Platform.from_json(value.get("platform"))
        return cls(media_type, Digest.parse(value.get("digest")), size, platform, pairs)


class JsonBlobs(Protocol):
    """Where a resolver reads manifests, indexes and configs: a layout, a registry, a store."""

    def read_json_blob(self, descriptor: Descriptor, what: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Layer:
    """A layer blob, and the digest of its uncompressed tar when the config names it."""

    descriptor: Descriptor
    diff_id: Digest | None


@dataclass(frozen=True)
class ResolvedImage:
    """One runnable image of a layout, every JSON blob on the way to it verified."""

    manifest: Descriptor
    config_descriptor: Descriptor
    config: ImageConfig
    layers: tuple[Layer, ...]

    @property
    def id(self) -> str:
        """The image's identity: its config's digest, which names every layer's content."""
        return str(self.config_descriptor.digest)


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading if it is a regular file; raise OSError naming it if not.

    A FIFO or a device in a layout (a blob linked to /dev/zero, say) would otherwise
    make a read block or never end. O_NONBLOCK keeps the open itself from waiting on a
    FIFO; it changes nothing for a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class ImageLayout:
    """An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        marker = path / "oci-layout"
        try:
            document = json.loads(marker.read_bytes())
        except FileNotFoundError:
            raise ImageError(
                f"failed to open image layout {path}: {marker} does not exist",
                hint="an image layout is what `skopeo copy ... oci:DIR:TAG` writes",
            ) from None
        except (OSError, ValueError) as exc:
            raise ImageError(f"failed to read {marker}: {exc}") from None
        version = document.get("imageLayoutVersion") if isinstance(document, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise ImageError(
                f"failed to open image layout {path}: {marker} declares version {version!r}, "
                "expected 1.x"
            )

    def blob_path(self, digest: Digest) -> Path:
        return self.path / "blobs" / digest.algorithm / digest.hex

    def open_blob(self, descriptor: Descriptor, what: str) -> BinaryIO:
        path = self.blob_path(descriptor.digest)
        try:
            return open_regular(path)
        except FileNotFoundError:
            raise ImageError(
                f"failed to read {what} {descriptor.digest}: {path} does not exist",
                hint="the layout is incomplete; copy the image into it again",
            ) from None
        except OSError as exc:
            raise ImageError(f"failed to read {what} {descriptor.digest}: {exc}") from None

    def read_json_blob(self, descriptor: Descriptor, what: str) -> dict[str, Any]:
        """Read a small JSON blob, verify it against `descriptor`, and parse it."""
        path = self.blob_path(descriptor.digest)
        if descriptor.size > MAX_JSON_BLOB:
            raise ImageError(
                f"failed to read {what} {path}: its descriptor says {descriptor.size} bytes, "
                f"more than the {MAX_JSON_BLOB} a {what} may have"
            )
        with self.open_blob(descriptor, what) as blob:
            data = blob.read(MAX_JSON_BLOB + 1)
        check(what, path, descriptor.digest, descriptor.size, hash_bytes(data))
        return parse_object(data, f"{what} {path}")

    def index(self) -> list[Descriptor]:
        """The descriptors listed in index.json, in order."""
        path = self.path / "index.json"
        try:
            with open_regular(path) as file:
                data = file.read(MAX_INDEX_JSON + 1)
        except OSError as exc:
            raise ImageError(f"failed to read {path}: {exc.strerror}") from None
        if len(data) > MAX_INDEX_JSON:
            raise ImageError(f"failed to read {path}: larger than {MAX_INDEX_JSON} bytes")
        return _manifest_list(parse_object(data, str(path)), str(path))

    def tags(self) -> list[str]:
        names = (d.annotation(mt.REF_NAME) for d in self.index())
        return sorted({name for name in names if name is not None})

    def find(self, tag: str) -> Descriptor:
        """The descriptor index.json tags `tag`."""
        entries = self.index()
        found = {d.digest: d for d in entries if d.annotation(mt.REF_NAME) == tag}
        if not found:
            raise ImageError(
                f"failed to find image oci:{self.path}:{tag}: no image tagged {tag!r} in "
                f"{self.path / 'index.json'}; {_tag_list(entries)}"
            )
        if len(found) > 1:
            digests = ", ".join(sorted(str(d) for d in found))
            raise ImageError(
                f"failed to find image oci:{self.path}:{tag}: the tag names {len(found)} "
                f"different manifests ({digests})"
            )
        return next(iter(found.values()))

    def resolve(self, tag: str, host: HostPlatform | None = None) -> ResolvedImage:
        """Follow `tag` to the image for this machine, verifying each JSON blob on the way."""
        return resolve(self, f"oci:{self.path}:{tag}", self.find(tag), host)


def resolve(
    source: JsonBlobs, name: str, descriptor: Descriptor, host: HostPlatform | None = None
) -> ResolvedImage:
    """Follow `descriptor` through indexes to the image for `host` (default: this machine).

    `name` names the image in errors; every JSON blob is read through `source`, verified.
    """
    return _Resolver(source, name, host or host_platform()).run(descriptor)


class _Resolver:
    """Walks from a tagged descriptor through nested indexes to one image manifest."""

    def __init__(self, layout: JsonBlobs, name: str, host: HostPlatform) -> None:
        self.layout = layout
        self.name = name
        self.host = host
        self.seen: set[Digest] = set()

    def fail(self, reason: str, hint: str | None = None) -> ImageError:
        return ImageError(f"failed to resolve image {self.name}: {reason}", hint)

    def run(self, descriptor: Descriptor) -> ResolvedImage:
        for _ in range(MAX_NESTING):
            kind, document = self.load(descriptor)
            if kind is mt.Kind.MANIFEST:
                return self.image(descriptor, document)
            descriptor = self.choose(descriptor, document)
        raise self.fail(f"image indexes nest deeper than {MAX_NESTING} levels")

    def load(self, descriptor: Descriptor) -> tuple[mt.Kind, dict[str, Any]]:
        """Read a manifest or index blob; refuse anything that is neither."""
        if descriptor.digest in self.seen:
            raise self.fail(f"{descriptor.digest} refers back to itself")
        self.seen.add(descriptor.digest)
        kind = mt.kind_of(descriptor.media_type)
        if kind is None and descriptor.media_type:
            raise self.fail(
                f"{descriptor.digest} has media type {descriptor.media_type!r}, "
                "expected an image manifest or an image index"
            )
        document = self.layout.read_json_blob(descriptor, "manifest")
        inner = document.get("mediaType")
        inner_kind = mt.kind_of(inner) if isinstance(inner, str) else None
        if inner and inner_kind is None:
            raise self.fail(f"{descriptor.digest} declares media type {inner!r}")
        if kind is None:
            kind = inner_kind or (mt.Kind.INDEX if "manifests" in document else mt.Kind.MANIFEST)
        if inner_kind is not None and inner_kind is not kind:
            raise self.fail(
                f"{descriptor.digest} is listed as an {kind.value} but declares itself an "
                f"{inner_kind.value} ({inner})"
            )
        self.refuse_artifact(descriptor, document)
        return kind, document

    def refuse_artifact(self, descriptor: Descriptor, document: dict[str, Any]) -> None:
        artifact = document.get("artifactType")
        if artifact:
            raise self.fail(
                f"{descriptor.digest} is an artifact of type {artifact!r}, not a container image"
            )

    def choose(self, index: Descriptor, document: dict[str, Any]) -> Descriptor:
        """Pick the entry of an image index that best suits this machine."""
        where = f"image index {index.digest}"
        entries = [
            d
            for d in _manifest_list(document, where)
            if d.annotation(mt.DOCKER_REFERENCE_TYPE) is None
        ]
        ranked = []
        for position, entry in enumerate(entries):
            rank = None if entry.platform is None else self.host.rank(entry.platform)
            if rank is not None:
                ranked.append((rank, position, entry))
        if ranked:
            return min(ranked, key=lambda item: item[:2])[2]
        # An entry without a platform may still be for us; its config says for sure.
        unlabelled = [d for d in entries if d.platform is None]
        if unlabelled:
            return unlabelled[0]
        offered = ", ".join(sorted({str(d.platform) for d in entries})) or "nothing"
        raise self.fail(f"{where} has no image for {self.host}; it offers {offered}")

    def image(self, manifest: Descriptor, document: dict[str, Any]) -> ResolvedImage:
        where = f"manifest {manifest.digest}"
        config_desc = Descriptor.from_json(document.get("config"), where)
        if config_desc.media_type not in mt.CONFIG_TYPES:
            raise self.fail(
                f"{where} has a config of type {config_desc.media_type!r}, not an image config: "
                "it is an artifact, not a container image"
            )
        layer_descs = _descriptor_list(document.get("layers"), "layers", where)
        for layer in layer_descs:
            self.check_layer_type(layer)
        config_doc = self.layout.read_json_blob(config_desc, "config")
        config = parse_config(config_doc, str(config_desc.digest))
        self.check_platform(config)
        diff_ids = _diff_ids(config_doc, len(layer_descs), str(config_desc.digest))
        layers = tuple(
            Layer(d, diff_ids[i] if diff_ids else None) for i, d in enumerate(layer_descs)
        )
        return ResolvedImage(manifest, config_desc, config, layers)

    def check_layer_type(self, layer: Descriptor) -> None:
        if layer.media_type in mt.LAYER_TYPES:
            return
        raise self.fail(
            f"layer {layer.digest} has media type {layer.media_type!r}, which is no "
            "filesystem layer: this is not a container image"
        )

    def check_platform(self, config: ImageConfig) -> None:
        """Refuse an image built for another machine: its programs would not execute."""
        if not config.architecture and not config.os:
            return
        platform = Platform(config.os, config.architecture, config.variant)
        if self.host.rank(platform) is None:
            wanted = (
                f"this machine runs {self.host}"
                if self.host == host_platform()
                else f"{self.host} was asked for"
            )
            raise self.fail(
                f"the image is built for {platform}, and {wanted}",
                hint="pick an image (or a tag of a multi-platform image) built for this "
                "machine, or name its platform with --platform",
            )


def parse_object(data: bytes, where: str) -> dict[str, Any]:
    """A JSON object read from an image's file; ImageError naming `where` otherwise."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"failed to parse {where}: {exc}") from None
    if not isinstance(document, dict):
        raise ImageError(f"failed to parse {where}: expected a JSON object")
    return document


def _descriptor_list(value: object, key: str, where: str) -> list[Descriptor]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImageError(f"failed to read {where}: {key!r} is not a list")
    return [Descriptor.from_json(item, where) for item in value]


def _manifest_list(document: dict[str, Any], where: str) -> list[Descriptor]:
    return _descriptor_list(document.get("manifests"), "manifests", where)


def _diff_ids(document: dict[str, Any], count: int, where: str) -> list[Digest]:
    """The config's digests of each uncompressed layer; empty when it lists none."""
    rootfs = document.get("rootfs")
    values = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not values:
        return []
    if not isinstance(values, list) or len(values) != count:
        raise ImageError(
            f"failed to read image config {where}: it lists {values!r} as diff_ids for "
            f"{count} layers"
        )
    return [Digest.parse(value) for value in values]


def _tag_list(entries: list[Descriptor]) -> str:
    tags = sorted({t for d in entries if (t := d.annotation(mt.REF_NAME)) is not None})
    if not tags:
        return "it has no tagged images"
    shown = ", ".join(tags[:20])
    more = f" and {len(tags) - 20} more" if len(tags) > 20 else ""
    return f"its tags are: {shown}{more}"
