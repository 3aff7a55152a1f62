"""Build small OCI image layouts for tests, byte for byte reproducible.

Standard library only, so that it runs anywhere a test or a person needs an image:

    python3 tests/support/mkimage.py busybox DEST [TAG]

writes an OCI image layout at DEST holding a busybox image tagged TAG (default `latest`),
readable by `skopeo inspect oci:DEST:TAG` and `umoci unpack --image DEST:TAG`.

Entries are written in the order given, with fixed times and no user or group names, and
JSON is written with sorted keys, so the same input always gives the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# 2000-01-01T00:00:00Z: any fixed time will do; a non-zero one shows that mtimes are kept.
EPOCH = 946684800

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

# uname machine -> (GOARCH, variant), the names image platforms use.
_MACHINE_ARCH = {
    "x86_64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "i386": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}

BUSYBOX_APPLETS = (
    "cat",
    "echo",
    "false",
    "hostname",
    "httpd",
    "id",
    "ls",
    "mount",
    "nc",
    "ps",
    "sh",
    "sleep",
    "stty",
    "true",
    "tty",
    "wget",
)


@dataclass(frozen=True)
class File:
    path: str
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = EPOCH
    xattrs: tuple[tuple[str, str], ...] = ()  # PAX SCHILY.xattr records


@dataclass(frozen=True)
class Dir:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int = EPOCH


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str
    uid: int = 0
    gid: int = 0
    mtime: int = EPOCH


@dataclass(frozen=True)
class Hardlink:
    """A second name for `target`, a path earlier in the archive (or a lower layer)."""

    path: str
    target: str


@dataclass(frozen=True)
class Whiteout:
    """Deletes `path` from the layers below: written as `<dir>/.wh.<name>`."""

    path: str


@dataclass(frozen=True)
class Opaque:
    """Hides everything lower layers put in `directory`: `<directory>/.wh..wh..opq`."""

    directory: str


@dataclass(frozen=True)
class Device:
    """A character device node (type `c`), or a FIFO when `fifo` is set."""

    path: str
    major: int = 1
    minor: int = 3
    mode: int = 0o666
    fifo: bool = False


Entry = File | Dir | Symlink | Hardlink | Whiteout | Opaque | Device


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, str] | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    @property
    def blob_name(self) -> str:
        return self.digest.split(":", 1)[1]


def machine_platform() -> dict[str, str]:
    """This machine's platform as an image index writes it."""
    machine = platform.machine()
    arch, variant = _MACHINE_ARCH.get(machine, (machine, ""))
    out = {"os": "linux", "architecture": arch}
    if variant:
        out["variant"] = variant
    return out


def _join(directory: str, name: str) -> str:
    return name if directory in ("", ".", "/") else f"{directory.rstrip('/')}/{name}"


def _split(path: str) -> tuple[str, str]:
    head, _, tail = path.rstrip("/").rpartition("/")
    return head, tail


def _tarinfo(entry: Entry) -> tuple[tarfile.TarInfo, bytes | None]:
    """The header (and content, for regular files) that stands for one entry."""
    if isinstance(entry, Whiteout):
        head, tail = _split(entry.path)
        return _tarinfo(File(_join(head, ".wh." + tail)))
    if isinstance(entry, Opaque):
        return _tarinfo(File(_join(entry.directory, ".wh..wh..opq")))
    info = tarfile.TarInfo(entry.path)
    info.mtime = EPOCH
    if isinstance(entry, File):
        info.type, info.size, info.mode = tarfile.REGTYPE, len(entry.content), entry.mode
        info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
        info.pax_headers = {f"SCHILY.xattr.{name}": value for name, value in entry.xattrs}
        return info, entry.content
    if isinstance(entry, Dir):
        info.type, info.mode = tarfile.DIRTYPE, entry.mode
        info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
    elif isinstance(entry, Symlink):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
        info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
    elif isinstance(entry, Hardlink):
        info.type, info.linkname, info.mode = tarfile.LNKTYPE, entry.target, 0o644
    else:
        info.type = tarfile.FIFOTYPE if entry.fifo else tarfile.CHRTYPE
        info.devmajor, info.devminor, info.mode = entry.major, entry.minor, entry.mode
    return info, None


def layer_tar(entries: Sequence[Entry]) -> bytes:
    """An uncompressed layer holding `entries` in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info, content = _tarinfo(entry)
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a file name or a time in the header, so equal input gives equal output."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", filename="", mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout being written: blobs go to disk at once, index.json on `save`."""

    def __init__(self, dest: Path) -> None:
        self.dest = Path(dest)
        self.blobs = self.dest / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests: list[Descriptor] = []

    def blob_path(self, descriptor: Descriptor) -> Path:
        return self.blobs / descriptor.blob_name

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        descriptor = Descriptor(media_type, sha256(data), len(data))
        self.blob_path(descriptor).write_bytes(data)
        return descriptor

    def add_json(self, document: dict[str, Any], media_type: str) -> Descriptor:
        return self.add_blob(_json_bytes(document), media_type)

    def add_image(
        self,
        layers: Sequence[Sequence[Entry]],
        config: dict[str, Any],
        platform: dict[str, str] | None = None,
        compress: bool = True,
    ) -> Descriptor:
        """Write layers, config and manifest; return the manifest's descriptor."""
        plat = platform or machine_platform()
        descriptors, diff_ids = [], []
        for entries in layers:
            tar = layer_tar(entries)
            diff_ids.append(sha256(tar))
            if compress:
                descriptors.append(self.add_blob(gzip_bytes(tar), MEDIA_LAYER_GZIP))
            else:
                descriptors.append(self.add_blob(tar, MEDIA_LAYER))
        image_config: dict[str, Any] = {
            "created": "2000-01-01T00:00:00Z",
            "architecture": plat["architecture"],
            "os": plat["os"],
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "mkimage"} for _ in layers],
        }
        if "variant" in plat:
            image_config["variant"] = plat["variant"]
        config_desc = self.add_json(image_config, MEDIA_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [d.to_json() for d in descriptors],
        }
        return self.add_json(manifest, MEDIA_MANIFEST)

    def add_index(self, manifests: list[Descriptor]) -> Descriptor:
        """Write an image index over `manifests` (give each its `platform`)."""
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [d.to_json() for d in manifests],
        }
        return self.add_json(index, MEDIA_INDEX)

    def tag(self, descriptor: Descriptor, name: str) -> None:
        annotations = {**descriptor.annotations, REF_NAME: name}
        self.manifests.append(
            Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, None, annotations)
        )

    def save(self) -> None:
        (self.dest / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [d.to_json() for d in self.manifests],
        }
        (self.dest / "index.json").write_bytes(_json_bytes(index))


def build_layout(
    dest: Path,
    tag: str,
    layers: Sequence[Sequence[Entry]],
    config: dict[str, Any],
    platform: dict[str, str] | None = None,
    compress: bool = True,
) -> Descriptor:
    """Write a one-image OCI layout at `dest`; return the manifest's descriptor.

    `config` is the image config's `config` object (Cmd, Entrypoint, Env, WorkingDir,
    User); the platform defaults to this machine's.
    """
    layout = Layout(dest)
    manifest = layout.add_image(layers, config, platform, compress)
    layout.tag(manifest, tag)
    layout.save()
    return manifest


def busybox_entries(busybox: Path = Path("/bin/busybox")) -> list[Entry]:
    """The one layer of the busybox test image, sorted by path."""
    entries: list[Entry] = [
        Dir(name) for name in ("bin", "dev", "etc", "proc", "sys", "var", "www")
    ]
    entries += [Dir("root", mode=0o700), Dir("tmp", mode=0o1777)]
    entries.append(File("bin/busybox", busybox.read_bytes(), mode=0o755))
    entries += [Symlink(f"bin/{applet}", "busybox") for applet in BUSYBOX_APPLETS]
    passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\n"
    entries.append(File("etc/passwd", passwd.encode()))
    entries.append(File("etc/group", b"root:x:0:\nwww:x:33:\n"))
    entries.append(File("www/index.html", b"hello from sdpod\n"))
    return sorted(entries, key=_entry_path)


def _entry_path(entry: Entry) -> str:
    return entry.directory if isinstance(entry, Opaque) else entry.path


BUSYBOX_CONFIG: dict[str, Any] = {
    "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"],
    "Env": ["PATH=/bin"],
    "WorkingDir": "/",
}


def build_busybox_image(dest: Path, tag: str = "latest") -> Descriptor:
    """A runnable busybox image (httpd serving /www on port 80) from Debian's busybox-static."""
    return build_layout(dest, tag, [busybox_entries()], dict(BUSYBOX_CONFIG))


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[1] != "busybox":
        print("usage: mkimage.py busybox DEST [TAG]", file=sys.stderr)
        return 2
    tag = argv[3] if len(argv) == 4 else "latest"
    try:
        manifest = build_busybox_image(Path(argv[2]), tag)
    except OSError as exc:
        print(f"failed to build image at {argv[2]}: {exc}", file=sys.stderr)
        return 1
    print(f"oci:{os.path.abspath(argv[2])}:{tag} {manifest.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
