"""The test-image builder: reproducible, and accepted by other tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import support.mkimage
from support.imagetest import view
from support.mkimage import BUSYBOX_APPLETS, build_busybox_image

from sdpod.config.model import LayoutImage
from sdpod.images.store import ImageStore

BUSYBOX = Path("/bin/busybox")
needs_busybox = pytest.mark.skipif(
    not BUSYBOX.is_file(), reason="needs /bin/busybox (Debian package busybox-static)"
)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(support.mkimage.__file__)
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )


@needs_busybox
def test_busybox_image_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    first = build_busybox_image(tmp_path / "a", "x")
    second = build_busybox_image(tmp_path / "b", "x")

    assert first == second
    assert sorted(os.listdir(tmp_path / "a/blobs/sha256")) == sorted(
        os.listdir(tmp_path / "b/blobs/sha256")
    )
    assert (tmp_path / "a/index.json").read_bytes() == (tmp_path / "b/index.json").read_bytes()


@needs_busybox
def test_script_writes_a_tagged_layout(tmp_path: Path) -> None:
    result = run_script("busybox", str(tmp_path / "img"), "v1")

    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "img/index.json").read_text())
    names = [d["annotations"]["org.opencontainers.image.ref.name"] for d in index["manifests"]]
    assert names == ["v1"]
    assert json.loads((tmp_path / "img/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_script_usage_error() -> None:
    result = run_script("nothing")

    assert result.returncode == 2
    assert "usage: mkimage.py busybox DEST [TAG]" in result.stderr


@needs_busybox
def test_busybox_image_imports_and_runs_its_busybox(tmp_path: Path) -> None:
    build_busybox_image(tmp_path / "img")

    stored = ImageStore(tmp_path / "store").import_layout(LayoutImage(tmp_path / "img", "latest"))

    rootfs = view(stored, tmp_path)
    assert stored.config.cmd == ("httpd", "-f", "-v", "-p", "80", "-h", "/www")
    assert stored.config.env == (("PATH", "/bin"),)
    for applet in BUSYBOX_APPLETS:
        assert os.readlink(rootfs / "bin" / applet) == "busybox"
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert "www:x:33:33:" in (rootfs / "etc/passwd").read_text()
    echo = subprocess.run([rootfs / "bin/echo", "hi"], capture_output=True, text=True, check=True)
    assert echo.stdout == "hi\n"


@needs_busybox
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_the_busybox_layout(tmp_path: Path) -> None:
    manifest = build_busybox_image(tmp_path / "img", "v1")

    result = subprocess.run(
        ["skopeo", "inspect", f"oci:{tmp_path / 'img'}:v1"],
        capture_output=True,
        text=True,
        check=True,
    )

    inspected = json.loads(result.stdout)
    assert inspected["Digest"] == manifest.digest
    assert inspected["Os"] == "linux"
    assert inspected["Env"] == ["PATH=/bin"]
