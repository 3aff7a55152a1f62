"""Parsers of what a container mounts: volumes, tmpfs file systems, devices and secrets.

Like `values`, each parser takes a string (or the fields of a table already converted)
and returns a model object or raises `Invalid`; `settings` records their verdicts. Host
paths are checked as the user running sdpod, who is the one the container's files come
from: a path that user cannot read is an error now rather than when the container starts.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from sdpod.config import quantities
from sdpod.config.model import (
    BindVolume,
    Device,
    NamedVolume,
    Ownership,
    Secret,
    Tmpfs,
    Volume,
)
from sdpod.config.problems import Invalid

VOLUME_SYNTAX = 'SOURCE:TARGET[:OPTIONS], like "./www:/www:ro" or "pgdata:/var/lib/postgresql/data"'
VOLUME_OPTIONS = "ro, rw, shift, idmap and create, separated by commas"
VOLUME_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

TMPFS_SYNTAX = 'TARGET[:size=SIZE,mode=MODE], like "/run" or "/cache:size=64M,mode=0700"'
DEVICE_SYNTAX = 'HOST_PATH[:TARGET][:PERMISSIONS], like "/dev/fuse" or "/dev/dri/renderD128"'
MODE_RULE = 'octal permission digits in a string, like "0440"'
SECRETS_DIR = PurePosixPath("/run/secrets")
# Secrets are copied into memory at each start; docker and podman cap them near here.
SECRET_SIZE_MAX = 512 * 1024

# Mount points the runtime makes in every container: a mount there would hide them, or
# fail when the container starts instead of now.
RESERVED_TARGETS = frozenset(
    {"/", "/proc", "/sys", "/dev", "/dev/init", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
)


# -- volumes ------------------------------------------------------------------------------


def parse_volume(text: str, base_dir: Path, check_paths: bool = True) -> Volume:
    """Parse `SOURCE:TARGET[:OPTIONS]`, raising one `Invalid` that names every broken part.

    A SOURCE with a '/' or starting with '.' or '~' is a host path; any other is the name
    of a volume sdpod keeps. With `check_paths` false, a missing source is let through.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise Invalid(f"bad volume syntax; valid: {VOLUME_SYNTAX}")

    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    return make_volume(source, target, base_dir, check_paths, **_volume_options(options))


def _volume_options(options: list[str]) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for option in options:
        if option in ("ro", "rw"):
            chosen["read_only"] = option == "ro"
        elif option in ("shift", "U"):
            chosen["owner"] = Ownership.SHIFT
        elif option == "idmap":
            chosen["owner"] = Ownership.IDMAP
        elif option == "create":
            chosen["create"] = True
        else:
            raise Invalid(f"unknown volume option {_q(option)}; valid: {VOLUME_OPTIONS}")
    return chosen


def make_volume(
    source: str,
    target: str,
    base_dir: Path,
    check_paths: bool,
    *,
    read_only: bool = False,
    owner: Ownership = Ownership.KEEP,
    create: bool = False,
) -> Volume:
    """The volume `source` names, once every part is checked."""
    target_problem = target_problem_of(target)
    if not is_host_path(source):
        problems = [target_problem, _volume_name_problem(source)]
        if create:
            problems.append("create is for host paths; a named volume is always created")
        _raise_any(problems)
        return NamedVolume(source, PurePosixPath(target), read_only, owner)

    path = host_path(source, base_dir)
    source_problem = None
    if check_paths and not create:
        source_problem = _source_problem(source, path)
    _raise_any([source_problem, target_problem])
    return BindVolume(path, PurePosixPath(target), read_only, owner, create)


def is_host_path(source: str) -> bool:
    return "/" in source or source.startswith((".", "~"))


def host_path(source: str, base_dir: Path) -> Path:
    """`source` as an absolute path: `~` is the user's home, a relative path the TOML's."""
    if source == "~" or source.startswith("~/"):
        return Path(os.path.expanduser(source))
    return base_dir / source


def _volume_name_problem(name: str) -> str | None:
    if _VOLUME_NAME.fullmatch(name):
        return None
    return (
        f"{_q(name)} is neither a path nor a volume name; valid: a path with '/', or "
        f"starting with '.' or '~', or a name of {VOLUME_NAME_RULE}"
    )


def _source_problem(source: str, path: Path) -> str | None:
    reason = readable_problem(path)
    if reason is None:
        return None
    return (
        f"source {_q(source)} {reason}; valid: an existing file or directory you can "
        "read, absolute or relative to the directory of the TOML file, or the option "
        "create to make a missing directory"
    )


def readable_problem(path: Path) -> str | None:
    """Say why this user cannot use `path`, or None if it exists and is readable."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "does not exist"
    except (OSError, ValueError) as error:
        return f"cannot be checked: {getattr(error, 'strerror', None) or error}"
    wanted = os.R_OK | os.X_OK if stat.S_ISDIR(info.st_mode) else os.R_OK
    if not os.access(path, wanted):
        return "cannot be read by this user"
    return None


def target_problem_of(target: str) -> str | None:
    if not target.startswith("/"):
        return f"target {_q(target)} is not absolute; valid: an absolute path like /www"
    if ".." in PurePosixPath(target).parts:
        return f"target {_q(target)} contains '..'; valid: a path without '..'"
    # POSIX lets a path keep two leading slashes; Linux reads them as one.
    normal = str(PurePosixPath("/" + target.lstrip("/")))
    if normal in RESERVED_TARGETS or normal.startswith(("/proc/", "/sys/")):
        return (
            f"target {_q(target)} is made by sdpod for every container; valid: a path "
            f"other than {', '.join(sorted(RESERVED_TARGETS))} and nothing under /proc or /sys"
        )
    return None


# -- tmpfs --------------------------------------------------------------------------------


def parse_tmpfs(text: str) -> Tmpfs:
    """Parse `TARGET[:size=SIZE,mode=MODE]`."""
    target, _, options = text.partition(":")
    _raise_any([target_problem_of(target)])
    size: int | None = None
    mode = 0o1777
    for option in options.split(",") if options else []:
        key, equals, value = option.partition("=")
        if key == "size" and equals:
            size = quantities.parse_size(value)
        elif key == "mode" and equals:
            mode = parse_mode(value)
        else:
            raise Invalid(f"unknown tmpfs option {_q(option)}; valid: size=SIZE and mode=MODE")
    return Tmpfs(PurePosixPath(target), size, mode)


def parse_mode(text: str, special: bool = True) -> int:
    """Octal permission bits; with `special` false, no setuid, setgid or sticky bit."""
    if not re.fullmatch(r"0?[0-7]{3,4}", text):
        raise Invalid(f"mode {_q(text)} is not a permission mode; valid: {MODE_RULE}")
    mode = int(text, 8)
    if not special and mode > 0o777:
        raise Invalid(f"mode {_q(text)} sets setuid, setgid or sticky bits; valid: 0000 to 0777")
    return mode


# -- devices ------------------------------------------------------------------------------


def parse_device(text: str, check_paths: bool = True) -> Device:
    """Parse `HOST_PATH[:TARGET][:PERMISSIONS]`; PERMISSIONS as docker writes them, rwm."""
    parts = text.split(":")
    if len(parts) > 3 or not all(parts):
        raise Invalid(f"bad device syntax; valid: {DEVICE_SYNTAX}")
    permissions = "rw"
    if len(parts) > 1 and re.fullmatch(r"[rwm]+", parts[-1]):
        permissions = parts.pop()
    source, target = parts[0], parts[-1]
    if not source.startswith("/dev/"):
        raise Invalid(f"{_q(source)} is not under /dev; valid: {DEVICE_SYNTAX}")
    _raise_any([target_problem_of(target)])

    read_only = "w" not in permissions
    if check_paths:
        _raise_any([_device_problem(Path(source), read_only)])
    return Device(PurePosixPath(source), PurePosixPath(target), read_only)


def _device_problem(path: Path, read_only: bool) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return f"device {_q(str(path))} cannot be used: {error.strerror}"
    if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
        return f"{_q(str(path))} is not a device node; valid: a character or block device"
    wanted = os.R_OK if read_only else os.R_OK | os.W_OK
    if not os.access(path, wanted):
        access = "read" if read_only else "read and write"
        return (
            f"this user cannot {access} {_q(str(path))}, so neither can the container; "
            "valid: a device your user may open, through its group (video, render) or a udev rule"
        )
    return None


# -- secrets ------------------------------------------------------------------------------


def make_secret(
    source: str, target: str | None, mode: int, uid: int, gid: int, base_dir: Path, check: bool
) -> Secret:
    """A secret from `source`, mounted at `target`: a file name in /run/secrets."""
    path = host_path(source, base_dir)
    name = target if target is not None else path.name
    where = PurePosixPath(name) if name.startswith("/") else SECRETS_DIR / name
    problems: list[str | None] = []
    if where.parent != SECRETS_DIR or where.name in ("", ".", ".."):
        problems.append(
            f"target {_q(name)} is not a file of {SECRETS_DIR}; valid: a file name like "
            f"db_password, or {SECRETS_DIR}/db_password"
        )
    if check:
        problems.append(_secret_source_problem(source, path))
    _raise_any(problems)
    return Secret(path, where, mode, uid, gid)


def _secret_source_problem(source: str, path: Path) -> str | None:
    reason = readable_problem(path)
    if reason is None and not path.is_file():
        reason = "is not a regular file"
    if reason is None and path.stat().st_size > SECRET_SIZE_MAX:
        reason = "is larger than 512 KiB"
    if reason is None:
        return None
    return (
        f"source {_q(source)} {reason}; valid: a readable file of at most 512 KiB, "
        "absolute or relative to the directory of the TOML file"
    )


# -- shared -------------------------------------------------------------------------------


def _raise_any(problems: list[str | None]) -> None:
    found = [problem for problem in problems if problem]
    if found:
        raise Invalid(*found)


def _q(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'
