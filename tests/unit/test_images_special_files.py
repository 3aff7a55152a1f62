"""Blobs and index files that are not regular files are refused, never read."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.imagetest import make_image
from support.mkimage import File

from sdpod.errors import ImageError
from sdpod.images.layout import ImageLayout
from sdpod.images.store import ImageStore


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A regression here would block on a FIFO for ever: fail the test after 10 s."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("blocked reading a special file")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def layer_blob(image_path: Path, tag: str) -> Path:
    layer = ImageLayout(image_path).resolve(tag).layers[0].descriptor
    return image_path / "blobs/sha256" / layer.digest.hex


def test_a_fifo_blob_is_refused_without_blocking(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("a", b"payload")]])
    blob = layer_blob(image.path, image.tag)
    blob.unlink()
    os.mkfifo(blob)

    with pytest.raises(ImageError, match="not a regular file"):
        ImageStore(tmp_path / "store").import_layout(image)


def test_a_blob_linked_to_a_device_is_refused(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("a", b"payload")]])
    blob = layer_blob(image.path, image.tag)
    blob.unlink()
    blob.symlink_to("/dev/zero")

    with pytest.raises(ImageError, match="not a regular file"):
        ImageStore(tmp_path / "store").import_layout(image)


def test_a_fifo_index_is_refused(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("a")]])
    index = image.path / "index.json"
    index.unlink()
    os.mkfifo(index)

    with pytest.raises(ImageError, match="not a regular file"):
        ImageLayout(image.path).tags()
