"""The same image unpacked by umoci and by sdpod gives the same tree."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from support.imagetest import make_image, view
from support.mkimage import (
    Device,
    Dir,
    Entry,
    File,
    Hardlink,
    Opaque,
    Symlink,
    Whiteout,
    busybox_entries,
)
from support.trees import tree

from sdpod.images.store import ImageStore

pytestmark = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")

LAYER_2: list[Entry] = [
    Dir("etc"),
    File("etc/motd", b"first"),
    Dir("opt"),
    Dir("opt/app"),
    File("opt/app/old", b"old"),
    Dir("opt/app/sub"),
    File("opt/app/sub/lower", b"lower"),
    Dir("opt/cache"),
    File("opt/cache/x", b"x"),
    File("opt/data", b"data", mode=0o640),
    Dir("usr"),
    Dir("usr/lib"),
    Symlink("lib", "usr/lib"),
    Symlink("replace-me", "bin/busybox"),
    Dir("becomes-file"),
    File("becomes-file/child", b"c"),
]

LAYER_3: list[Entry] = [
    File("etc/motd", b"second"),
    Whiteout("opt/cache"),
    Dir("opt/app"),
    File("opt/app/new", b"new"),
    Dir("opt/app/sub"),
    File("opt/app/sub/upper", b"upper"),
    Opaque("opt/app"),
    Hardlink("opt/data-link", "opt/data"),
    Dir("srv"),
    Hardlink("srv/also-data", "opt/data"),
    File("bin/su", b"su", mode=0o4755),
    File("bin/sg", b"sg", mode=0o2711),
    Dir("scratch", mode=0o1777),
    File("usr/lib/libz.so", b"z"),
    File("lib/through-the-link.so", b"l"),
    File("replace-me", b"a file now"),
    File("becomes-file", b"file"),
    Device("fifo", fifo=True, mode=0o600),
]


def inode_groups(root: Path) -> set[frozenset[str]]:
    """Paths that share an inode, for every inode with more than one name."""
    by_inode: dict[int, set[str]] = defaultdict(set)
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            st = path.lstat()
            if st.st_nlink > 1:
                by_inode[st.st_ino].add(str(path.relative_to(root)))
    return {frozenset(names) for names in by_inode.values()}


def test_umoci_and_sdpod_unpack_the_same_tree(tmp_path: Path) -> None:
    image = make_image(tmp_path, [busybox_entries(), LAYER_2, LAYER_3])
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{image.path}:{image.tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    store = ImageStore(tmp_path / "store")
    stored = store.import_layout(image)

    # `sdpod image unpack`, which applies the layers onto one tree, as umoci does...
    (tmp_path / "whole").mkdir()
    store.unpack_into(stored.id, tmp_path / "whole")
    whole = tmp_path / "whole/rootfs"
    theirs, ours = tree(bundle / "rootfs"), tree(whole)
    assert ours == theirs
    assert inode_groups(whole) == inode_groups(bundle / "rootfs")
    assert ours["/opt/app/sub"] == ("dir", "0o755")  # the checks above did compare something
    assert "/opt/app/old" not in ours and "/opt/cache" not in ours

    # ...and the store's layer trees, seen as a container's overlay stacks them.
    merged = view(stored, tmp_path)
    assert tree(merged) == theirs
    assert inode_groups(merged) == inode_groups(bundle / "rootfs")
