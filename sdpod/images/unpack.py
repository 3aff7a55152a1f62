"""Applying image layers: all of them onto one root filesystem, or one into a tree of its own.

Each layer is a tar archive of changes (OCI image spec, "Image Layer Filesystem
Changeset"): entries add or replace paths; `.wh.NAME` deletes NAME and `.wh..wh..opq`
empties its directory, both only of what lower layers put there. That rule makes the
result independent of where a marker sits in the archive, so each layer remembers the
paths it wrote and the markers spare those.

`unpack_layers` applies layers one after the other onto one tree (`sdpod image unpack`,
umoci's layout), deleting what the markers delete. `unpack_layer` applies one layer
into a tree of its own, over the trees of the layers below it (`sdpod.images.layered`),
and records each deletion instead, as overlayfs reads it: a whiteout device for a name
deleted, an opaque directory for one emptied. Mounted over those lower trees, it shows
exactly what `unpack_layers` writes.

Every path goes through `RootDir` or `LayeredRoot`, so no entry reaches outside the
root. Owners come from the tar headers; this runs in a user namespace mapped through the
user's subordinate ids, or as root. Extended attributes of the archive are not applied:
none of them can then make a tree say more to overlayfs than its markers did.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import logging
import os
import shutil
import stat
import sys
import tarfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

from sdpod.errors import ImageError
from sdpod.images.digest import CHUNK, Digest, HashingReader, Readable
from sdpod.images.layered import LayeredRoot
from sdpod.images.rootpath import Parent, RealPath, RootDir
from sdpod.kernel import overlay

log = logging.getLogger(__name__)

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

SUBID_HINT = (
    "the image has files owned by ids your user namespace cannot map; give your user "
    "subordinate id ranges in /etc/subuid and /etc/subgid (usermod --add-subuids "
    "100000-165535 --add-subgids 100000-165535 USER)"
)


XATTR_PAX_PREFIX = "SCHILY.xattr."


def is_image_xattr(name: str) -> bool:
    """Whether an image may set this extended attribute: user attributes and file
    capabilities, but never overlayfs's own markers (a layer could fake whiteouts with
    them) nor trusted or security labels, which belong to the host."""
    if name.startswith(("user.overlay.", "trusted.", "security.")):
        return name == "security.capability"
    return name.startswith("user.")


@dataclass(frozen=True)
class LayerFile:
    """A verified layer blob on disk, and the digest of its tar when the image names it."""

    path: Path
    digest: str
    diff_id: Digest | None = None


@dataclass
class Skipped:
    """Device nodes left out: a container gets its devices from the runtime."""

    devices: list[str] = field(default_factory=list)
    xattrs: list[str] = field(default_factory=list)

    def warn(self) -> None:
        """Say once what was left out."""
        if self.xattrs:
            log.warning(
                "skipped %d extended attribute(s), first %r: not the image's to set, or "
                "not taken by this file system",
                len(self.xattrs),
                self.xattrs[0],
            )
        if self.devices:
            log.warning(
                "skipped %d device node(s), first %r: devices come from the runtime, not the image",
                len(self.devices),
                self.devices[0],
            )


def unpack_layers(rootfs: Path, layers: Sequence[LayerFile]) -> None:
    """Apply `layers` in order onto the directory `rootfs`, which must exist."""
    root = RootDir(rootfs)
    skipped = Skipped()
    try:
        for layer in layers:
            _Layer(root, layer, skipped).apply()
    finally:
        root.close()
    skipped.warn()


def unpack_layer(tree: Path, layer: LayerFile, lowers: Sequence[Path], skipped: Skipped) -> None:
    """Apply `layer` into the empty directory `tree`, over the trees `lowers` (top
    first) of the layers below it, recording what it deletes as overlayfs reads it.
    Device nodes left out are added to `skipped`, for the caller to say once."""
    root = LayeredRoot(tree, lowers)
    try:
        _Layer(root, layer, skipped).apply()
    finally:
        root.close()


def split_name(name: str, entry: str, what: str = "its path") -> RealPath:
    """The components of an archive path; refuse absolute paths and `..`.

    `entry` names the entry in errors (quoted, with its layer), `what` the path checked.
    """
    if name.startswith("/"):
        raise ImageError(f"failed to unpack entry {entry}: {what} {name!r} is absolute")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ImageError(f"failed to unpack entry {entry}: {what} {name!r} contains '..'")
    return parts


def _open_layer(path: Path) -> tuple[BinaryIO, Readable]:
    """Open a layer blob; return the raw file and a stream of its uncompressed tar."""
    raw = path.open("rb")
    magic = raw.read(4)
    raw.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    if magic == _ZSTD_MAGIC:
        # Imported here: only zstd layers pay for loading the decoder.
        import zstandard

        return raw, zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw, raw


def _read_errors() -> tuple[type[Exception], ...]:
    """What reading a damaged layer raises; zstd's error only once its decoder was loaded."""
    errors: tuple[type[Exception], ...] = (tarfile.TarError, EOFError, zlib.error, OSError)
    zstandard = sys.modules.get("zstandard")
    return (*errors, zstandard.ZstdError) if zstandard is not None else errors


class _Layer:
    """The application of one layer; remembers what the layer itself wrote."""

    def __init__(self, root: RootDir | LayeredRoot, layer: LayerFile, skipped: Skipped) -> None:
        self.root = root
        self.layer = layer
        self.skipped = skipped
        # Deletions are recorded as markers in the layer's own tree, not carried out.
        self.layered = isinstance(root, LayeredRoot)
        self.ours: set[RealPath] = set()
        self.dir_attrs: dict[RealPath, tuple[int, int]] = {}
        self.lower_mtimes: dict[RealPath, int] = {}
        self.root_opaque = False

    def apply(self) -> None:
        raw, stream = _open_layer(self.layer.path)
        with raw:
            reader = HashingReader(stream)
            try:
                # Stream mode ("r|") only ever calls read(), which is all the reader has.
                tar_stream = cast(IO[bytes], reader)
                with tarfile.open(fileobj=tar_stream, mode="r|") as tar:
                    for member in tar:
                        _Entry(self, tar, member).apply()
                reader.drain()
            except _read_errors() as exc:
                raise ImageError(f"failed to read layer {self.layer.digest}: {exc}") from None
        self.check_diff_id(reader)
        if self.root_opaque:
            self.hide_lower_root()
        self.finish_dirs()

    def check_diff_id(self, reader: HashingReader) -> None:
        expected = self.layer.diff_id
        if expected is not None and reader.digest != expected:
            raise ImageError(
                f"failed to verify layer {self.layer.digest}: its tar hashes to {reader.digest}, "
                f"the image config expects {expected}"
            )

    def claim(self, real: RealPath) -> None:
        """Record that this layer wrote `real`, and so holds each directory above it."""
        while real not in self.ours:
            self.ours.add(real)
            if not real:
                return
            real = real[:-1]

    def note_parent(self, parent: Parent) -> None:
        """Remember a lower directory's mtime before this layer changes what it holds."""
        if parent.real not in self.ours and parent.real not in self.lower_mtimes:
            self.lower_mtimes[parent.real] = os.fstat(parent.fd).st_mtime_ns

    def prune_lower(self, fd: int, real: RealPath) -> None:
        """Remove what lower layers put beneath the directory `fd`, keeping this layer's."""
        for name in os.listdir(fd):
            child = (*real, name)
            if child not in self.ours:
                _remove(fd, name)
                continue
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                try:
                    self.prune_lower(sub, child)
                finally:
                    os.close(sub)

    def hide_lower_root(self) -> None:
        """Empty the root of lower content, in a layer's own tree: overlayfs never reads
        an opaque xattr on a layer's root, so each name below gets a whiteout, and each
        directory this layer put at the root becomes opaque itself."""
        assert isinstance(self.root, LayeredRoot)
        top = self.root.fd
        below = {name for fd in self.root.lower_fds for name in _listdir(fd)}
        for name in sorted(below - set(os.listdir(top))):
            overlay.make_whiteout(top, name)
        for name in os.listdir(top):
            if _is_dir(top, name):
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
                try:
                    overlay.set_opaque(fd)
                finally:
                    os.close(fd)

    def finish_dirs(self) -> None:
        """Give directories their final mode and mtime, deepest first.

        Adding entries changes a directory's mtime and a read-only mode would block them,
        so both wait until the layer is complete. A directory copied up from a lower
        layer takes that one's, unless this layer gives it its own.
        """
        attrs = {**self.root.copied, **self.dir_attrs}
        paths = sorted(attrs.keys() | self.lower_mtimes.keys(), key=len, reverse=True)
        for real in paths:
            try:
                fd = self.open_real_dir(real)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # a later entry of the layer removed or replaced it
                raise
            try:
                if real in attrs:
                    mode, mtime = attrs[real]
                    os.chmod(fd, mode)
                else:
                    mtime = self.lower_mtimes[real]
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)

    def open_real_dir(self, real: RealPath) -> int:
        label = "/" + "/".join(real)
        with self.root.directory(real[:-1], label, follow=False) as parent:
            name = real[-1] if real else "."
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent.fd)


class _Entry:
    """One archive member being applied."""

    def __init__(self, layer: _Layer, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.layer = layer
        self.tar = tar
        self.member = member
        self.name = member.name
        self.label = f"{member.name!r} of layer {layer.layer.digest}"
        self.mtime = int(member.mtime * 1_000_000_000)

    def fail(self, reason: str, hint: str | None = None) -> ImageError:
        return ImageError(f"failed to unpack entry {self.label}: {reason}", hint)

    def apply(self) -> None:
        parts = split_name(self.name, self.label)
        try:
            if not parts:
                self.root_dir()
            elif self.member.ischr() or self.member.isblk():
                self.layer.skipped.devices.append(self.name)
            else:
                self.place(parts)
        except ImageError:
            raise
        except FileNotFoundError as exc:
            raise self.fail(f"{exc.filename} does not exist") from None
        except (OSError, ValueError) as exc:
            raise self.fail(str(exc)) from None

    def root_dir(self) -> None:
        if not self.member.isdir():
            raise self.fail("the root of the image must be a directory")
        self.own(self.layer.root.fd)
        self.layer.dir_attrs[()] = (self.member.mode & 0o7777, self.mtime)

    def place(self, parts: RealPath) -> None:
        base = parts[-1]
        with self.layer.root.directory(parts[:-1], self.label, create=True) as parent:
            self.layer.note_parent(parent)
            if base == OPAQUE:
                self.opaque(parent)
            elif base.startswith(WHITEOUT):
                self.whiteout(parent, base[len(WHITEOUT) :])
            else:
                self.create(parent, base)

    def opaque(self, parent: Parent) -> None:
        self.layer.claim(parent.real)
        if self.layer.layered:
            if parent.real:
                overlay.set_opaque(parent.fd)
            else:
                self.layer.root_opaque = True
            return
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent.fd)
        try:
            self.layer.prune_lower(fd, parent.real)
        finally:
            os.close(fd)

    def whiteout(self, parent: Parent, name: str) -> None:
        self.layer.claim(parent.real)
        if name.startswith(WHITEOUT):
            return  # aufs keeps its own bookkeeping under `.wh..wh.`; it hides nothing
        if name in ("", ".", ".."):
            raise self.fail("a whiteout must name an entry of its directory")
        if (*parent.real, name) not in self.layer.ours:
            _remove(parent.fd, name)
            if self.layer.layered:
                overlay.make_whiteout(parent.fd, name)
            return
        # This layer wrote `name` itself: only what lower layers put beneath it goes.
        if not _is_dir(parent.fd, name):
            return
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent.fd)
        try:
            if self.layer.layered:
                overlay.set_opaque(fd)
            else:
                self.layer.prune_lower(fd, (*parent.real, name))
        finally:
            os.close(fd)

    def create(self, parent: Parent, base: str) -> None:
        member = self.member
        if member.isdir():
            self.make_dir(parent, base)
        elif member.issym():
            self.make_symlink(parent, base)
        elif member.islnk():
            self.make_hardlink(parent, base)
        elif member.isfifo():
            self.make_fifo(parent, base)
        else:
            self.make_file(parent, base)
        self.layer.claim((*parent.real, base))

    def make_dir(self, parent: Parent, base: str) -> None:
        replaced = False
        if not _is_dir(parent.fd, base):
            # In a layer's own tree, a directory made where the layer put a whiteout or a
            # non-directory before is opaque: what it replaced hid the lower one.
            replaced = self.layer.layered and _exists(parent.fd, base)
            _remove(parent.fd, base)
            os.mkdir(base, 0o700, dir_fd=parent.fd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent.fd)
        try:
            if replaced:
                overlay.set_opaque(fd)
            self.own(fd)
            self.set_xattrs(fd)
        finally:
            os.close(fd)
        self.layer.dir_attrs[(*parent.real, base)] = (self.member.mode & 0o7777, self.mtime)

    def make_file(self, parent: Parent, base: str) -> None:
        _remove(parent.fd, base)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent.fd)
        with os.fdopen(fd, "wb") as out:
            source = self.tar.extractfile(self.member)
            if source is not None:
                shutil.copyfileobj(source, out, CHUNK)
            out.flush()
            self.own(fd)
            # chown(2) clears file capabilities, and set-user-ID and set-group-ID bits:
            # the extended attributes and the mode come after it.
            self.set_xattrs(fd)
            os.chmod(fd, self.member.mode & 0o7777)
            os.utime(fd, ns=(self.mtime, self.mtime))

    def make_symlink(self, parent: Parent, base: str) -> None:
        _remove(parent.fd, base)
        os.symlink(self.member.linkname, base, dir_fd=parent.fd)
        self.own_name(parent.fd, base)
        os.utime(base, ns=(self.mtime, self.mtime), dir_fd=parent.fd, follow_symlinks=False)

    def make_fifo(self, parent: Parent, base: str) -> None:
        _remove(parent.fd, base)
        os.mkfifo(base, 0o600, dir_fd=parent.fd)
        self.own_name(parent.fd, base)
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW, dir_fd=parent.fd)
        try:
            # fchmod(2) refuses O_PATH descriptors; the /proc alias of one does not.
            os.chmod(f"/proc/self/fd/{fd}", self.member.mode & 0o7777)
        finally:
            os.close(fd)
        os.utime(base, ns=(self.mtime, self.mtime), dir_fd=parent.fd, follow_symlinks=False)

    def make_hardlink(self, parent: Parent, base: str) -> None:
        """Link to a path already in the root; tar gives a hard link no metadata of its own."""
        linkname = self.member.linkname
        target = split_name(linkname, self.label, "its link target")
        if not target:
            raise self.fail("a hard link cannot point at the root directory")
        try:
            with self.layer.root.locate(target, self.label) as source:
                self.link_from(source, target[-1], parent, base)
        except FileNotFoundError:
            raise self.fail(f"its target {linkname!r} does not exist") from None

    def link_from(self, source: Parent, src: str, parent: Parent, base: str) -> None:
        if (*source.real, src) == (*parent.real, base):
            return
        st = os.stat(src, dir_fd=source.fd, follow_symlinks=False)  # missing: caller says so
        if stat.S_ISDIR(st.st_mode):
            raise self.fail(f"its target {self.member.linkname!r} is a directory")
        _remove(parent.fd, base)
        os.link(src, base, src_dir_fd=source.fd, dst_dir_fd=parent.fd, follow_symlinks=False)

    def set_xattrs(self, fd: int) -> None:
        """The entry's extended attributes (PAX `SCHILY.xattr.NAME`), where they are the
        image's to give and the file system takes them; the rest are skipped, with one
        warning for the image."""
        for key, value in self.member.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            name = key.removeprefix(XATTR_PAX_PREFIX)
            if not is_image_xattr(name):
                self.layer.skipped.xattrs.append(f"{self.label}: {name}")
                continue
            try:
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.E2BIG):
                    raise
                self.layer.skipped.xattrs.append(f"{self.label}: {name}")

    def own(self, fd: int) -> None:
        self.chown(lambda: os.chown(fd, self.member.uid, self.member.gid))

    def own_name(self, dir_fd: int, base: str) -> None:
        uid, gid = self.member.uid, self.member.gid
        self.chown(lambda: os.chown(base, uid, gid, dir_fd=dir_fd, follow_symlinks=False))

    def chown(self, call: Callable[[], None]) -> None:
        try:
            call()
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
            raise self.fail(
                f"cannot give it owner {self.member.uid}:{self.member.gid}: {exc.strerror}",
                hint=SUBID_HINT,
            ) from None


def _is_dir(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _listdir(dir_fd: int) -> list[str]:
    """The names in a directory open as O_PATH, which listdir cannot read itself."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _remove(dir_fd: int, name: str) -> None:
    """Remove `name` from the directory `dir_fd`, a directory with all it holds."""
    if _is_dir(dir_fd, name):
        shutil.rmtree(name, dir_fd=dir_fd)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
