"""Writing a stored image out: as an OCI layout or oci-archive, or as a root filesystem.

A layout gets the image's manifest, config and layers, and an index.json entry tagged as
asked; an existing layout keeps its other images. A Docker schema 2 manifest is written
with the OCI names of its types (the config and layers are the same bytes either way),
since tools read only OCI manifests from an OCI layout, so that image gets a new manifest
digest; its id, the config's digest, stays.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sdpod.errors import ImageError
from sdpod.images import mediatypes as mt
from sdpod.images.digest import Digest, hash_bytes
from sdpod.images.store import ImageStore, Unpack

LAYOUT_MARKER = {"imageLayoutVersion": "1.0.0"}


def oci_manifest(store: ImageStore, image_id: str) -> bytes:
    """The image's manifest, its Docker types renamed to their OCI equivalents."""
    metadata = store.metadata(image_id)
    digest = Digest.parse(metadata.get("manifest"))
    document = json.loads(store.blob_path(digest).read_bytes())
    if document.get("mediaType", mt.OCI_MANIFEST) == mt.OCI_MANIFEST and not _docker_parts(
        document
    ):
        return store.blob_path(digest).read_bytes()
    document["mediaType"] = mt.OCI_MANIFEST
    for part in [document.get("config", {}), *document.get("layers", [])]:
        part["mediaType"] = mt.OCI_EQUIVALENTS.get(part.get("mediaType"), part.get("mediaType"))
    return json.dumps(document, separators=(",", ":")).encode()


def _docker_parts(document: dict[str, Any]) -> bool:
    parts = [document.get("config", {}), *document.get("layers", [])]
    return any(part.get("mediaType") in mt.OCI_EQUIVALENTS for part in parts)


def save_layout(store: ImageStore, image_id: str, dest: Path, tag: str) -> None:
    """Write the image into the OCI layout `dest` (made if missing), tagged `tag`."""
    manifest = oci_manifest(store, image_id)
    index = _existing_index(dest)
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for digest in _blob_digests(store, image_id):
        target = dest / "blobs" / "sha256" / digest.hex
        if not target.exists():
            shutil.copyfile(store.blob_path(digest), target)
    digest, size = hash_bytes(manifest)
    (dest / "blobs" / "sha256" / digest.hex).write_bytes(manifest)
    _write_json(dest / "oci-layout", LAYOUT_MARKER)
    _write_json(dest / "index.json", _tagged(index, _entry(digest, size, tag), tag))


def save_archive(store: ImageStore, image_id: str, dest: Path, tag: str) -> None:
    """Write the image as an oci-archive: a tar of a one-image layout, replaced at once."""
    temp = Path(tempfile.mkdtemp(prefix=".sdpod-save-", dir=dest.parent))
    try:
        save_layout(store, image_id, temp / "layout", tag)
        staged = temp / "archive.tar"
        with tarfile.open(staged, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(temp / "layout" / name, arcname=name, filter=_plain)
        os.rename(staged, dest)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def unpack_to(store: ImageStore, image_id: str, dest: Path, unpack: Unpack | None) -> Path:
    """Write the image's root filesystem to `dest/rootfs`, as `umoci unpack` lays it out.

    Only the root filesystem is written: umoci also writes a runtime config.json and an
    mtree manifest beside it, which nothing here reads.
    """
    if dest.exists() and any(dest.iterdir()):
        raise ImageError(
            f"failed to unpack image {image_id} into {dest}: the directory is not empty"
        )
    dest.mkdir(parents=True, exist_ok=True)
    store.unpack_into(image_id, dest, unpack)
    return dest / "rootfs"


def _blob_digests(store: ImageStore, image_id: str) -> list[Digest]:
    metadata = store.metadata(image_id)
    return [Digest.parse(image_id), *(Digest.parse(d) for d in metadata.get("layers", []))]


def _existing_index(dest: Path) -> dict[str, Any]:
    if not dest.exists():
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    if not (dest / "oci-layout").is_file():
        if any(dest.iterdir()):
            raise ImageError(
                f"failed to save image into {dest}: it is neither an image layout nor empty"
            )
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    try:
        index = json.loads((dest / "index.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise ImageError(f"failed to read {dest / 'index.json'}: {exc}") from None
    return index if isinstance(index, dict) else {"schemaVersion": 2, "manifests": []}


def _entry(digest: Digest, size: int, tag: str) -> dict[str, Any]:
    return {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(digest),
        "size": size,
        "annotations": {mt.REF_NAME: tag},
    }


def _tagged(index: dict[str, Any], entry: dict[str, Any], tag: str) -> dict[str, Any]:
    """`index` with `entry` as the only one tagged `tag`."""
    others = [
        m
        for m in index.get("manifests") or []
        if (m.get("annotations") or {}).get(mt.REF_NAME) != tag
    ]
    return {**index, "manifests": [*others, entry]}


def _write_json(path: Path, document: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(json.dumps(document, separators=(",", ":")).encode())
    os.rename(temp, path)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Archive members owned by root, as image tools write them: our ids mean nothing."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
