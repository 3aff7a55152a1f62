"""An image that does not fit: a clear error, and nothing left for a later run to trust."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mkimage import build_busybox_image

from namespaces.common import MAPPING
from sdpod.config.model import LayoutImage
from sdpod.errors import ImageError
from sdpod.images.store import ImageStore
from sdpod.kernel.userns import run_in_userns

pytestmark = [
    pytest.mark.namespaces,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs, which needs root"),
]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system: busybox alone is larger."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_named_and_the_half_unpacked_tree_goes(
    tmp_path: Path, small_disk: Path
) -> None:
    image = tmp_path / "image"
    build_busybox_image(image, "latest")
    store = ImageStore(small_disk / "store")

    with pytest.raises(ImageError, match="No space left on device") as raised:
        store.import_layout(
            LayoutImage(image, "latest"), unpack=lambda work: run_in_userns(MAPPING, work)
        )

    assert raised.value.hint == "free some space where sdpod keeps its images"
    assert list(store.tmp.iterdir()) == []
    assert store.image_ids() == []
