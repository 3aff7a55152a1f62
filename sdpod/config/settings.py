"""The one table of container settings: TOML key, conversion, default, normalised output.

Adding a setting means adding a row to `SETTINGS` (and a field of the same name to
`model.Container`): the loader, the unknown-key suggestions and `dump` all read it here.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeAlias, TypeVar

from sdpod.config import values
from sdpod.config.model import BindVolume, LayoutImage, PortMapping, RestartPolicy
from sdpod.config.problems import Invalid, Spot

T = TypeVar("T")
Json: TypeAlias = str | int | bool | list["Json"] | dict[str, "Json"] | None
ShowPath = Callable[[Path], str]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One key of a container table.

    `convert` checks the value's type and rules, records every problem on the spot it is
    given, and returns None when it recorded any. `dump` renders a converted value as
    JSON, showing paths with the function it is given.
    """

    key: str
    convert: Callable[[object, Spot], T | None]
    default: T | _Required
    dump: Callable[[T, ShowPath], Json]
    example: str
    """The key with a typical value, as a line of TOML."""
    help: str


def _string(value: object, spot: Spot, like: str) -> str | None:
    if isinstance(value, str):
        return value
    spot.wrong_type(f"a string like {like}", value)
    return None


def _strings(value: object, spot: Spot, like: str) -> list[tuple[Spot, str | None]] | None:
    """Check a list of strings; return each item with its spot, None where it is no string."""
    if not isinstance(value, list):
        spot.wrong_type(f"a list of strings like {like}", value)
        return None
    items: list[tuple[Spot, str | None]] = []
    for index, item in enumerate(value):
        items.append((spot.child(index), _string(item, spot.child(index), like)))
    return items


def _each(
    value: object, spot: Spot, like: str, parse: Callable[[str, Spot], T]
) -> tuple[T, ...] | None:
    """Parse every string of a list, recording each problem at its item's own index."""
    items = _strings(value, spot, like)
    if items is None:
        return None
    parsed: list[T] = []
    for item_spot, text in items:
        if text is None:
            continue
        try:
            parsed.append(parse(text, item_spot))
        except Invalid as error:
            item_spot.refuse(error, text)
    return tuple(parsed) if len(parsed) == len(items) else None


def _one(value: object, spot: Spot, like: str, parse: Callable[[str, Spot], T]) -> T | None:
    text = _string(value, spot, like)
    if text is None:
        return None
    try:
        return parse(text, spot)
    except Invalid as error:
        spot.refuse(error, text)
        return None


def _convert_name(value: object, spot: Spot) -> str | None:
    return _one(value, spot, '"web"', lambda text, _: values.parse_name(text))


def _parse_image(text: str, spot: Spot) -> LayoutImage:
    return values.parse_image(text, spot.base_dir)


def _convert_image(value: object, spot: Spot) -> LayoutImage | None:
    return _one(value, spot, '"oci:web-image:latest"', _parse_image)


def _convert_command(value: object, spot: Spot) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return _one(value, spot, '"httpd -f"', _split_command)
    if not isinstance(value, list):
        spot.wrong_type('a list of strings like ["httpd", "-f"], or one string', value)
        return None
    words = _each(value, spot, '"httpd"', _command_word)
    if words == ():
        spot.fail("the command is empty; valid: at least one word, the program to run")
        return None
    return words


def _command_word(word: str, _: Spot) -> str:
    # execve(2) takes NUL-terminated strings: a NUL would silently cut the word short.
    if "\0" in word:
        raise Invalid("the command contains a NUL character; valid: text without NUL")
    return word


def _split_command(text: str, spot: Spot) -> tuple[str, ...]:
    _command_word(text, spot)
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise Invalid(f"cannot split the command into words: {str(error).lower()}") from None
    if not words:
        raise Invalid("the command is empty; valid: at least one word, the program to run")
    return tuple(words)


def _convert_env(value: object, spot: Spot) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, dict):
        spot.wrong_type('a table of strings like { GREETING = "hello" }', value)
        return None
    pairs: list[tuple[str, str]] = []
    for name, text in value.items():
        at = spot.child(name)
        if not name or "=" in name or "\0" in name:
            at.fail("invalid variable name; valid: a name without '=' and NUL, like GREETING")
        elif not isinstance(text, str):
            at.wrong_type('a string like "hello"', text)
        elif "\0" in text:
            at.fail("the value contains a NUL character; valid: text without NUL", text)
        else:
            pairs.append((name, text))
    return tuple(pairs) if len(pairs) == len(value) else None


def _convert_ports(value: object, spot: Spot) -> tuple[PortMapping, ...] | None:
    return _each(value, spot, '"8080:80"', lambda text, _: values.parse_port(text))


def _parse_volume(text: str, spot: Spot) -> BindVolume:
    return values.parse_volume(text, spot.base_dir)


def _convert_volumes(value: object, spot: Spot) -> tuple[BindVolume, ...] | None:
    return _each(value, spot, '"./www:/www:ro"', _parse_volume)


_RESTART_CHOICES = '"no", "on-failure" or "always"'


def _parse_restart(text: str, _: Spot) -> RestartPolicy:
    try:
        return RestartPolicy(text)
    except ValueError:
        raise Invalid(f"unknown restart policy; valid: {_RESTART_CHOICES}") from None


def _convert_restart(value: object, spot: Spot) -> RestartPolicy | None:
    return _one(value, spot, '"on-failure"', _parse_restart)


def _dump_image(image: LayoutImage, show: ShowPath) -> Json:
    return {"path": show(image.path), "tag": image.tag}


def _dump_port(port: PortMapping) -> Json:
    return {
        "host_ip": port.host_ip,
        "host_port": port.host_port,
        "container_port": port.container_port,
        "protocol": port.protocol.value,
    }


def _dump_volume(volume: BindVolume, show: ShowPath) -> Json:
    return {
        "source": show(volume.source),
        "target": str(volume.target),
        "read_only": volume.read_only,
    }


SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting[str](
        key="name",
        convert=_convert_name,
        default=REQUIRED,
        dump=lambda name, _: name,
        example='name = "web"',
        help="the container's name, also in its unit's name sdpod-NAME.service: "
        f"{values.NAME_RULE}; in [containers.NAME] it defaults to NAME",
    ),
    Setting[LayoutImage](
        key="image",
        convert=_convert_image,
        default=REQUIRED,
        dump=_dump_image,
        example='image = "oci:web-image:latest"',
        help="the image, from an OCI image layout: oci:PATH[:TAG], TAG defaults to latest",
    ),
    Setting[tuple[str, ...] | None](
        key="command",
        convert=_convert_command,
        default=None,
        dump=lambda command, _: None if command is None else list(command),
        example='command = ["httpd", "-f", "-p", "80"]',
        help="the command to run, a list of words or one string split like a shell does; "
        "defaults to the image's",
    ),
    Setting[tuple[tuple[str, str], ...]](
        key="env",
        convert=_convert_env,
        default=(),
        dump=lambda env, _: dict(env),
        example='env = { GREETING = "hello" }',
        help="environment variables, a table of strings",
    ),
    Setting[tuple[PortMapping, ...]](
        key="ports",
        convert=_convert_ports,
        default=(),
        dump=lambda ports, _: [_dump_port(port) for port in ports],
        example='ports = ["127.0.0.1:8080:80", "8081:81/udp"]',
        help="published ports: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], "
        "HOST_IP 0.0.0.0 unless given",
    ),
    Setting[tuple[BindVolume, ...]](
        key="volumes",
        convert=_convert_volumes,
        default=(),
        dump=lambda volumes, show: [_dump_volume(volume, show) for volume in volumes],
        example='volumes = ["./www:/www:ro"]',
        help="bind mounts: SOURCE:TARGET[:ro|rw], SOURCE relative to the TOML file",
    ),
    Setting[RestartPolicy](
        key="restart",
        convert=_convert_restart,
        default=RestartPolicy.ON_FAILURE,
        dump=lambda policy, _: policy.value,
        example='restart = "always"',
        help=f"when systemd restarts the container: {_RESTART_CHOICES}",
    ),
)

BY_KEY: Final = {setting.key: setting for setting in SETTINGS}
