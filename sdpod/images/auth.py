"""Registry credentials from the files podman, skopeo and docker write (containers-auth.json(5)).

Looked up in order, the first file that has an entry for the registry winning:
`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
`$XDG_CONFIG_HOME/containers/auth.json` (`~/.config`), `~/.docker/config.json`. An entry
is `"auths": {"KEY": {"auth": base64("user:password")}}`; KEY is a registry
(`registry.example:5000`), optionally with a repository path, and the longest key that
matches wins. Credential helpers (`credHelpers`, `credsStore`) are not run: they are
programs of another tool, and an entry that only names one is skipped.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import ImageError
from sdpod.images.jsonfile import read_json
from sdpod.images.reference import DOCKER_HUB

log = logging.getLogger(__name__)

# The key `docker login` writes for Docker Hub.
_LEGACY_HUB = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials({self.username!r}, <password>)"


def auth_files() -> list[Path]:
    """The files to look in, most specific first; some may not exist."""
    files = []
    if chosen := os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(chosen))
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(runtime) / "containers" / "auth.json")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    files.append(Path(config) / "containers" / "auth.json")
    files.append(Path.home() / ".docker" / "config.json")
    return files


def credentials_for(registry: str, repository: str = "") -> Credentials | None:
    """The credentials for `registry/repository`, from the first file that has them."""
    for path in auth_files():
        entries = _read_auths(path)
        found = _best_entry(entries, registry, repository, path)
        if found is not None:
            log.debug("using credentials for %s from %s", registry, path)
            return found
    return None


def _read_auths(path: Path) -> dict[str, object]:
    document = read_json(path, "credentials file", missing_ok=True)
    auths = document.get("auths") if isinstance(document, dict) else None
    return auths if isinstance(auths, dict) else {}


def _normalise_key(key: str) -> str:
    """`https://host/v1/` and `host` name the same registry; a path names a repository."""
    if key == _LEGACY_HUB:
        return DOCKER_HUB
    for scheme in ("https://", "http://"):
        key = key.removeprefix(scheme)
    key = key.rstrip("/").removesuffix("/v1").removesuffix("/v2")
    return DOCKER_HUB if key in ("index.docker.io", "registry-1.docker.io") else key


def _best_entry(
    entries: dict[str, object], registry: str, repository: str, path: Path
) -> Credentials | None:
    name = f"{registry}/{repository}" if repository else registry
    keys = [
        key
        for key in entries
        if (k := _normalise_key(key)) == name or name.startswith(k + "/") or k == registry
    ]
    for key in sorted(keys, key=lambda key: len(_normalise_key(key)), reverse=True):
        found = _decode(entries[key], key, path)
        if found is not None:
            return found
    return None


def _decode(entry: object, key: str, path: Path) -> Credentials | None:
    encoded = entry.get("auth") if isinstance(entry, dict) else None
    if not encoded:
        return None
    if not isinstance(encoded, str):
        raise ImageError(f"{path}: auths.{key}.auth: expected a base64 string")
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ImageError(
            f"{path}: auths.{key}.auth: not valid; valid: base64 of USER:PASSWORD"
        ) from None
    if not colon:
        raise ImageError(f"{path}: auths.{key}.auth: not valid; valid: base64 of USER:PASSWORD")
    return Credentials(user, password)
