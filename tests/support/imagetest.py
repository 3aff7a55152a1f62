"""Helpers for the image tests: build a layout with mkimage, import it into a fresh store,
and look at what an image unpacks to, whole or layer by layer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from sdpod.config.model import LayoutImage
from sdpod.images.layout import ImageLayout
from sdpod.images.store import ImageStore, StoredImage, Unpack
from sdpod.images.unpack import LayerFile, unpack_layers
from support.mkimage import Entry, build_layout
from support.overlayview import materialize

FIXTURES = Path(__file__).resolve().parents[2] / "../shared/fixtures/images"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sets file owners: needs root")

# Where `unpack_whole` applies the layers: as deep below tmp_path as a layer tree of the
# store (tmp_path/store/tmp/<staging>/tree) is while it is made.
WHOLE = Path("w/h/o/rootfs")

Unpacked = Callable[[Path, Sequence[Sequence[Entry]]], Path]


def make_image(
    tmp_path: Path,
    layers: Sequence[Sequence[Entry]],
    config: dict[str, Any] | None = None,
    **kw: Any,
) -> LayoutImage:
    """Write a one-image layout at tmp_path/layout, tagged `test`."""
    build_layout(tmp_path / "layout", "test", layers, config or {"Cmd": ["true"]}, **kw)
    return LayoutImage(tmp_path / "layout", "test")


def import_layers(
    tmp_path: Path,
    layers: Sequence[Sequence[Entry]],
    config: dict[str, Any] | None = None,
    unpack: Unpack | None = None,
) -> StoredImage:
    """Build an image of `layers` and import it into the store at tmp_path/store."""
    image = make_image(tmp_path, layers, config)
    return ImageStore(tmp_path / "store").import_layout(image, unpack)


def layer_files(image: LayoutImage) -> list[LayerFile]:
    """The layer blobs of a layout's image, as the unpacker takes them."""
    resolved = ImageLayout(image.path).resolve(image.tag)
    return [
        LayerFile(
            image.path / "blobs/sha256" / layer.descriptor.digest.hex,
            str(layer.descriptor.digest),
            layer.diff_id,
        )
        for layer in resolved.layers
    ]


def unpack_whole(tmp_path: Path, layers: Sequence[Sequence[Entry]]) -> Path:
    """Apply an image of `layers` onto one tree, as `sdpod image unpack` does."""
    rootfs = tmp_path / WHOLE
    rootfs.mkdir(parents=True)
    unpack_layers(rootfs, layer_files(make_image(tmp_path, layers)))
    return rootfs


def unpack_layered(tmp_path: Path, layers: Sequence[Sequence[Entry]]) -> Path:
    """Import an image of `layers` layer by layer, and copy what an overlay of its trees
    shows into tmp_path/merged."""
    stored = import_layers(tmp_path, layers)
    return materialize(stored.lowers, tmp_path / "merged")


UNPACKERS: dict[str, Unpacked] = {"whole": unpack_whole, "layered": unpack_layered}


def view(image: StoredImage, under: Path) -> Path:
    """What an overlay of the image's trees shows, copied into a new directory under
    `under`."""
    return materialize(image.lowers, Path(tempfile.mkdtemp(dir=under)) / "view")
