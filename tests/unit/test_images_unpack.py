"""Applying layers: whiteouts, opaque directories, links, modes, owners and times.

Each test runs twice: the layers applied onto one tree (`sdpod image unpack`), and
each layer into its own tree, looked at as an overlay of those trees shows them.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from support.imagetest import UNPACKERS, Unpacked, needs_root
from support.mkimage import EPOCH, Device, Dir, Entry, File, Hardlink, Opaque, Symlink, Whiteout
from support.trees import tree

from sdpod.errors import ImageError

LOWER: list[Entry] = [
    Dir("etc"),
    File("etc/keep", b"keep"),
    File("etc/gone", b"gone"),
    Dir("var"),
    Dir("var/cache"),
    File("var/cache/a", b"a"),
    Dir("var/cache/sub"),
    File("var/cache/sub/b", b"b"),
    Dir("srv"),
    File("srv/old", b"old"),
    Dir("srv/inner"),
    File("srv/inner/lower", b"lower"),
]


@pytest.fixture(params=sorted(UNPACKERS))
def unpacked(request: pytest.FixtureRequest) -> Unpacked:
    return UNPACKERS[request.param]


def names(root: Path) -> set[str]:
    return set(tree(root))


def test_whiteout_removes_a_lower_file_and_a_lower_directory(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    upper: list[Entry] = [Whiteout("etc/gone"), Whiteout("var/cache")]

    rootfs = unpacked(tmp_path, [LOWER, upper])

    assert (rootfs / "etc/keep").exists()
    assert not (rootfs / "etc/gone").exists()
    assert not (rootfs / "var/cache").exists()
    assert (rootfs / "var").is_dir()


def test_whiteout_spares_what_its_own_layer_wrote(tmp_path: Path, unpacked: Unpacked) -> None:
    # The spec: whiteouts apply to lower layers only, wherever they sit in the tar.
    upper: list[Entry] = [
        File("etc/gone", b"new"),
        Whiteout("etc/gone"),
        Whiteout("etc/fresh"),
        File("etc/fresh", b"fresh"),
    ]

    rootfs = unpacked(tmp_path, [LOWER, upper])

    assert (rootfs / "etc/gone").read_bytes() == b"new"
    assert (rootfs / "etc/fresh").read_bytes() == b"fresh"


def test_opaque_marker_first_hides_the_lower_directory(tmp_path: Path, unpacked: Unpacked) -> None:
    upper: list[Entry] = [Dir("srv"), Opaque("srv"), File("srv/new", b"new")]

    rootfs = unpacked(tmp_path, [LOWER, upper])

    assert sorted(os.listdir(rootfs / "srv")) == ["new"]


def test_opaque_marker_after_entries_keeps_this_layers_entries(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    # A tar sorted by name puts `.wh..wh..opq` first ('.' sorts before letters), but the
    # spec fixes no order, and a writer walking the tree may put the marker last. The
    # rule is the same either way: what this layer wrote stays, lower content goes.
    upper: list[Entry] = [
        Dir("srv"),
        File("srv/new", b"new"),
        Dir("srv/inner"),
        File("srv/inner/upper", b"upper"),
        Opaque("srv"),
    ]

    rootfs = unpacked(tmp_path, [LOWER, upper])

    assert sorted(os.listdir(rootfs / "srv")) == ["inner", "new"]
    assert sorted(os.listdir(rootfs / "srv/inner")) == ["upper"]


def test_opaque_directory_that_did_not_exist_is_created_empty(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    rootfs = unpacked(tmp_path, [LOWER, [Opaque("opt/new")]])

    assert (rootfs / "opt/new").is_dir()
    assert os.listdir(rootfs / "opt/new") == []


def test_opaque_marker_at_the_root_hides_every_lower_entry(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    upper: list[Entry] = [Opaque("."), Dir("srv"), File("srv/new", b"new"), File("top", b"t")]

    rootfs = unpacked(tmp_path, [LOWER, upper])

    assert sorted(os.listdir(rootfs)) == ["srv", "top"]
    assert sorted(os.listdir(rootfs / "srv")) == ["new"]


def test_aufs_bookkeeping_entries_are_ignored(tmp_path: Path, unpacked: Unpacked) -> None:
    rootfs = unpacked(tmp_path, [LOWER, [File("etc/.wh..wh.plnk")]])

    assert sorted(os.listdir(rootfs / "etc")) == ["gone", "keep"]


def test_whiteout_of_the_directory_itself_is_refused(tmp_path: Path, unpacked: Unpacked) -> None:
    with pytest.raises(ImageError, match=r"'etc/\.wh\.\.'"):
        unpacked(tmp_path, [LOWER, [File("etc/.wh..")]])


def test_hardlinks_across_directories_share_one_inode(tmp_path: Path, unpacked: Unpacked) -> None:
    lower: list[Entry] = [Dir("a"), File("a/data", b"shared", mode=0o640)]
    upper: list[Entry] = [
        Dir("b"),
        Hardlink("b/link", "a/data"),
        Hardlink("c/deep/link", "./a/data"),
    ]

    rootfs = unpacked(tmp_path, [lower, upper])

    first = (rootfs / "a/data").stat()
    assert (rootfs / "b/link").stat().st_ino == first.st_ino
    assert (rootfs / "c/deep/link").stat().st_ino == first.st_ino
    assert first.st_nlink == 3
    assert stat.S_IMODE(first.st_mode) == 0o640


def test_hardlink_to_a_missing_file_is_refused(tmp_path: Path, unpacked: Unpacked) -> None:
    with pytest.raises(ImageError, match=r"'b'.*its target 'nothing' does not exist"):
        unpacked(tmp_path, [[Hardlink("b", "nothing")]])


def test_modes_including_setuid_setgid_and_sticky_are_kept(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    layer: list[Entry] = [
        Dir("bin"),
        File("bin/su", b"su", mode=0o4755),
        File("bin/wall", b"wall", mode=0o2755),
        File("secret", b"s", mode=0o000),
        Dir("tmp", mode=0o1777),
        Dir("ro", mode=0o555),
        File("ro/inside", b"written after its directory became read-only"),
    ]

    rootfs = unpacked(tmp_path, [layer])

    def mode(name: str) -> int:
        return stat.S_IMODE((rootfs / name).lstat().st_mode)

    assert mode("bin/su") == 0o4755
    assert mode("bin/wall") == 0o2755
    assert mode("secret") == 0o000
    assert mode("tmp") == 0o1777
    assert mode("ro") == 0o555
    assert (rootfs / "ro/inside").exists()


def test_mtimes_are_kept_for_files_links_and_directories(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    lower: list[Entry] = [Dir("d", mtime=EPOCH + 10), File("d/f", b"f", mtime=EPOCH + 20)]
    upper: list[Entry] = [
        File("d/g", b"g", mtime=EPOCH + 30),
        Symlink("d/l", "f", mtime=EPOCH + 40),
    ]

    rootfs = unpacked(tmp_path, [lower, upper])

    assert (rootfs / "d/f").stat().st_mtime == EPOCH + 20
    assert (rootfs / "d/g").stat().st_mtime == EPOCH + 30
    assert (rootfs / "d/l").lstat().st_mtime == EPOCH + 40
    # The second layer added entries to d, which had its time from the first.
    assert (rootfs / "d").stat().st_mtime == EPOCH + 10


@needs_root
def test_owners_come_from_the_headers(tmp_path: Path, unpacked: Unpacked) -> None:
    layer: list[Entry] = [
        Dir("www", uid=33, gid=33),
        File("www/index.html", b"hi", uid=33, gid=34, mode=0o4750),
        Symlink("www/link", "index.html", uid=35, gid=36),
    ]

    rootfs = unpacked(tmp_path, [layer])

    found = tree(rootfs, owners=True)
    assert found["/www"][-2:] == (33, 33)
    assert found["/www/index.html"][-2:] == (33, 34)
    assert found["/www/index.html"][1] == "0o4750"
    assert found["/www/link"] == ("symlink", "index.html", 35, 36)


def test_symlinks_are_written_verbatim_and_never_followed(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    layer: list[Entry] = [
        Symlink("abs", "/etc/passwd"),
        Symlink("rel", "../../../../x"),
        Symlink("dangling", "nowhere"),
    ]

    rootfs = unpacked(tmp_path, [layer])

    assert os.readlink(rootfs / "abs") == "/etc/passwd"
    assert os.readlink(rootfs / "rel") == "../../../../x"
    assert os.readlink(rootfs / "dangling") == "nowhere"


def test_entries_replace_what_lower_layers_had(tmp_path: Path, unpacked: Unpacked) -> None:
    lower: list[Entry] = [
        File("was-file", b"f"),
        Dir("was-dir"),
        File("was-dir/child", b"c"),
        Symlink("was-link", "target"),
        File("target", b"t"),
    ]
    upper: list[Entry] = [
        Dir("was-file"),
        File("was-dir", b"now a file"),
        File("was-link", b"now a file too"),
    ]

    rootfs = unpacked(tmp_path, [lower, upper])

    assert (rootfs / "was-file").is_dir()
    assert (rootfs / "was-dir").read_bytes() == b"now a file"
    assert not (rootfs / "was-link").is_symlink()
    assert (rootfs / "target").read_bytes() == b"t"


def test_relative_symlinked_directory_inside_the_image_is_followed(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    # usrmerge images: lib -> usr/lib and var/run -> /run, written through by later layers.
    lower: list[Entry] = [
        Dir("usr"),
        Dir("usr/lib"),
        Symlink("lib", "usr/lib"),
        Dir("run"),
        Dir("var"),
        Symlink("var/run", "/run"),
    ]
    upper: list[Entry] = [
        File("lib/libx.so", b"x"),
        File("var/run/app.pid", b"1"),
        Dir("lib/new/sub"),
    ]

    rootfs = unpacked(tmp_path, [lower, upper])

    assert (rootfs / "usr/lib/libx.so").read_bytes() == b"x"
    assert (rootfs / "run/app.pid").read_bytes() == b"1"
    assert (rootfs / "usr/lib/new/sub").is_dir()
    assert os.readlink(rootfs / "lib") == "usr/lib"


def test_device_nodes_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, unpacked: Unpacked
) -> None:
    layer: list[Entry] = [
        Dir("dev"),
        Device("dev/null"),
        Device("dev/zero", 1, 5),
        Device("fifo", fifo=True),
    ]

    with caplog.at_level(logging.WARNING, logger="sdpod.images"):
        rootfs = unpacked(tmp_path, [layer])

    assert os.listdir(rootfs / "dev") == []
    assert stat.S_ISFIFO((rootfs / "fifo").lstat().st_mode)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 device node(s)" in warnings[0].getMessage()


def test_root_entry_sets_the_roots_mode(tmp_path: Path, unpacked: Unpacked) -> None:
    rootfs = unpacked(tmp_path, [[Dir("./", mode=0o750), File("./a")]])

    assert stat.S_IMODE(rootfs.stat().st_mode) == 0o750
    assert (rootfs / "a").exists()


def test_root_entry_that_is_a_file_is_refused(tmp_path: Path, unpacked: Unpacked) -> None:
    with pytest.raises(ImageError, match="the root of the image must be a directory"):
        unpacked(tmp_path, [[File(".", b"x")]])


def test_a_file_as_a_parent_is_refused(tmp_path: Path, unpacked: Unpacked) -> None:
    with pytest.raises(ImageError, match=r"'f/child'.*/f is not a directory"):
        unpacked(tmp_path, [[File("f"), File("f/child")]])


def test_directory_replaced_later_in_its_own_layer(tmp_path: Path, unpacked: Unpacked) -> None:
    layer: list[Entry] = [Dir("a", mode=0o700), Dir("a/b"), File("a", b"now a file", mode=0o600)]

    rootfs = unpacked(tmp_path, [layer])

    assert (rootfs / "a").read_bytes() == b"now a file"
    assert stat.S_IMODE((rootfs / "a").stat().st_mode) == 0o600


def test_extended_attributes_are_kept_where_they_are_the_image_s(
    tmp_path: Path, unpacked: Unpacked, caplog: pytest.LogCaptureFixture
) -> None:
    layer: list[Entry] = [
        Dir("srv"),
        File(
            "srv/tagged",
            b"x",
            xattrs=(
                ("user.origin", "layer one"),
                ("user.overlay.opaque", "y"),
                ("trusted.overlay.whiteout", "y"),
            ),
        ),
    ]

    with caplog.at_level(logging.WARNING):
        rootfs = unpacked(tmp_path, [layer])

    path = rootfs / "srv/tagged"
    assert os.getxattr(path, "user.origin") == b"layer one"
    assert "user.overlay.opaque" not in os.listxattr(path)
    assert "skipped 2 extended attribute(s)" in caplog.text
