"""Build the OCI runtime configuration (`config.json`) of a container: a pure function.

The result follows the OCI runtime spec 1.1 (config.md, config-linux.md). What the spec
has no field for, sdpod carries in annotations under `io.sdpod.`: the overlay that makes
the root filesystem, the network the launcher sets up, and when the container counts as
ready and how its health is checked (`sdpod.health.annotate`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sdpod.config.model import (
    Container,
    NamedVolume,
    Network,
    NetworkMode,
    Ownership,
    PortMapping,
)
from sdpod.config.mounts import SECRETS_DIR
from sdpod.config.security import ALL_CAPABILITIES
from sdpod.errors import RuntimeSetupError
from sdpod.health.annotate import annotate
from sdpod.images.layered import read_file
from sdpod.kernel import capabilities, overlay
from sdpod.kernel.userns import IdMapping, IdRange, host_id
from sdpod.runtime.seccomp_profile import default_profile

OCI_VERSION = "1.1.0"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ANNOTATION_OVERLAY = "io.sdpod.rootfs.overlay"
ANNOTATION_NETWORK = "io.sdpod.network"
ANNOTATION_PORTS = "io.sdpod.ports"  # published by the network helper
ANNOTATION_SOCKET_PORTS = "io.sdpod.ports.systemd"  # published by systemd's socket units
ANNOTATION_IMAGE = "io.sdpod.image"
ANNOTATION_IMAGE_ID = "io.sdpod.image.id"
ANNOTATION_NAME = "io.sdpod.name"
ANNOTATION_SECRETS = "io.sdpod.secrets"
ANNOTATION_SHIFT = "io.sdpod.volumes.shift"
ANNOTATION_IDMAP = "io.sdpod.volumes.idmap"
ANNOTATION_POPULATE = "io.sdpod.volumes.populate"
# Labels are the user's annotations; this prefix stays sdpod's own.
ANNOTATION_PREFIX = "io.sdpod."

# mount(2) takes at most one page of options (the kernel copies one page of `data`).
MOUNT_DATA_MAX = 4095

# Secrets are at most 512 KiB each (config refuses larger), and few.
SECRETS_TMPFS_SIZE = "8m"

# Where the init that runs as the container's PID 1 is mounted: on the container's own
# /dev tmpfs, so that no image file is hidden and nothing is written into the image.
INIT_PATH = "/dev/init"

# The paths container engines hide or make read-only by default, so that a container
# cannot read the host's kernel memory or reconfigure the host through /proc.
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/dev/block",
    "/sys/fs/selinux",
)
READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


class ImageDefaults(Protocol):
    """What a container takes from its image's configuration."""

    @property
    def entrypoint(self) -> tuple[str, ...]: ...
    @property
    def cmd(self) -> tuple[str, ...]: ...
    @property
    def env(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def working_dir(self) -> str: ...
    @property
    def user(self) -> str: ...


@dataclass(frozen=True)
class BundleLayout:
    """Where a container's files live on the host."""

    bundle: Path  # holds config.json
    lowers: tuple[Path, ...]  # the image's layer trees, top first (or its one tree), never written
    upper: Path  # the container's own changes
    work: Path  # overlayfs's work directory, beside upper
    etc: Path  # hosts, hostname and resolv.conf made for this container
    volumes: Path = Path("/nonexistent")  # where the named volumes of every container live

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    @property
    def lower_mount(self) -> Path:
        """Where the launcher mounts each of `lowers`, as `lower_mount/<index>`: a bind
        mount, or as root an idmapped view."""
        return self.bundle / "lower"

    def lower_attach(self, index: int) -> Path:
        return self.lower_mount / str(index)

    def volume(self, name: str) -> Path:
        return self.volumes / name

    def idmapped_volume(self, index: int) -> Path:
        """Where the launcher attaches an idmapped view of the `index`th volume."""
        return self.bundle / "idmapped" / str(index)

    @classmethod
    def under(cls, directory: Path, lowers: Sequence[Path], volumes: Path) -> BundleLayout:
        upper, work, etc = directory / "upper", directory / "work", directory / "etc"
        return cls(directory, tuple(lowers), upper, work, etc, volumes)


def process_args(container: Container, image: ImageDefaults) -> list[str]:
    """The command line, as Docker defines it: the entrypoint, then the command.

    An entrypoint set in the TOML drops the image's command along with its entrypoint.
    """
    if container.entrypoint is not None:
        entrypoint, default_command = list(container.entrypoint), []
    else:
        entrypoint, default_command = list(image.entrypoint), list(image.cmd)
    command = list(container.command) if container.command is not None else default_command
    args = entrypoint + command
    if not args:
        raise RuntimeSetupError(
            f"failed to build the command of container {container.name}: "
            "the image has no entrypoint or command",
            hint=f"set `command` for container {container.name} in its TOML file",
        )
    return args


def process_env(container: Container, image: ImageDefaults) -> list[str]:
    """The image's environment, overridden by the TOML's, with PATH and HOSTNAME always set."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    merged.update(image.env)
    merged.update(container.environment)
    merged["HOSTNAME"] = container.host_name
    merged.setdefault("container", "sdpod")
    return [f"{key}={value}" for key, value in merged.items()]


def check_user_mapped(name: str, user: str, uid: int, gid: int, mapping: IdMapping) -> None:
    """Refuse a user the container's id mapping has no host id for: the kernel would
    refuse to switch to it with nothing but EINVAL."""
    if host_id(mapping.uids, uid) is not None and host_id(mapping.gids, gid) is not None:
        return
    covered = ", ".join(f"{r.container_id}-{r.container_id + r.size - 1}" for r in mapping.uids)
    raise RuntimeSetupError(
        f"failed to prepare container {name}: its user {user or 'root'} (uid {uid}, gid "
        f"{gid}) has no host id; the container's id mapping covers only ids {covered}",
        hint="give your user subordinate ids (`sdpod doctor` names a free range), or run "
        'the container as root (user = "0")',
    )


def resolve_user(spec: str, lowers: Sequence[Path]) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary gids for an image's `User` (`name`, `uid`, `uid:gid`...).

    Names are looked up in the image's own /etc/passwd and /etc/group, read through its
    layer trees `lowers` (top first) as the container will see them, never the host's.
    """
    user, _, group = (spec or "0").partition(":")
    passwd = _read_table(lowers, "etc/passwd")
    groups = _read_table(lowers, "etc/group")

    uid, gid = _lookup_user(user, passwd)
    if group:
        gid = _lookup_id(group, groups, "group")
    name = next((row[0] for row in passwd if row[2] == str(uid)), user)
    extra = [int(row[2]) for row in groups if name in row[3].split(",") and row[2].isdigit()]
    return uid, gid, sorted(set(extra) - {gid})


def _lookup_user(user: str, passwd: list[list[str]]) -> tuple[int, int]:
    if user.isdigit():
        row = next((r for r in passwd if r[2] == user), None)
        return int(user), int(row[3]) if row and row[3].isdigit() else 0
    row = next((r for r in passwd if r[0] == user), None)
    if row is None or not (row[2].isdigit() and row[3].isdigit()):
        raise RuntimeSetupError(f"failed to find user {user!r} in the image's /etc/passwd")
    return int(row[2]), int(row[3])


def _lookup_id(name: str, table: list[list[str]], what: str) -> int:
    if name.isdigit():
        return int(name)
    row = next((r for r in table if r[0] == name), None)
    if row is None or not row[2].isdigit():
        raise RuntimeSetupError(f"failed to find {what} {name!r} in the image's /etc/{what}")
    return int(row[2])


def _read_table(lowers: Sequence[Path], path: str) -> list[list[str]]:
    data = read_file(lowers, path)
    if data is None:
        return []
    lines = data.decode(errors="replace").splitlines()
    rows = [line.split(":") for line in lines if line and not line.startswith("#")]
    return [row + [""] * (4 - len(row)) for row in rows]


def _mount(destination: str, kind: str, source: str, options: Sequence[str]) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


def default_mounts() -> list[dict[str, Any]]:
    """The file systems every Linux container gets, as the OCI spec's examples list them."""
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        ),
        _mount(
            "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        ),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount(
            "/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]
        ),
    ]


def _volume_mounts(container: Container, layout: BundleLayout) -> list[dict[str, Any]]:
    mounts = []
    for index, volume in enumerate(container.volumes):
        named = isinstance(volume, NamedVolume)
        source = layout.volume(volume.name) if named else volume.source  # type: ignore[union-attr]
        if volume.owner is Ownership.IDMAP:
            # The launcher attaches an idmapped view of the source here first.
            source = layout.idmapped_volume(index)
        options = ["rbind", "ro" if volume.read_only else "rw"]
        mounts.append(_mount(str(volume.target), "bind", str(source), options))
    return mounts


def _idmapped_volumes(container: Container, layout: BundleLayout) -> str:
    """What the launcher attaches as idmapped views: each volume's source and where."""
    views = []
    for index, volume in enumerate(container.volumes):
        if volume.owner is Ownership.IDMAP:
            named = isinstance(volume, NamedVolume)
            source = layout.volume(volume.name) if named else volume.source  # type: ignore[union-attr]
            views.append({"source": str(source), "attach": str(layout.idmapped_volume(index))})
    return json.dumps(views)


def _populated_volumes(container: Container, layout: BundleLayout) -> str:
    """The named volumes, which take the image's files at their target while empty."""
    return json.dumps(
        [
            {"source": str(layout.volume(volume.name)), "target": str(volume.target)}
            for volume in container.volumes
            if isinstance(volume, NamedVolume)
        ]
    )


def _tmpfs_mounts(container: Container) -> list[dict[str, Any]]:
    mounts = []
    for tmpfs in container.tmpfs:
        size = [] if tmpfs.size is None else [f"size={tmpfs.size}"]
        options = ["nosuid", "nodev", f"mode={tmpfs.mode:04o}", *size]
        mounts.append(_mount(str(tmpfs.target), "tmpfs", "tmpfs", options))
    return mounts


def _device_mounts(container: Container) -> list[dict[str, Any]]:
    """Host devices, bound onto the container's /dev: rootless, mknod is not allowed."""
    return [
        _mount(
            str(device.target),
            "bind",
            str(device.source),
            ["bind", "nosuid", "noexec", "ro" if device.read_only else "rw"],
        )
        for device in container.devices
    ]


def _secret_mounts(container: Container) -> list[dict[str, Any]]:
    """The memory-backed directory the launcher writes secrets into before pivot_root."""
    if not container.secrets:
        return []
    options = ["nosuid", "nodev", "noexec", "mode=0755", f"size={SECRETS_TMPFS_SIZE}"]
    return [_mount(str(SECRETS_DIR), "tmpfs", "tmpfs", options)]


def _secrets_annotation(container: Container) -> str:
    return json.dumps(
        [
            {
                "source": str(secret.source),
                "target": str(secret.target),
                "mode": secret.mode,
                "uid": secret.uid,
                "gid": secret.gid,
            }
            for secret in container.secrets
        ]
    )


def _shifted_volumes(container: Container) -> str:
    return json.dumps(
        [str(volume.target) for volume in container.volumes if volume.owner is Ownership.SHIFT]
    )


def bounding_set(container: Container) -> list[str]:
    """The default capabilities, less `cap_drop`, plus `cap_add`, in the kernel's order."""
    dropped = set(container.cap_drop)
    kept = set() if ALL_CAPABILITIES in dropped else set(capabilities.DEFAULT) - dropped
    kept |= set(container.cap_add)
    return [name for name in capabilities.NAMES if name in kept]


def _scratch_mounts() -> list[dict[str, Any]]:
    """What a read-only container may still write, empty at each start, as podman gives."""
    options = ["nosuid", "nodev", "mode=1777"]
    return [_mount(path, "tmpfs", "tmpfs", options) for path in ("/tmp", "/var/tmp", "/run")]


def _etc_mounts(etc: Path) -> list[dict[str, Any]]:
    return [
        _mount(f"/etc/{name}", "bind", str(etc / name), ["bind", "rw"])
        for name in ("hosts", "hostname", "resolv.conf")
    ]


def id_map(ranges: Iterable[IdRange]) -> list[dict[str, int]]:
    return [{"containerID": r.container_id, "hostID": r.host_id, "size": r.size} for r in ranges]


NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "user", "cgroup")


def namespaces(container: Container, shared: Mapping[str, str] | None) -> list[dict[str, str]]:
    """The OCI namespaces: each new, but none for the network on the host's, and for a
    container that shares another's network, that one's user and network namespaces by
    `shared` path (`sdpod.runtime.shared.namespace_paths`)."""
    mode = container.network.mode
    entries = []
    for kind in NAMESPACES:
        if kind == "network" and mode is NetworkMode.HOST:
            continue
        if mode is NetworkMode.CONTAINER and kind in ("user", "network"):
            if shared is None:
                owner = container.network.container
                raise ValueError(f"{container.name} shares the namespaces of {owner}: no paths")
            entries.append({"type": kind, "path": shared[kind]})
        else:
            entries.append({"type": kind})
    return entries


def network_annotation(network: Network) -> str:
    """What the launcher sets up: "pasta", "slirp4netns" (also for "private", unless
    `up` chose its backend first), "none", "host" or "container:NAME"."""
    if network.mode is NetworkMode.PRIVATE:
        return "slirp4netns"
    if network.mode is NetworkMode.CONTAINER:
        return f"container:{network.container}"
    return str(network.mode.value)


def format_port(port: PortMapping) -> str:
    return f"{port.host_ip}:{port.host_port}:{port.container_port}/{port.protocol.value}"


def port_annotations(
    helper: Sequence[PortMapping], by_socket: Sequence[PortMapping]
) -> dict[str, str]:
    """The ports that the launcher's network helper publishes, and those that systemd's
    sockets publish, which only `sdpod ps` and `up` read."""
    return {
        ANNOTATION_PORTS: ",".join(format_port(port) for port in helper),
        ANNOTATION_SOCKET_PORTS: ",".join(format_port(port) for port in by_socket),
    }


def _with_init(args: list[str], init: Path | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Put a minimal init before the command, mounted where no image has a file.

    As PID 1 of its namespace the command would ignore every signal it has no handler
    for, the stop signal included (pid_namespaces(7)); the init forwards signals to it
    and reaps orphaned processes.
    """
    if init is None:
        return args, []
    mount = _mount(INIT_PATH, "bind", str(init), ["bind", "ro", "nosuid", "nodev"])
    return [INIT_PATH, "--", *args], [mount]


def overlay_annotation(layout: BundleLayout, idmap: bool) -> str:
    """What the launcher mounts as the root: `lowers`, top first, each mounted at
    `attach/<index>` (idmapped when `idmap` is set), under `upper` and `work`."""
    if not 0 < len(layout.lowers) <= overlay.MAX_LOWER_LAYERS:
        raise RuntimeSetupError(
            f"failed to stack the image's {len(layout.lowers)} layer trees: overlayfs "
            f"stacks 1 to {overlay.MAX_LOWER_LAYERS}"
        )
    return json.dumps(
        {
            "lowers": [str(lower) for lower in layout.lowers],
            "attach": str(layout.lower_mount),
            "upper": str(layout.upper),
            "work": str(layout.work),
            "idmap": idmap,
        }
    )


def overlay_mount(dirs: Mapping[str, Any]) -> tuple[str, str]:
    """The directory to mount the overlay from, and its mount(2) options.

    The layers are named by their index, relative to the directory where the launcher
    mounted each (`attach`), and so are the upper and work directories: whatever the
    paths, 500 layers (overlayfs's most) take under 2000 of the one page mount(2) reads.
    """
    attach = str(dirs["attach"])
    lowers = ":".join(str(index) for index in range(len(dirs["lowers"])))
    upper = os.path.relpath(dirs["upper"], attach)
    work = os.path.relpath(dirs["work"], attach)
    # userxattr: an unprivileged overlay keeps its metadata in user.* xattrs (overlayfs
    # docs), and reads its lower layers' opaque directories there.
    data = f"lowerdir={lowers},upperdir={upper},workdir={work},userxattr"
    if len(data) > MOUNT_DATA_MAX:
        raise RuntimeSetupError(
            f"failed to mount the overlay: its {len(data)} bytes of options are more than "
            f"the {MOUNT_DATA_MAX} mount(2) takes"
        )
    return attach, data


def build_spec(
    container: Container,
    image: ImageDefaults,
    layout: BundleLayout,
    mapping: IdMapping,
    init: Path | None = None,
    idmap_lower: bool = False,
    shared: Mapping[str, str] | None = None,
    image_id: str | None = None,
) -> dict[str, Any]:
    """The whole `config.json` of `container`; `init` is the host's static init binary.

    `idmap_lower` says that the image's files carry the image's own ids, which an
    idmapped mount must shift into the container's range (root mode). `shared` holds
    the namespace paths of the container whose network this one shares, if it does.
    `image_id` is the stored image's id, which the store reads back to tell which
    images are in use.
    """
    user = container.user if container.user is not None else image.user
    uid, gid, extra_gids = resolve_user(user, layout.lowers)
    check_user_mapped(container.name, user, uid, gid, mapping)
    args, init_mounts = _with_init(process_args(container, image), init)
    stored = {ANNOTATION_IMAGE_ID: image_id} if image_id else {}
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
            "args": args,
            "env": process_env(container, image),
            "cwd": container.working_dir or image.working_dir or "/",
            "noNewPrivileges": True,
            # Only the bounding set is applied so far; root's effective and permitted
            # sets follow from it at exec, and other users start with none.
            "capabilities": {"bounding": bounding_set(container)},
        },
        "root": {"path": "rootfs", "readonly": container.read_only},
        "hostname": container.host_name,
        "mounts": default_mounts()
        + init_mounts
        + _etc_mounts(layout.etc)
        + (_scratch_mounts() if container.read_only else [])
        + _volume_mounts(container, layout)
        + _tmpfs_mounts(container)
        + _device_mounts(container)
        # Last, so that no other mount can hide it and send the secrets elsewhere.
        + _secret_mounts(container),
        "linux": {
            "uidMappings": id_map(mapping.uids),
            "gidMappings": id_map(mapping.gids),
            "namespaces": namespaces(container, shared),
            "sysctl": dict(container.sysctls),
            "seccomp": default_profile(bounding_set(container)),
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
        "annotations": {
            **dict(container.labels),
            ANNOTATION_NAME: container.name,
            ANNOTATION_IMAGE: str(container.image),
            **stored,
            ANNOTATION_OVERLAY: overlay_annotation(layout, idmap_lower),
            ANNOTATION_NETWORK: network_annotation(container.network),
            **port_annotations(container.helper_ports, container.socket_ports),
            ANNOTATION_SECRETS: _secrets_annotation(container),
            ANNOTATION_SHIFT: _shifted_volumes(container),
            ANNOTATION_IDMAP: _idmapped_volumes(container, layout),
            ANNOTATION_POPULATE: _populated_volumes(container, layout),
            **annotate(container),
        },
    }
