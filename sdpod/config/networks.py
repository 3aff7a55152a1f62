"""Parsers of a container's network settings: its mode, name servers and extra hosts.

Each takes a string and returns the model's value or raises `Invalid`; `settings`
records their verdicts.
"""

from __future__ import annotations

import ipaddress
import re

from sdpod.config.model import NetworkMode
from sdpod.config.problems import Invalid
from sdpod.config.values import parse_hostname, parse_name

NETWORK_SYNTAX = (
    '"private", "pasta", "slirp4netns", "none", "host" or "container:NAME", NAME another '
    "container of the file"
)
_DNS_OPTION = re.compile(r"[a-z][a-z0-9-]*(:[0-9]+)?")
# resolv.conf(5): the resolver reads at most three name servers and six search domains.
DNS_SERVERS_MAX = 3
DNS_SEARCH_MAX = 6


def parse_network(text: str) -> tuple[NetworkMode, str | None]:
    """The mode, and for `container:NAME` the container whose network is shared."""
    kind, colon, name = text.partition(":")
    if colon:
        if kind != NetworkMode.CONTAINER.value:
            raise Invalid(f"unknown network mode; valid: {NETWORK_SYNTAX}")
        return NetworkMode.CONTAINER, parse_name(name)
    if kind == NetworkMode.CONTAINER.value:
        raise Invalid(f"container needs a name; valid: {NETWORK_SYNTAX}")
    try:
        return NetworkMode(kind), None
    except ValueError:
        raise Invalid(f"unknown network mode; valid: {NETWORK_SYNTAX}") from None


def parse_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        valid = "valid: an IPv4 or IPv6 address, like 192.168.1.1"
        raise Invalid(f"not an IP address; {valid}") from None


def parse_search_domain(text: str) -> str:
    try:
        return parse_hostname(text)
    except Invalid:
        raise Invalid("not a domain; valid: dot-separated labels, like home.arpa") from None


def parse_dns_option(text: str) -> str:
    if not _DNS_OPTION.fullmatch(text):
        raise Invalid('not a resolver option; valid: an option of resolv.conf(5), like "ndots:2"')
    return text


def parse_extra_host(text: str) -> tuple[str, str]:
    """`NAME:ADDRESS`, the form docker compose lists; the address may be IPv6."""
    name, colon, address = text.partition(":")
    if not colon:
        raise Invalid('bad extra host; valid: NAME:ADDRESS, like "nas.home.arpa:192.168.1.10"')
    return parse_hostname(name), parse_address(address)
