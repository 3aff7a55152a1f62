"""The user's registries.conf (containers-registries.conf(5), version 2): where to pull from.

Read: `[[registry]]` tables (`prefix`, `location`, `insecure`, `blocked`, and their
`[[registry.mirror]]` tables with `location` and `insecure`) and the `[aliases]` table of
short names. `$XDG_CONFIG_HOME/containers/registries.conf` replaces the system's
`/etc/containers/registries.conf` when it exists, as it does for podman, and
`$CONTAINERS_REGISTRIES_CONF` names another file, as for podman and skopeo. Other keys
(`unqualified-search-registries`, `short-name-mode`, drop-in directories) are not read:
a short name without an alias means Docker Hub.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdpod.errors import ImageError
from sdpod.images.reference import Reference

SYSTEM_CONF = Path("/etc/containers/registries.conf")


@dataclass(frozen=True)
class Endpoint:
    """One place to ask for an image: a registry host and the repository's name there."""

    host: str
    repository: str
    insecure: bool = False
    mirror: bool = False


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()


@dataclass(frozen=True)
class RegistriesConf:
    registries: tuple[RegistryEntry, ...] = ()
    aliases: Mapping[str, str] | None = None
    path: Path | None = None

    def entry_for(self, reference: Reference) -> RegistryEntry | None:
        """The entry whose prefix matches most of the reference's name, if any."""
        matches = [e for e in self.registries if _matches(e.prefix, reference.name)]
        return max(matches, key=lambda e: len(e.prefix), default=None)

    def endpoints(self, reference: Reference, insecure: bool = False) -> list[Endpoint]:
        """Where to ask for `reference`, in order: its mirrors, then its registry.

        `insecure` is the user's `--tls-verify=false`, for the registry and its mirrors.
        """
        entry = self.entry_for(reference)
        if entry is None:
            return [Endpoint(reference.registry, reference.repository, insecure)]
        if entry.blocked:
            raise ImageError(
                f"failed to pull image {reference}: registries.conf {self.path} blocks "
                f"{entry.prefix!r}"
            )
        rest = reference.name[len(entry.prefix) :]
        found = [
            _endpoint(m.location + rest, insecure or m.insecure, mirror=True) for m in entry.mirrors
        ]
        return [*found, _endpoint(entry.location + rest, insecure or entry.insecure)]


def config_path() -> Path:
    """The registries.conf that applies to this user, which may not exist."""
    chosen = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    user = Path(base) / "containers" / "registries.conf"
    return user if os.geteuid() != 0 and user.exists() else SYSTEM_CONF


def load(path: Path | None = None) -> RegistriesConf:
    """Read registries.conf; a file that does not exist means no configuration."""
    path = path or config_path()
    try:
        text = path.read_text()
        document = tomllib.loads(text)
    except FileNotFoundError:
        return RegistriesConf()
    except OSError as exc:
        raise ImageError(f"failed to read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ImageError(f"failed to parse {path}: {exc}") from None
    return _Reader(path, text).conf(document)


def _matches(prefix: str, name: str) -> bool:
    return name == prefix or name.startswith(prefix.rstrip("/") + "/")


def _endpoint(location: str, insecure: bool, mirror: bool = False) -> Endpoint:
    host, _, repository = location.partition("/")
    return Endpoint(host, repository, insecure, mirror)


class _Reader:
    """Checks each value's type, naming the file, key and value when one is wrong."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, key: str, value: object, valid: str) -> ImageError:
        return ImageError(f"{self.where(key)}: {key}: {value!r} is not valid; valid: {valid}")

    def where(self, key: str) -> str:
        """`FILE:LINE` of the key, or the file alone where the line cannot be found."""
        from sdpod.config.locate import line_at, offset_locator

        path: tuple[str | int, ...] = tuple(
            int(part) if part.isdigit() else part
            for part in key.replace("[", ".").replace("]", "").split(".")
        )
        offset = offset_locator(self.text)(path)
        return str(self.path) if offset is None else f"{self.path}:{line_at(self.text, offset)}"

    def conf(self, document: dict[str, Any]) -> RegistriesConf:
        tables = document.get("registry", [])
        if not isinstance(tables, list):
            raise self.fail("registry", tables, "[[registry]] tables")
        entries = tuple(self.entry(table, f"registry[{i}]") for i, table in enumerate(tables))
        aliases = document.get("aliases", {})
        if not isinstance(aliases, dict):
            raise self.fail("aliases", aliases, 'a table of "short-name" = "registry/name"')
        for key, value in aliases.items():
            self.string(value, f"aliases.{key}")
        return RegistriesConf(entries, dict(aliases), self.path)

    def entry(self, table: object, key: str) -> RegistryEntry:
        if not isinstance(table, dict):
            raise self.fail(key, table, "a table")
        location = self.string(table.get("location"), f"{key}.location")
        prefix = table.get("prefix", location)
        mirrors = table.get("mirror", [])
        if not isinstance(mirrors, list):
            raise self.fail(f"{key}.mirror", mirrors, "[[registry.mirror]] tables")
        return RegistryEntry(
            self.string(prefix, f"{key}.prefix").rstrip("/"),
            location.rstrip("/"),
            self.flag(table, "insecure", key),
            self.flag(table, "blocked", key),
            tuple(self.mirror(m, f"{key}.mirror[{i}]") for i, m in enumerate(mirrors)),
        )

    def mirror(self, table: object, key: str) -> Mirror:
        if not isinstance(table, dict):
            raise self.fail(key, table, "a table")
        location = self.string(table.get("location"), f"{key}.location")
        return Mirror(location.rstrip("/"), self.flag(table, "insecure", key))

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, value, "a host name with an optional port and path")
        return value

    def flag(self, table: dict[str, Any], name: str, key: str) -> bool:
        value = table.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(f"{key}.{name}", value, "true or false")
        return value
