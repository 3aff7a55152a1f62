"""The converters and nested tables of what a container mounts: ports' long form too.

`settings` puts them in the container's table; this module keeps the parts of each
setting that read a string or a table, since several accept either.
"""

from __future__ import annotations

from typing import Any, Final

from sdpod.config import convert, mounts, values
from sdpod.config.model import (
    BindVolume,
    Device,
    NamedVolume,
    Ownership,
    PortMapping,
    Protocol,
    Secret,
    Tmpfs,
    Volume,
)
from sdpod.config.problems import Spot
from sdpod.config.schema import REQUIRED, Json, Setting, ShowPath, convert_table

# -- ports --------------------------------------------------------------------------------

PORT: Final[tuple[Setting[Any], ...]] = (
    Setting[int](
        key="container_port",
        convert=lambda value, spot: convert.integer(value, spot, 1, 65535),
        default=REQUIRED,
        dump=lambda port, _: port,
        example="container_port = 80",
        help="the port the container listens on",
    ),
    Setting[int | None](
        key="host_port",
        convert=lambda value, spot: convert.integer(value, spot, 1, 65535),
        default=None,
        dump=lambda port, _: port,
        example="host_port = 8080",
        help="the host's port that reaches it",
        shown_default="the container's port",
    ),
    Setting[str](
        key="host_ip",
        convert=lambda value, spot: convert.string(value, spot, '"127.0.0.1"'),
        default=values.DEFAULT_HOST_IP,
        dump=lambda address, _: address,
        example='host_ip = "127.0.0.1"',
        help="the host's address it is published on: IPv4, or IPv6 (UDP on IPv6 through "
        "pasta only)",
    ),
    Setting[str](
        key="protocol",
        convert=lambda value, spot: convert.string(value, spot, '"udp"'),
        default=Protocol.TCP.value,
        dump=lambda protocol, _: protocol,
        example='protocol = "udp"',
        help='"tcp" or "udp"',
    ),
)


def convert_ports(value: object, spot: Spot) -> tuple[PortMapping, ...] | None:
    found = convert.texts_or_tables(
        value, spot, '"8080:80"', lambda text, _: values.parse_ports(text), _port_table
    )
    return None if found is None else tuple(port for group in found for port in group)


def _port_table(table: dict[str, object], spot: Spot) -> tuple[PortMapping, ...] | None:
    fields = convert_table(table, spot, PORT, "{ container_port = 80, host_port = 8080 }")
    if fields is None:
        return None
    host_port = fields["host_port"] or fields["container_port"]

    def make() -> tuple[PortMapping, ...]:
        made = values.port_mapping(
            fields["host_ip"], host_port, fields["container_port"], fields["protocol"]
        )
        return (made,)

    return convert.attempt(spot, table, make)


def dump_port(port: PortMapping) -> Json:
    return {
        "host_ip": port.host_ip,
        "host_port": port.host_port,
        "container_port": port.container_port,
        "protocol": port.protocol.value,
    }


# -- volumes ------------------------------------------------------------------------------

VOLUME: Final[tuple[Setting[Any], ...]] = (
    Setting[str](
        key="source",
        convert=lambda value, spot: convert.string(value, spot, '"./www"'),
        default=REQUIRED,
        dump=lambda source, _: source,
        example='source = "./www"',
        help="a host path (with a '/', or starting with '.' or '~'; relative to the TOML "
        "file), or the name of a volume sdpod keeps",
    ),
    Setting[str](
        key="target",
        convert=lambda value, spot: convert.string(value, spot, '"/www"'),
        default=REQUIRED,
        dump=lambda target, _: target,
        example='target = "/www"',
        help="where it appears in the container, an absolute path",
    ),
    Setting[bool](
        key="read_only",
        convert=lambda value, spot: convert.flag(value, spot),
        default=False,
        dump=lambda flag, _: flag,
        example="read_only = true",
        help="the container may read it but not write it",
    ),
    Setting[Ownership](
        key="owner",
        convert=lambda value, spot: convert.choice(
            value, spot, Ownership, "ownership", Ownership.SHIFT
        ),
        default=Ownership.KEEP,
        dump=lambda owner, _: owner.value,
        example='owner = "shift"',
        help='who owns its files inside: "keep", the host\'s owners through the id mapping '
        "(your own files are root's); \"shift\", changed once to the container's user and "
        "group, as podman's :U; \"idmap\", the host's ids unchanged inside, through an "
        "idmapped mount (root mode only)",
    ),
    Setting[bool](
        key="create",
        convert=lambda value, spot: convert.flag(value, spot),
        default=False,
        dump=lambda flag, _: flag,
        example="create = true",
        help="`sdpod up` makes a missing host directory instead of refusing the file",
    ),
)
_VOLUME_LIKE = '"./www:/www:ro"'


def convert_volumes(value: object, spot: Spot) -> tuple[Volume, ...] | None:
    def parse_text(text: str, at: Spot) -> Volume:
        return mounts.parse_volume(text, at.base_dir, at.check_paths)

    return convert.texts_or_tables(value, spot, _VOLUME_LIKE, parse_text, _volume_table)


def _volume_table(table: dict[str, object], spot: Spot) -> Volume | None:
    fields = convert_table(table, spot, VOLUME, '{ source = "./www", target = "/www" }')
    if fields is None:
        return None
    source, target = fields.pop("source"), fields.pop("target")
    return convert.attempt(
        spot,
        table,
        lambda: mounts.make_volume(source, target, spot.base_dir, spot.check_paths, **fields),
    )


def dump_volume(volume: Volume, show: ShowPath) -> Json:
    if isinstance(volume, NamedVolume):
        source = volume.name
        create = False
    else:
        source = show(volume.source)
        # Shown relative, a path must still read as a path, not as a volume's name.
        source = source if mounts.is_host_path(source) else f"./{source}"
        create = volume.create
    return {
        "source": source,
        "target": str(volume.target),
        "read_only": volume.read_only,
        "owner": volume.owner.value,
        "create": create,
    }


def is_bind(volume: Volume) -> bool:
    return isinstance(volume, BindVolume)


# -- tmpfs and devices --------------------------------------------------------------------


def convert_tmpfs(value: object, spot: Spot) -> tuple[Tmpfs, ...] | None:
    return convert.each(value, spot, '"/run"', lambda text, _: mounts.parse_tmpfs(text))


def dump_tmpfs(tmpfs: Tmpfs) -> Json:
    size = "" if tmpfs.size is None else f"size={tmpfs.size},"
    return f"{tmpfs.target}:{size}mode={tmpfs.mode:04o}"


def convert_devices(value: object, spot: Spot) -> tuple[Device, ...] | None:
    return convert.each(
        value, spot, '"/dev/fuse"', lambda text, at: mounts.parse_device(text, at.check_paths)
    )


def dump_device(device: Device) -> Json:
    return f"{device.source}:{device.target}:{'r' if device.read_only else 'rw'}"


# -- secrets ------------------------------------------------------------------------------

_ID_MAX = 4294967294

SECRET: Final[tuple[Setting[Any], ...]] = (
    Setting[str](
        key="source",
        convert=lambda value, spot: convert.string(value, spot, '"./db-password"'),
        default=REQUIRED,
        dump=lambda source, _: source,
        example='source = "./db-password"',
        help="the host file that holds the secret, at most 512 KiB, relative to the TOML file",
    ),
    Setting[str | None](
        key="target",
        convert=lambda value, spot: convert.string(value, spot, '"db_password"'),
        default=None,
        dump=lambda target, _: target,
        example='target = "db_password"',
        help="its file name in /run/secrets",
        shown_default="the source's file name",
    ),
    Setting[int](
        key="mode",
        convert=lambda value, spot: convert.one(
            value, spot, '"0440"', lambda text, _: mounts.parse_mode(text, special=False)
        ),
        default=0o400,
        dump=lambda mode, _: f"{mode:04o}",
        example='mode = "0440"',
        help="its permission bits, octal digits in a string, without setuid, setgid or sticky bits",
    ),
    Setting[int](
        key="uid",
        convert=lambda value, spot: convert.integer(value, spot, 0, _ID_MAX),
        default=0,
        dump=lambda uid, _: uid,
        example="uid = 999",
        help="its owner, a user id inside the container",
    ),
    Setting[int](
        key="gid",
        convert=lambda value, spot: convert.integer(value, spot, 0, _ID_MAX),
        default=0,
        dump=lambda gid, _: gid,
        example="gid = 999",
        help="its group, a group id inside the container",
    ),
)


def convert_secrets(value: object, spot: Spot) -> tuple[Secret, ...] | None:
    def parse_text(text: str, at: Spot) -> Secret:
        return mounts.make_secret(text, None, 0o400, 0, 0, at.base_dir, at.check_paths)

    return convert.texts_or_tables(value, spot, '"./db-password"', parse_text, _secret_table)


def _secret_table(table: dict[str, object], spot: Spot) -> Secret | None:
    fields = convert_table(table, spot, SECRET, '{ source = "./db-password", mode = "0440" }')
    if fields is None:
        return None
    return convert.attempt(
        spot,
        table,
        lambda: mounts.make_secret(
            fields["source"],
            fields["target"],
            fields["mode"],
            fields["uid"],
            fields["gid"],
            spot.base_dir,
            spot.check_paths,
        ),
    )


def dump_secret(secret: Secret, show: ShowPath) -> Json:
    return {
        "source": show(secret.source),
        "target": str(secret.target),
        "mode": f"{secret.mode:04o}",
        "uid": secret.uid,
        "gid": secret.gid,
    }
