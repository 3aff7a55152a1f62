"""Image references as registries name images: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.

The grammar is the one Docker and the OCI distribution spec share. A name whose first
component has no dot, no port and is not `localhost` is short: a short-name alias from
registries.conf expands it if one is given, else it means Docker Hub, where a
one-component name lives under `library/`, as `docker pull` has always read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sdpod.config.imageref import (
    DEFAULT_TAG,
    DOCKER_HUB,
    DOMAIN,
    MAX_NAME,
    PATH,
    TAG,
    is_qualified,
)
from sdpod.config.imageref import HUB_ALIASES as _HUB_ALIASES
from sdpod.errors import ImageError
from sdpod.images.digest import Digest

# The grammar is shared with the TOML's checks (`sdpod.config.imageref`); re-exported
# here for the modules of the image store.
__all__ = ["DEFAULT_TAG", "DOCKER_HUB", "Reference", "is_qualified", "parse_reference"]

_VALID = (
    "valid: [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST] with a lower-case repository, "
    "for example docker.io/library/busybox:1.36"
)


@dataclass(frozen=True)
class Reference:
    """A fully qualified reference: a registry, a repository and a tag or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """The repository with its registry: `docker.io/library/busybox`."""
        return f"{self.registry}/{self.repository}"

    @property
    def selector(self) -> str:
        """What the registry's manifest endpoint is asked for: the digest, else the tag."""
        return str(self.digest) if self.digest is not None else self.tag or DEFAULT_TAG

    def with_repository(self, registry: str, repository: str) -> Reference:
        return Reference(registry, repository, self.tag, self.digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, aliases: Mapping[str, str] | None = None) -> Reference:
    """Parse `text`, completing a short name; a reference with neither tag nor digest gets
    the tag `latest`."""
    if not text:
        raise ImageError(f"failed to parse image reference '': it is empty; {_VALID}")
    rest, digest = _split_digest(text)
    rest, tag = _split_tag(rest, text)
    first, _, remainder = rest.partition("/")
    if remainder and is_qualified(first):
        registry, repository = first, remainder
    else:
        registry, repository = _expand_short(rest, aliases or {}, text)
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    _check(registry, repository, text)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def _split_digest(text: str) -> tuple[str, Digest | None]:
    rest, at, digest_text = text.partition("@")
    if not at:
        return text, None
    try:
        return rest, Digest.parse(digest_text)
    except ImageError:
        raise ImageError(
            f"failed to parse image reference {text!r}: {digest_text!r} is no digest; "
            "a digest is 'sha256:' and 64 lower-case hex digits"
        ) from None


def _split_tag(rest: str, text: str) -> tuple[str, str | None]:
    # A colon after the last slash starts a tag; one before it belongs to a registry port.
    head, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        return rest, None
    if not TAG.fullmatch(tag):
        raise ImageError(
            f"failed to parse image reference {text!r}: tag {tag!r} is not valid; a tag is "
            "up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )
    return head, tag


def _expand_short(name: str, aliases: Mapping[str, str], text: str) -> tuple[str, str]:
    alias = aliases.get(name)
    if alias is None:
        return DOCKER_HUB, name
    first, _, remainder = alias.partition("/")
    if not remainder or not is_qualified(first):
        raise ImageError(
            f"failed to parse image reference {text!r}: its short-name alias {alias!r} "
            "names no registry"
        )
    return first, remainder


def _check(registry: str, repository: str, text: str) -> None:
    if not DOMAIN.fullmatch(registry):
        raise ImageError(
            f"failed to parse image reference {text!r}: {registry!r} is no registry host; " + _VALID
        )
    if not PATH.fullmatch(repository):
        raise ImageError(
            f"failed to parse image reference {text!r}: repository {repository!r} is not "
            "valid; " + _VALID
        )
    if len(registry) + 1 + len(repository) > MAX_NAME:
        raise ImageError(
            f"failed to parse image reference {text!r}: the name is longer than {MAX_NAME} "
            "characters"
        )
