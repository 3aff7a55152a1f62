"""The part of an image's configuration that decides how its container runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sdpod.errors import ImageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageConfig:
    """What the image asks for. Empty tuples and strings mean the image does not say.

    `env` keeps the image's order; a later entry for the same name wins, as in a shell.
    `user` is the image's `User` as written (`name`, `uid`, `uid:gid`, ...): it is
    resolved against the image's /etc/passwd when the container starts.
    """

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = "/"
    user: str = ""
    architecture: str = ""
    os: str = ""
    variant: str = ""

    @property
    def argv(self) -> tuple[str, ...]:
        """The command the image runs when the user names none: entrypoint, then cmd."""
        return self.entrypoint + self.cmd


def parse_config(document: dict[str, Any], where: str) -> ImageConfig:
    """Build an ImageConfig from a parsed image config blob (OCI or Docker schema 2).

    `where` names the blob in error messages.
    """
    section = document.get("config") or {}
    if not isinstance(section, dict):
        raise ImageError(f"failed to read image config {where}: 'config' is not an object")
    return ImageConfig(
        entrypoint=_strings(section, "Entrypoint", where),
        cmd=_strings(section, "Cmd", where),
        env=_env(_strings(section, "Env", where), where),
        working_dir=_string(section, "WorkingDir", where) or "/",
        user=_string(section, "User", where),
        architecture=_string(document, "architecture", where),
        os=_string(document, "os", where),
        variant=_string(document, "variant", where),
    )


def _strings(section: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ImageError(
            f"failed to read image config {where}: {key} is {value!r}, expected a list of strings"
        )
    return tuple(value)


def _string(section: dict[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImageError(
            f"failed to read image config {where}: {key} is {value!r}, expected a string"
        )
    return value


def _env(entries: tuple[str, ...], where: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            # Docker passes such an entry through, where it means nothing to execve.
            log.warning("ignoring Env entry %r of image config %s: it has no NAME=", entry, where)
            continue
        pairs.append((name, value))
    return tuple(pairs)
