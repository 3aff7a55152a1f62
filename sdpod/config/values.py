"""Parsers for the small languages inside string values: ports, images, names, URLs.

Each parser takes the text and the directory relative paths start from, and either
returns a model object or raises `Invalid` with a message that ends in what would be
valid. They know nothing of key paths or lines; `settings` records their verdicts.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from sdpod.config import imageref
from sdpod.config.model import (
    Image,
    LayoutImage,
    PortMapping,
    Protocol,
    RegistryImage,
)
from sdpod.config.problems import Invalid

NAME_RULE = (
    "lowercase letters, digits, '_', '.' and '-', starting with a letter or digit, "
    "at most 63 characters"
)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_NAME_MAX = 63

_PORT_SYNTAX = (
    '[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], like "127.0.0.1:8080:80" or "8080-8081:80-81"'
)
_DIGITS = re.compile(r"[0-9]+")
DEFAULT_HOST_IP = "0.0.0.0"

_DOCUMENTATION_PREFIXES = ("http://", "https://", "file:/", "info:", "man:")
DOCUMENTATION_SCHEMES = "http://, https://, file:/, info: and man:"
_DOCUMENTATION_EXAMPLES = '"https://example.org/", "file:/usr/share/doc/x" or "man:httpd(8)"'

_LAYOUT_SYNTAX = '"oci:PATH[:TAG]", PATH relative to the directory of the TOML file'
_REFERENCE_SYNTAX = (
    "REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], like "
    '"docker.io/library/nginx:1.27", or "oci:PATH[:TAG]" for an image layout'
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_TAG_RULE = "up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
_DEFAULT_TAG = "latest"


def _q(text: str) -> str:
    """Quote a piece of user text the way the error lines quote whole values."""
    return json.dumps(text, ensure_ascii=False)


def parse_name(text: str, what: str = "container") -> str:
    """A container's or project's name, as the names of their units can hold it."""
    if len(text) > _NAME_MAX:
        raise Invalid(f"{what} name is {len(text)} characters long; valid: {NAME_RULE}")
    if not _NAME.fullmatch(text):
        raise Invalid(f"invalid {what} name; valid: {NAME_RULE}")
    # sdpod-NAME-health.service and .timer run a container's health check: a container
    # named NAME-health would share their unit names.
    if what == "container" and text.endswith("-health"):
        raise Invalid(
            f"names ending in -health are kept for health checks' units; valid: {NAME_RULE}, "
            "not ending in -health"
        )
    # sdpod-PROJECT-pod.service holds the network that a project's containers share.
    if what == "container" and text.endswith("-pod"):
        raise Invalid(
            "names ending in -pod are kept for the units that hold projects' shared "
            f"networks; valid: {NAME_RULE}, not ending in -pod"
        )
    return text


def parse_documentation_url(text: str) -> str:
    """A URL that systemd takes for `Documentation=` (documentation_url_is_valid()).

    systemd wants one of its schemes followed by ASCII text. Whitespace and control
    characters are refused as well: a unit file lists these URLs separated by spaces.
    """
    rest = next((text[len(s) :] for s in _DOCUMENTATION_PREFIXES if text.startswith(s)), None)
    if rest is None:
        raise Invalid(f"unknown kind of URL; valid: {DOCUMENTATION_SCHEMES} URLs")
    if not rest:
        raise Invalid(f"the URL is empty after its scheme; valid: {_DOCUMENTATION_EXAMPLES}")
    if not rest.isascii() or not all(character.isprintable() for character in rest):
        raise Invalid(
            "the URL holds a character that is not printable ASCII; valid: "
            "printable ASCII without spaces, other characters %-encoded"
        )
    if " " in rest:
        raise Invalid("the URL holds a space; valid: a URL without spaces, %20 for a space")
    return text


def parse_ports(text: str) -> tuple[PortMapping, ...]:
    """Parse `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL]`; IPv6 addresses in brackets.

    Either port may be a range, `8080-8089`, when the other is a range as long.
    """
    address, slash, protocol = text.partition("/")
    host_ip, ports = _split_host_ip(address)
    host, colon, container = ports.partition(":")
    if not colon or ":" in container:
        raise Invalid(f"bad port syntax; valid: {_PORT_SYNTAX}")

    ip = _parse_ip(host_ip)
    hosts, containers = _parse_port_range(host), _parse_port_range(container)
    if len(hosts) != len(containers):
        raise Invalid(
            f"{len(hosts)} host ports for {len(containers)} container ports; valid: "
            'ranges of the same length, like "8080-8081:80-81"'
        )
    kind = _parse_protocol(protocol) if slash else Protocol.TCP
    return tuple(PortMapping(ip, h, c, kind) for h, c in zip(hosts, containers, strict=True))


def _parse_port_range(text: str) -> range:
    first, dash, last = text.partition("-")
    if dash and not (first and last):
        raise Invalid(f"{_q(text)} is not a port number; valid: 1 to 65535, or a range LOW-HIGH")
    start = _parse_port_number(first)
    end = _parse_port_number(last) if dash else start
    if end < start:
        raise Invalid(f"range {_q(text)} runs backwards; valid: LOW-HIGH, like 8080-8089")
    return range(start, end + 1)


def port_mapping(host_ip: str, host_port: int, container_port: int, protocol: str) -> PortMapping:
    """The port the table form describes, its parts already checked for type."""
    return PortMapping(_parse_ip(host_ip), host_port, container_port, _parse_protocol(protocol))


def _split_host_ip(address: str) -> tuple[str, str]:
    if address.startswith("["):
        host_ip, bracket, ports = address[1:].partition("]:")
        if not bracket:
            raise Invalid(f"bad port syntax; valid: {_PORT_SYNTAX}, or [::1]:8080:80")
        return host_ip, ports
    if address.count(":") == 2:
        host_ip, _, ports = address.partition(":")
        return host_ip, ports
    if address.count(":") > 2:
        raise Invalid(f"bad port syntax; valid: {_PORT_SYNTAX}; IPv6 addresses in brackets")
    return DEFAULT_HOST_IP, address


def _parse_ip(text: str) -> str:
    """An IPv4 or IPv6 host address. Whether the container's network backend can publish
    on an IPv6 one is a fact of the installed helpers, which `up` checks."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(
            f"{_q(text)} is not an IP address; valid: an IPv4 or IPv6 address, like 127.0.0.1 "
            'or ::1 (in brackets within a port string: "[::1]:8080:80")'
        ) from None
    # Sockets bind IPv6 addresses apart from IPv4 ones (IPV6_V6ONLY): neither form
    # below can be bound so.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        raise Invalid(
            f"{_q(text)} is an IPv4 address in IPv6 form; valid: {address.ipv4_mapped} itself"
        )
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise Invalid(
            f"{_q(text)} names an interface (%{address.scope_id}), which a published port "
            "cannot; valid: an address without %ZONE"
        )
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        raise Invalid(f"{_q(text)} is a group address, which no connection comes to; {_ONE}")
    if isinstance(address, ipaddress.IPv6Address) and address.is_link_local:
        raise Invalid(f"{_q(text)} is link-local, which binds only on a named interface; {_ONE}")
    return str(address)


_ONE = "valid: an address of this machine, like 127.0.0.1 or ::1, or 0.0.0.0 or :: for all"


def _parse_port_number(text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise Invalid(f"{_q(text)} is not a port number; valid: 1 to 65535")
    number = int(text)
    if not 1 <= number <= 65535:
        raise Invalid(f"port {number} is out of range; valid: 1 to 65535")
    return number


def _parse_protocol(text: str) -> Protocol:
    try:
        return Protocol(text)
    except ValueError:
        raise Invalid(f"unknown protocol {_q(text)}; valid: tcp or udp") from None


def path_problem(path: Path) -> str | None:
    """Say why `path` cannot be used as an existing file system object, or None if it can."""
    try:
        if path.exists():
            return None
    except (OSError, ValueError) as error:
        return f"cannot be checked: {error}"
    return "does not exist"


def parse_image(
    text: str, base_dir: Path, check_paths: bool = True, short_names: Collection[str] = ()
) -> Image:
    """Parse `oci:PATH[:TAG]`, an image layout, or a registry's reference.

    A short name (no registry) is only accepted where `short_names`, the aliases of the
    user's registries.conf, has it: the image store expands it. With `check_paths` false,
    neither a layout that does not exist nor an alias that is gone stops the file loading.
    """
    if text.startswith("oci:"):
        return parse_layout(text, base_dir, check_paths)
    return parse_registry_reference(text, short_names, check_aliases=check_paths)


def parse_layout(text: str, base_dir: Path, check_paths: bool = True) -> LayoutImage:
    """Parse `oci:PATH[:TAG]` and check that PATH holds an OCI image layout."""
    path_text, tag = _split_tag(text.removeprefix("oci:"))
    if not path_text:
        raise Invalid(f"the image layout path is empty; valid: {_LAYOUT_SYNTAX}")
    if not _TAG.fullmatch(tag):
        raise Invalid(f"invalid tag {_q(tag)}; valid: {_TAG_RULE}")

    path = base_dir / path_text
    if check_paths:
        _check_layout(path, path_text)
    return LayoutImage(path, tag)


def parse_registry_reference(
    text: str, short_names: Collection[str] = (), check_aliases: bool = True
) -> RegistryImage:
    """Check a registry's reference by the grammar `sdpod.config.imageref` holds."""
    if not text:
        raise Invalid(f"the image is empty; valid: {_REFERENCE_SYNTAX}")
    parts = imageref.split(text)
    if parts.digest is not None and not imageref.DIGEST.fullmatch(parts.digest):
        raise Invalid(
            f"invalid digest {_q(parts.digest)}; valid: sha256: and 64 lower-case hex digits"
        )
    if parts.tag is not None and not _TAG.fullmatch(parts.tag):
        raise Invalid(f"invalid tag {_q(parts.tag)}; valid: {_TAG_RULE}")
    if imageref.qualified_name(parts.name):
        _check_qualified(parts.name)
    elif not imageref.PATH.fullmatch(parts.name):
        raise Invalid(f"invalid image name {_q(parts.name)}; valid: {_REFERENCE_SYNTAX}")
    elif check_aliases and parts.name not in short_names:
        raise Invalid(_short_name_problem(parts))
    return RegistryImage(text)


def _check_qualified(name: str) -> None:
    registry, _, repository = name.partition("/")
    if not imageref.DOMAIN.fullmatch(registry):
        raise Invalid(f"{_q(registry)} is not a registry host; valid: {_REFERENCE_SYNTAX}")
    if not imageref.PATH.fullmatch(repository):
        raise Invalid(
            f"invalid repository {_q(repository)}; valid: lowercase letters, digits and "
            "'/', '.', '_' or '-' between them"
        )
    if len(name) > imageref.MAX_NAME:
        raise Invalid(
            f"the name is {len(name)} characters long; valid: at most {imageref.MAX_NAME} "
            "with the registry"
        )


def _short_name_problem(parts: imageref.Parts) -> str:
    """A short name names no registry: say which one docker would have guessed."""
    suggestion = imageref.docker_hub_name(parts.name)
    if parts.tag is not None:
        suggestion += f":{parts.tag}"
    if parts.digest is not None:
        suggestion += f"@{parts.digest}"
    return (
        f"{_q(parts.name)} is a short name, which names no registry; did you mean "
        f"{_q(suggestion)}? valid: {_REFERENCE_SYNTAX}, or a short name that has an alias "
        "in registries.conf"
    )


def _split_tag(reference: str) -> tuple[str, str]:
    path_text, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        return reference, _DEFAULT_TAG
    return path_text, tag


def _check_layout(path: Path, path_text: str) -> None:
    reason = path_problem(path)
    if reason:
        raise Invalid(
            f"image layout {_q(path_text)} {reason}; valid: a directory made by "
            f"`skopeo copy ... oci:{path_text}:TAG`, relative to the directory of the TOML file"
        )
    # The image specification names this file as the marker of a layout's root.
    reason = path_problem(path / "oci-layout")
    if reason:
        raise Invalid(
            f"{_q(path_text)} is not an OCI image layout: its oci-layout file {reason}; "
            f"valid: {_LAYOUT_SYNTAX}"
        )


def parse_absolute_path(text: str) -> str:
    path = PurePosixPath(text)
    if not text.startswith("/") or ".." in path.parts:
        raise Invalid(f"{_q(text)} is not an absolute path without '..'; valid: like /srv")
    return str(path)


_USER_PART = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?|[0-9]{1,10}", re.IGNORECASE)


def parse_user(text: str) -> str:
    """`NAME`, `UID`, `NAME:GROUP` or `UID:GID`; names are looked up in the image later."""
    parts = text.split(":")
    if len(parts) > 2 or not all(_USER_PART.fullmatch(part) for part in parts):
        raise Invalid("not a user; valid: NAME, UID, NAME:GROUP or UID:GID, like www or 33:33")
    if any(part.isdigit() and int(part) > 4294967294 for part in parts):
        raise Invalid("an id is larger than 4294967294, the largest Linux allows")
    return text


_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", re.I)


def parse_hostname(text: str) -> str:
    if len(text) > 64 or not _HOSTNAME.fullmatch(text):
        raise Invalid(
            "not a host name; valid: up to 64 characters, dot-separated labels of letters, "
            "digits and '-', like web.home.arpa"
        )
    return text
