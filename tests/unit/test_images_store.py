"""The image store: content-addressed blobs, atomic imports, locking, forked unpacking."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import select
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.imagetest import make_image, needs_root
from support.mkimage import Dir, Entry, File, Symlink
from support.overlayview import materialize

from sdpod.errors import ImageError
from sdpod.images.layout import ImageLayout
from sdpod.images.store import ImageStore
from sdpod.kernel.userns import IdMapping, IdRange, run_in_userns

LAYERS: list[list[Entry]] = [
    [Dir("etc"), File("etc/motd", b"hello")],
    [File("etc/issue", b"sdpod")],
]


def forked(work: Callable[[], None]) -> None:
    """Run `work` in a child process, as the user-namespace runner does: only text returns."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the unpacking child failed")


def test_import_applies_layers_and_keeps_the_config(tmp_path: Path) -> None:
    image = make_image(tmp_path, LAYERS, {"Cmd": ["cat", "/etc/motd"], "Env": ["A=1"]})
    store = ImageStore(tmp_path / "store")

    stored = store.import_layout(image)

    resolved = ImageLayout(image.path).resolve(image.tag)
    base, top = (layer.diff_id for layer in resolved.layers)
    assert base is not None and top is not None
    chain = hashlib.sha256(f"{base} {top}".encode()).hexdigest()
    assert stored.id == resolved.id
    assert stored.layers == (
        tmp_path / "store/layers" / base.hex / "tree",
        tmp_path / "store/layers" / chain / "tree",
    )
    assert stored.lowers == stored.layers[::-1]
    assert (stored.layers[0] / "etc/motd").read_bytes() == b"hello"
    assert sorted(os.listdir(stored.layers[1] / "etc")) == ["issue"]
    merged = materialize(stored.lowers, tmp_path / "merged")
    assert (merged / "etc/motd").read_bytes() == b"hello"
    assert (merged / "etc/issue").read_bytes() == b"sdpod"
    assert stored.config.cmd == ("cat", "/etc/motd")
    assert stored.config.env == (("A", "1"),)
    assert store.get(stored.id) == stored
    assert store.lookup(image) == stored


def test_blobs_are_stored_under_their_digest(tmp_path: Path) -> None:
    image = make_image(tmp_path, LAYERS)
    store = ImageStore(tmp_path / "store")

    store.import_layout(image)

    blobs = sorted(store.blobs.iterdir())
    assert len(blobs) == 4  # manifest, config, two layers
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_second_import_of_the_same_image_is_a_cheap_no_op(tmp_path: Path) -> None:
    image = make_image(tmp_path, LAYERS)
    store = ImageStore(tmp_path / "store")
    first = store.import_layout(image)
    inode = first.layers[-1].stat().st_ino
    # Layers are not read again: an import that needed them would now fail.
    for layer in ImageLayout(image.path).resolve(image.tag).layers:
        (image.path / "blobs/sha256" / layer.descriptor.digest.hex).unlink()

    again = store.import_layout(image)

    assert again == first
    assert again.layers[-1].stat().st_ino == inode


def test_unknown_and_malformed_ids(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")

    assert store.get("sha256:" + "0" * 64) is None
    with pytest.raises(ImageError, match="failed to parse digest"):
        store.get("../../etc")
    assert store.lookup(make_image(tmp_path, LAYERS)) is None


def test_forked_unpack_reports_the_entry_that_failed(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[Symlink("evil", "../../.."), File("evil/x")]])
    store = ImageStore(tmp_path / "store")

    with pytest.raises(ImageError, match=r"entry 'evil/x'.*leads out of the image"):
        store.import_layout(image, unpack=forked)

    assert store.lookup(image) is None


def test_unpack_that_ends_without_finishing_is_not_trusted(tmp_path: Path) -> None:
    def dies(work: Callable[[], None]) -> None:
        pid = os.fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid, 0)  # and, like a careless runner, reports nothing

    image = make_image(tmp_path, LAYERS)
    store = ImageStore(tmp_path / "store")

    with pytest.raises(ImageError, match="the extraction ended unfinished"):
        store.import_layout(image, unpack=dies)

    assert store.lookup(image) is None


def test_interrupted_import_leaves_nothing_trusted_and_is_cleaned_next_time(
    tmp_path: Path,
) -> None:
    def interrupted(work: Callable[[], None]) -> None:
        work()
        raise KeyboardInterrupt

    image = make_image(tmp_path, LAYERS)
    store = ImageStore(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        store.import_layout(image, unpack=interrupted)
    assert store.lookup(image) is None
    assert len(os.listdir(store.tmp)) == 2  # the staging directory of each layer
    assert not (store.root / "layers").exists() or os.listdir(store.root / "layers") == []
    (store.blobs / ".tmp-half-written").write_bytes(b"x")

    stored = store.import_layout(image, unpack=forked)

    assert (stored.layers[0] / "etc/motd").read_bytes() == b"hello"
    assert os.listdir(store.tmp) == []
    assert not (store.blobs / ".tmp-half-written").exists()


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "store").mkdir()
    fd = os.open(tmp_path / "store/lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


def test_import_waits_for_the_store_lock(tmp_path: Path, held_lock: int) -> None:
    image = make_image(tmp_path, LAYERS)
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ImageStore(tmp_path / "store").import_layout(image)
            os.write(done_w, b"1")
        finally:
            os._exit(0)
    os.close(done_w)

    waiting, _, _ = select.select([done_r], [], [], 0.5)
    fcntl.flock(held_lock, fcntl.LOCK_UN)
    finished, _, _ = select.select([done_r], [], [], 10)

    os.waitpid(pid, 0)
    assert waiting == []
    assert finished == [done_r]
    assert os.read(done_r, 1) == b"1"
    assert ImageStore(tmp_path / "store").lookup(image) is not None


@needs_root
def test_owner_the_namespace_cannot_map_is_named_with_a_hint() -> None:
    # Without a user namespace an unprivileged process can give files only its own ids,
    # which is what a user without subordinate ids gets.
    base = Path(tempfile.mkdtemp(prefix="sdpod-unmapped-"))
    try:
        os.chmod(base, 0o777)
        image = make_image(base, [[File("www", b"x", uid=33, gid=33)]])
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                ImageStore(base / "store").import_layout(image)
            except ImageError as exc:
                os.write(report_w, f"{exc}\n{exc.hint}".encode())
            finally:
                os._exit(0)
        os.close(report_w)
        report = os.read(report_r, 65536).decode()
        os.waitpid(pid, 0)
    finally:
        shutil.rmtree(base)

    assert "entry 'www'" in report
    assert "owner 33:33" in report
    assert "/etc/subuid and /etc/subgid" in report


def userns_runner(uids: tuple[IdRange, ...]) -> Callable[[Callable[[], None]], None]:
    """sdpod's own user-namespace runner; ns root is host root, as the user is rootless."""
    mapping = IdMapping(uids=uids, gids=uids)
    return functools.partial(run_in_userns, mapping)


@pytest.mark.namespaces
@needs_root
def test_unpack_in_a_user_namespace_maps_the_owners(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[Dir("www", uid=33, gid=33), File("www/i", b"i", uid=33)]])
    runner = userns_runner((IdRange(0, 0, 1), IdRange(1, 200000, 65536)))

    stored = ImageStore(tmp_path / "store").import_layout(image, unpack=runner)

    www = (stored.layers[0] / "www").stat()
    assert (www.st_uid, www.st_gid) == (200032, 200032)
    assert (stored.layers[0] / "www/i").stat().st_uid == 200032


@pytest.mark.namespaces
@needs_root
def test_single_id_namespace_names_the_unmappable_owner(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("www", b"x", uid=33, gid=33)]])
    store = ImageStore(tmp_path / "store")

    with pytest.raises(ImageError) as caught:
        store.import_layout(image, unpack=userns_runner((IdRange(0, 0, 1),)))

    assert "entry 'www'" in str(caught.value)
    assert "owner 33:33" in str(caught.value)
    assert caught.value.hint is not None and "/etc/subuid" in caught.value.hint
