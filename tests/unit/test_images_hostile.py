"""Hostile layers: no entry may write, link or delete outside the root filesystem.

Each attack runs against both unpackers: the layers applied onto one tree at
tmp_path/w/h/o/rootfs, and layer by layer into the store's trees, each made at
tmp_path/store/tmp/<staging>/tree. From either, `../../../../outside` is the sentinel
directory tmp_path/outside: each attack aims at a real target, and each test checks
that the sentinel and everything else outside the root stayed as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support.imagetest import UNPACKERS, WHOLE, Unpacked
from support.mkimage import Dir, Entry, File, Hardlink, Opaque, Symlink, Whiteout
from support.trees import all_paths, tree

from sdpod.errors import ImageError

UP = "../../../../outside"  # from the root filesystem up to the sentinel

Layers = list[list[Entry]]


@pytest.fixture(params=sorted(UNPACKERS))
def unpacked(request: pytest.FixtureRequest) -> Unpacked:
    return UNPACKERS[request.param]


def sentinel(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    os.utime(outside / "keep", (1, 1))
    return outside


def writes_outside_the_root(tmp_path: Path, before: set[str]) -> list[str]:
    """New paths under tmp_path that are not the store's own or inside a root filesystem."""
    whole = WHOLE.parts
    bad = []
    for path in sorted(all_paths(tmp_path) - before):
        parts = path.split("/")
        if parts[0] == "layout" or path in (
            "store",
            "store/lock",
            "store/gc.lock",
            "store/images",
            "store/layers",
        ):
            continue
        if tuple(parts[: len(whole)]) == whole or tuple(parts) == whole[: len(parts)]:
            continue
        if parts[:2] in (["store", "blobs"], ["store", "tmp"]) and len(parts) <= 3:
            continue
        if parts[:2] == ["store", "blobs"] and parts[2] == "sha256":
            continue
        if parts[:2] == ["store", "tmp"] and parts[3] in ("tree", "error.json", "unpacked"):
            continue
        bad.append(path)
    return bad


def assert_refused(tmp_path: Path, layers: Layers, entry: str, unpacked: Unpacked) -> ImageError:
    outside = tmp_path / "outside"
    kept = tree(outside)
    keep_stat = (outside / "keep").stat()
    before = all_paths(tmp_path)

    with pytest.raises(ImageError) as caught:
        unpacked(tmp_path, layers)

    assert f"entry {entry!r}" in str(caught.value)
    assert tree(outside) == kept
    assert (outside / "keep").stat().st_mtime == keep_stat.st_mtime
    assert writes_outside_the_root(tmp_path, before) == []
    for trusted in ("store/images", "store/layers"):
        assert not (tmp_path / trusted).exists() or os.listdir(tmp_path / trusted) == []
    return caught.value


CASES: dict[str, tuple[Callable[[Path], Layers], str]] = {
    "dotdot": (lambda s: [[File(f"{UP}/escape")]], f"{UP}/escape"),
    "dotdot-inside-name": (lambda s: [[Dir("a"), File("a/../../x")]], "a/../../x"),
    "absolute": (lambda s: [[File(f"{s}/abs")]], "{s}/abs"),
    "symlink-absolute-then-file": (
        lambda s: [[Symlink("evil", str(s)), File("evil/file")]],
        "evil/file",
    ),
    "symlink-tmp-outside-then-file": (
        lambda s: [[Symlink("evil", "/tmp/outside"), File("evil/file")]],
        "evil/file",
    ),
    "symlink-relative-escape": (
        lambda s: [[Symlink("evil", UP), File("evil/file")]],
        "evil/file",
    ),
    "symlink-climbs-above-root": (
        lambda s: [[Dir("a"), Symlink("a/up", "../.."), File("a/up/x")]],
        "a/up/x",
    ),
    "symlink-from-layer-1-used-in-layer-2": (
        lambda s: [[Symlink("evil", UP)], [File("evil/file")]],
        "evil/file",
    ),
    "absolute-symlink-from-layer-1-as-parent-dir": (
        lambda s: [[Symlink("evil", str(s))], [Dir("evil/sub")]],
        "evil/sub",
    ),
    "symlinked-parent-of-a-symlinked-parent": (
        lambda s: [[Dir("a"), Symlink("a/b", "../c"), Symlink("c", UP)], [File("a/b/f")]],
        "a/b/f",
    ),
    "symlink-chain-across-three-layers": (
        lambda s: [[Symlink("c", UP)], [Dir("a"), Symlink("a/b", "../c")], [File("a/b/f")]],
        "a/b/f",
    ),
    "directory-replaced-by-a-symlink-in-a-later-layer": (
        lambda s: [[Dir("d"), File("d/x")], [Symlink("d", str(s))], [File("d/y")]],
        "d/y",
    ),
    "hardlink-through-a-lower-layers-symlink": (
        lambda s: [[Symlink("up", UP)], [Hardlink("k", "up/keep")]],
        "k",
    ),
    "hardlink-absolute": (lambda s: [[Hardlink("pw", "/etc/passwd")]], "pw"),
    "hardlink-dotdot": (lambda s: [[Hardlink("x", "../../x")]], "x"),
    "hardlink-through-escaping-symlink": (
        lambda s: [[Symlink("up", UP), Hardlink("k", "up/keep")]],
        "k",
    ),
    "hardlink-through-absolute-symlink": (
        lambda s: [[Symlink("up", str(s)), Hardlink("k", "up/keep")]],
        "k",
    ),
    "whiteout-through-symlink": (
        lambda s: [[Symlink("evil", UP)], [Whiteout("evil/keep")]],
        "evil/.wh.keep",
    ),
    "opaque-through-symlink": (
        lambda s: [[Symlink("evil", str(s))], [Opaque("evil")]],
        "evil/.wh..wh..opq",
    ),
    "whiteout-of-parent": (lambda s: [[Dir("a"), File("a/.wh...")]], "a/.wh..."),
    "symlink-loop": (
        lambda s: [[Symlink("a", "b"), Symlink("b", "a"), File("a/x")]],
        "a/x",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_entry_is_refused_and_nothing_outside_changes(
    tmp_path: Path, case: str, unpacked: Unpacked
) -> None:
    outside = sentinel(tmp_path)
    make, entry = CASES[case]

    assert_refused(tmp_path, make(outside), entry.replace("{s}", str(outside)), unpacked)


def test_escape_error_says_why(tmp_path: Path, unpacked: Unpacked) -> None:
    sentinel(tmp_path)

    error = assert_refused(
        tmp_path, [[Symlink("evil", UP), File("evil/file")]], "evil/file", unpacked
    )

    assert "leads out of the image" in str(error)


def test_host_target_of_an_absolute_symlink_is_untouched(
    tmp_path: Path, unpacked: Unpacked
) -> None:
    host = Path("/tmp/outside")
    existed = host.exists()
    sentinel(tmp_path)

    assert_refused(
        tmp_path, [[Symlink("evil", str(host)), File("evil/file")]], "evil/file", unpacked
    )

    assert host.exists() == existed
    assert not (host / "file").exists()


def test_file_over_a_symlink_replaces_the_link(tmp_path: Path, unpacked: Unpacked) -> None:
    outside = sentinel(tmp_path)
    layers: Layers = [[Symlink("f", f"{UP}/keep")], [File("f", b"mine", mode=0o777)]]

    rootfs = unpacked(tmp_path, layers)

    assert (rootfs / "f").read_bytes() == b"mine"
    assert not (rootfs / "f").is_symlink()
    assert (outside / "keep").read_bytes() == b"keep"
    assert (outside / "keep").stat().st_mode & 0o777 != 0o777


def test_directory_over_a_symlink_replaces_the_link(tmp_path: Path, unpacked: Unpacked) -> None:
    outside = sentinel(tmp_path)
    mode = outside.stat().st_mode
    layers: Layers = [[Symlink("d", str(outside))], [Dir("d", mode=0o777)]]

    rootfs = unpacked(tmp_path, layers)

    assert (rootfs / "d").is_dir() and not (rootfs / "d").is_symlink()
    assert outside.stat().st_mode == mode


def test_absolute_symlink_resolves_inside_the_image(tmp_path: Path, unpacked: Unpacked) -> None:
    outside = sentinel(tmp_path)
    layers: Layers = [
        [Dir("tmp"), Dir("tmp/outside"), Symlink("evil", "/tmp/outside")],
        [File("evil/file", b"inside")],
    ]

    rootfs = unpacked(tmp_path, layers)

    assert (rootfs / "tmp/outside/file").read_bytes() == b"inside"
    assert os.listdir(outside) == ["keep"]


def test_hardlink_to_a_symlink_links_the_symlink_itself(tmp_path: Path, unpacked: Unpacked) -> None:
    links = os.stat("/etc/passwd").st_nlink

    rootfs = unpacked(tmp_path, [[Symlink("s", "/etc/passwd"), Hardlink("h", "s")]])

    assert os.readlink(rootfs / "h") == "/etc/passwd"
    assert os.stat("/etc/passwd").st_nlink == links
