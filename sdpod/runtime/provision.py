"""What the container's init sets up around its mounts and before pivot_root.

Sysctls, secrets and volume contents all need the container's own namespaces (its
network namespace for net.*, its user namespace to own files with its ids) and the
host's paths (the secrets' sources, the volumes) at once: only this moment has both.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sdpod.kernel import syscalls
from sdpod.runtime import mounts
from sdpod.runtime.spec import ANNOTATION_POPULATE, ANNOTATION_SECRETS, ANNOTATION_SHIFT


def apply_sysctls(spec: dict[str, Any]) -> None:
    """Write the spec's sysctls; /proc/sys shows the namespaces of whoever opens it."""
    for name, value in spec.get("linux", {}).get("sysctl", {}).items():
        path = Path("/proc/sys") / name.replace(".", "/")
        try:
            path.write_text(f"{value}\n")
        except OSError as error:
            raise OSError(
                error.errno, f"failed to set sysctl {name} to {value!r}: {error.strerror}"
            ) from None


def make_working_dir(spec: dict[str, Any], rootfs: str) -> None:
    """Create the command's directory where the image lacks it, as docker and podman do;
    it belongs to the container's root."""
    path = mounts.resolve_in_root(rootfs, spec["process"].get("cwd", "/"))
    if not os.path.lexists(path):
        os.makedirs(path, mode=0o755)


def write_secrets(spec: dict[str, Any], rootfs: str) -> None:
    """Copy each secret into the container's memory-backed secrets directory, then make
    that directory read-only, as docker and podman mount theirs."""
    secrets = json.loads(spec.get("annotations", {}).get(ANNOTATION_SECRETS) or "[]")
    if not secrets:
        return
    for secret in secrets:
        _write_secret(secret, rootfs)
    directory = mounts.resolve_in_root(rootfs, str(Path(secrets[0]["target"]).parent))
    flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    syscalls.mount(None, directory, None, flags | mounts.locked_flags(directory))


def _write_secret(secret: dict[str, Any], rootfs: str) -> None:
    try:
        data = Path(secret["source"]).read_bytes()
    except OSError as error:
        raise OSError(
            error.errno, f"failed to read secret {secret['source']}: {error.strerror}"
        ) from None
    target = mounts.resolve_in_root(rootfs, secret["target"])
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        # Owner before mode: chown clears setuid bits, and a mode of 0 would still let
        # the owner change the owner, but not another user read the file.
        os.fchown(fd, secret["uid"], secret["gid"])
        os.fchmod(fd, secret["mode"])
    except OSError as error:
        raise OSError(
            error.errno, f"failed to write secret {secret['target']}: {error.strerror}"
        ) from None
    finally:
        os.close(fd)


def shift_volumes(spec: dict[str, Any], rootfs: str) -> None:
    """Give volumes marked `shift` to the container's user, once: a tree whose top
    already belongs to that user is left as it is, so a restart costs one stat."""
    targets = json.loads(spec.get("annotations", {}).get(ANNOTATION_SHIFT) or "[]")
    user = spec["process"]["user"]
    for target in targets:
        path = mounts.resolve_in_root(rootfs, target)
        top = os.lstat(path)
        if (top.st_uid, top.st_gid) != (user["uid"], user["gid"]):
            _chown_tree(path, user["uid"], user["gid"])


def _chown_tree(top: str, uid: int, gid: int) -> None:
    """Change every owner under `top` without following links or leaving its mount."""
    device = os.lstat(top).st_dev
    os.lchown(top, uid, gid)
    for directory, names, files in os.walk(top):
        for name in [*names, *files]:
            path = os.path.join(directory, name)
            if os.lstat(path).st_dev == device:
                os.lchown(path, uid, gid)
        # A mount inside the volume is someone else's tree: walk around it.
        names[:] = [n for n in names if os.lstat(os.path.join(directory, n)).st_dev == device]


def populate_volumes(spec: dict[str, Any], rootfs: str) -> None:
    """Copy what the image holds at a named volume's target into the volume while it is
    empty, owners and modes kept, as docker does: a new database volume starts with the
    directories and owners its image prepared. Runs before the volumes are mounted."""
    volumes = json.loads(spec.get("annotations", {}).get(ANNOTATION_POPULATE) or "[]")
    for volume in volumes:
        image_dir = mounts.resolve_in_root(rootfs, volume["target"])
        if not os.path.isdir(image_dir) or os.listdir(volume["source"]):
            continue
        _copy_tree(image_dir, volume["source"])


def _copy_tree(source: str, target: str) -> None:
    """Copy the contents of `source` into the existing directory `target`: files, links
    and directories with their owners, modes and times; links are not followed."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True, copy_function=_copy_file)
    for directory, names, files in os.walk(source):
        for name in [*names, *files, ""]:
            origin = os.path.join(directory, name)
            copy = os.path.join(target, os.path.relpath(origin, source))
            info = os.lstat(origin)
            os.lchown(copy, info.st_uid, info.st_gid)
            if not os.path.islink(copy):
                # chown clears setuid bits: the mode goes back on after it.
                os.chmod(copy, info.st_mode & 0o7777)
            os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _copy_file(source: str, target: str) -> None:
    shutil.copy2(source, target, follow_symlinks=False)
