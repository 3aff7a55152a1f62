"""The converters of a container's environment files, labels, privileges and network.

`settings` puts them in the container's table; the small parsers they call live in
`envfile`, `security` and `networks`.
"""

from __future__ import annotations

from typing import Any, Final

from sdpod.config import convert, mounts, networks, security
from sdpod.config.envfile import read_env_file
from sdpod.config.model import EnvFile, IdMap, Network, UserNamespace, UsernsMode
from sdpod.config.problems import Spot
from sdpod.config.schema import Json, Setting, ShowPath, convert_table

# The annotations sdpod writes into each container's config.json start with this.
RESERVED_LABEL_PREFIX = "io.sdpod."

# -- env_file and labels ------------------------------------------------------------------


def convert_env_files(value: object, spot: Spot) -> tuple[EnvFile, ...] | None:
    if isinstance(value, str):
        found = _env_file(value, spot)
        return None if found is None else (found,)
    items = convert.strings(value, spot, '"web.env"')
    if items is None:
        return None
    files = [_env_file(text, at) for at, text in items if text is not None]
    found_files = [file for file in files if file is not None]
    return tuple(found_files) if len(found_files) == len(items) else None


def _env_file(text: str, spot: Spot) -> EnvFile | None:
    path = mounts.host_path(text, spot.base_dir)
    if not spot.check_paths and not path.exists():
        return EnvFile(path, ())
    variables = convert.attempt(spot, text, lambda: read_env_file(path, text))
    return None if variables is None else EnvFile(path, tuple(variables))


def dump_env_files(files: tuple[EnvFile, ...], show: ShowPath) -> Json:
    return [show(file.path) for file in files]


def convert_labels(value: object, spot: Spot) -> tuple[tuple[str, str], ...] | None:
    return convert.string_table(value, spot, '{ "org.example.team" = "web" }', _label)


def _label(key: str, value: object, spot: Spot) -> tuple[str, str] | None:
    if not key or "\0" in key:
        spot.fail("not a label name; valid: a name like org.example.team")
        return None
    if key.startswith(RESERVED_LABEL_PREFIX):
        spot.fail(f"{RESERVED_LABEL_PREFIX}* names are sdpod's own; valid: another prefix")
        return None
    text = convert.string(value, spot, '"web"')
    if text is None:
        return None
    if "\0" in text:
        spot.fail("the value contains a NUL character; valid: text without NUL", text)
        return None
    return key, text


# -- capabilities and sysctls ---------------------------------------------------------------


def convert_capabilities(value: object, spot: Spot) -> tuple[str, ...] | None:
    names = convert.each(
        value, spot, '"NET_ADMIN"', lambda text, _: security.parse_capability(text)
    )
    return None if names is None else tuple(dict.fromkeys(names))


def convert_sysctls(value: object, spot: Spot) -> tuple[tuple[str, str], ...] | None:
    like = '{ "net.ipv4.ip_unprivileged_port_start" = 80 }'
    return convert.string_table(value, spot, like, _sysctl)


def _sysctl(name: str, value: object, spot: Spot) -> tuple[str, str] | None:
    def parse() -> tuple[str, str]:
        return security.parse_sysctl_name(name), security.parse_sysctl_value(value)

    return convert.attempt(spot, value, parse)


# -- userns ---------------------------------------------------------------------------------

USERNS: Final[tuple[Setting[Any], ...]] = (
    Setting[tuple[IdMap, ...]](
        key="uid_map",
        convert=lambda value, spot: _convert_id_map(value, spot),
        default=(),
        dump=lambda maps, _: [_show_map(entry) for entry in maps],
        example='uid_map = ["0:100000:1000", "1000:1000:1"]',
        help=f"user ids: {security.ID_MAP_SYNTAX}; HOST_ID your own id or one of your "
        "subordinate ids (/etc/subuid); ids 0 inside and your own outside must be mapped. "
        "As root, any host ids outside 1073741824 to 2147483647, which sdpod hands to "
        'containers of "auto"',
        shown_default="required",
    ),
    Setting[tuple[IdMap, ...]](
        key="gid_map",
        convert=lambda value, spot: _convert_id_map(value, spot),
        default=(),
        dump=lambda maps, _: [_show_map(entry) for entry in maps],
        example='gid_map = ["0:100000:1000", "1000:1000:1"]',
        help="group ids, in the same form",
        shown_default="as uid_map",
    ),
)
_USERNS_LIKE = '"auto", "keep-id", or a table like { uid_map = ["0:100000:65536"] }'


def convert_userns(value: object, spot: Spot) -> UserNamespace | None:
    if isinstance(value, str):
        if value not in (UsernsMode.AUTO.value, UsernsMode.KEEP_ID.value):
            spot.fail(f"unknown user namespace mode; valid: {_USERNS_LIKE}", value)
            return None
        return UserNamespace(UsernsMode(value))
    fields = convert_table(value, spot, USERNS, _USERNS_LIKE)
    if fields is None:
        return None
    if not fields["uid_map"]:
        spot.child("uid_map").fail(f"required key is missing; valid: {USERNS[0].example}")
        return None
    gid_map = fields["gid_map"] or fields["uid_map"]
    # The container starts as its root: id 0 must be mapped to some host id.
    for key, maps in (("uid_map", fields["uid_map"]), ("gid_map", gid_map)):
        if not any(entry.container_id == 0 for entry in maps):
            spot.child(key).fail(
                "container id 0, the container's root, is not mapped; valid: an entry "
                'that starts at 0, like "0:100000:65536"'
            )
            return None
    return UserNamespace(UsernsMode.MAP, fields["uid_map"], gid_map)


def _convert_id_map(value: object, spot: Spot) -> tuple[IdMap, ...] | None:
    like = '"0:100000:65536"'
    maps = convert.each(value, spot, like, lambda text, _: security.parse_id_map(text))
    if maps is None:
        return None
    problem = security.overlap_problem(maps)
    if problem:
        spot.fail(f"{problem}; valid: ranges apart from each other")
        return None
    return maps


def _show_map(entry: IdMap) -> str:
    return f"{entry.container_id}:{entry.host_id}:{entry.count}"


def dump_userns(userns: UserNamespace, show: ShowPath) -> Json:
    if userns.mode is not UsernsMode.MAP:
        return str(userns.mode.value)
    return {
        "uid_map": [_show_map(entry) for entry in userns.uid_map],
        "gid_map": [_show_map(entry) for entry in userns.gid_map],
    }


# -- network --------------------------------------------------------------------------------


def convert_network(value: object, spot: Spot) -> Network | None:
    found = convert.one(value, spot, '"none"', lambda text, _: networks.parse_network(text))
    return None if found is None else Network(*found)


def dump_network(network: Network, _: ShowPath) -> Json:
    if network.container is None:
        return network.mode.value
    return f"{network.mode.value}:{network.container}"


def convert_dns(value: object, spot: Spot) -> tuple[str, ...] | None:
    servers = convert.each(
        value, spot, '"192.168.1.1"', lambda text, _: networks.parse_address(text)
    )
    return _at_most(servers, networks.DNS_SERVERS_MAX, "name servers", spot)


def convert_dns_search(value: object, spot: Spot) -> tuple[str, ...] | None:
    domains = convert.each(
        value, spot, '"home.arpa"', lambda text, _: networks.parse_search_domain(text)
    )
    return _at_most(domains, networks.DNS_SEARCH_MAX, "search domains", spot)


def _at_most(
    found: tuple[str, ...] | None, most: int, what: str, spot: Spot
) -> tuple[str, ...] | None:
    if found is not None and len(found) > most:
        spot.fail(f"{len(found)} {what}; valid: at most {most}, the resolver reads no more")
        return None
    return found


def convert_dns_options(value: object, spot: Spot) -> tuple[str, ...] | None:
    return convert.each(value, spot, '"ndots:2"', lambda text, _: networks.parse_dns_option(text))


def convert_extra_hosts(value: object, spot: Spot) -> tuple[tuple[str, str], ...] | None:
    if isinstance(value, dict):
        like = '{ "nas.home.arpa" = "192.168.1.10" }'
        return convert.string_table(value, spot, like, _extra_host_entry)
    return convert.each(
        value,
        spot,
        '"nas.home.arpa:192.168.1.10"',
        lambda text, _: networks.parse_extra_host(text),
    )


def _extra_host_entry(name: str, value: object, spot: Spot) -> tuple[str, str] | None:
    text = convert.string(value, spot, '"192.168.1.10"')
    if text is None:
        return None
    return convert.attempt(spot, text, lambda: networks.parse_extra_host(f"{name}:{text}"))


def dump_pairs(pairs: tuple[tuple[str, str], ...], _: ShowPath) -> Json:
    return dict(pairs)


def dump_extra_hosts(pairs: tuple[tuple[str, str], ...], _: ShowPath) -> Json:
    return [f"{name}:{address}" for name, address in pairs]
