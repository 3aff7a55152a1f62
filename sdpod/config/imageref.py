"""The grammar of registry image references, `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.

The grammar is the one Docker and the OCI distribution specification share. It lives in
`config` because both the TOML's checks and the image store (`sdpod.images.reference`)
read references, and data flows one way: `images` may import from `config`, never the
reverse. Nothing here reads a file or knows registries.conf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
# Names Docker Hub has been known by, all meaning docker.io.
HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
MAX_NAME = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_PART = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
DOMAIN = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
TAG = re.compile(r"[\w][\w.-]{0,127}")
# The only digest algorithm sdpod verifies (see sdpod.images.digest).
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Parts:
    """A reference cut at its `@` and its tag's `:`, each part unchecked."""

    name: str
    tag: str | None
    digest: str | None


def split(text: str) -> Parts:
    """Cut `text` into name, tag and digest; a colon before the last slash is a port."""
    rest, at, digest = text.partition("@")
    head, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        return Parts(rest, None, digest if at else None)
    return Parts(head, tag, digest if at else None)


def is_qualified(first: str) -> bool:
    """Whether a name's first component names a registry rather than a repository."""
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def qualified_name(name: str) -> bool:
    """Whether `name` (without tag or digest) starts with a registry."""
    first, slash, _ = name.partition("/")
    return bool(slash) and is_qualified(first)


def docker_hub_name(name: str) -> str:
    """What `docker pull` reads a short name as: Docker Hub, `library/` for one component."""
    return f"{DOCKER_HUB}/{name if '/' in name else 'library/' + name}"
