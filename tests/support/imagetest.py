"""Helpers for the image tests: build a layout with mkimage, import it into a fresh store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sdpod.config.model import LayoutImage
from sdpod.images.store import ImageStore, StoredImage, Unpack
from support.mkimage import Entry, build_layout

FIXTURES = Path(__file__).resolve().parents[2] / "../shared/fixtures/images"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sets file owners: needs root")


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
