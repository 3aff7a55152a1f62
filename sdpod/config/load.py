"""Read a project's TOML file into the typed model, or report everything wrong with it.

A file holds either one `[container]` table, or `[containers.NAME]` tables, and
optionally a `[project]` table. Each table's keys are read through its setting table in
`settings`; then the containers are checked against each other. Every problem found is
collected, and one `ConfigError` lists them all, each on its own line with the file,
line and key path.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from sdpod.config import settings, values
from sdpod.config.coherence import check_coherence, share_networks
from sdpod.config.dependencies import check_dependencies
from sdpod.config.envfile import read_env_file
from sdpod.config.locate import line_at, offset_locator
from sdpod.config.model import Container, LayoutImage, PortMapping, Project
from sdpod.config.problems import Findings, Invalid, Problem, Spot, render_path, render_problem
from sdpod.config.schema import Read, read_table, unknown_key
from sdpod.config.textfile import Unreadable, read_regular
from sdpod.errors import ConfigError

_TOP_KEYS = ("project", "container", "containers")
_PULL_KEYS = ("pull", "tls_verify")
DOTENV = ".env"
# No hand-written TOML file of containers comes near this; a larger one is a mistake.
TOML_SIZE_MAX = 10 << 20
PROBLEMS_SHOWN = 200
_TOP_VALID = "valid: one [container] table, or [containers.NAME] tables"
_DECODE_POSITION = re.compile(
    r"(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)"
)


def load_project(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    check_paths: bool = True,
    short_names: Collection[str] = (),
) -> Project:
    """Read `path` into a `Project`; raise `ConfigError` naming every problem in it.

    `${VAR}` references in string values are taken from `environ`, by default the
    process's environment, and then from a `.env` file beside the TOML file. Relative
    paths in values start from the file's directory.
    `check_paths` false lets image layouts and volume sources that are gone through:
    taking containers down must not depend on them. `short_names` are the short image
    names that registries.conf has aliases for, which the caller reads (config does not
    read the image store's files); any other short name is an error.
    """
    text = _read(path)
    document = _parse(path, text)
    # Relative paths in the file start from its directory as the kernel sees it, so
    # `..` is resolved through symbolic links; the file itself may be a link.
    source = path.absolute().parent.resolve() / path.name
    findings = Findings(
        source.parent,
        _variables(source.parent, os.environ if environ is None else environ),
        check_paths=check_paths,
        short_names=frozenset(short_names),
    )

    name = _read_project(document, findings, path)
    entries = [_read_container(*found) for found in _container_tables(document, findings)]
    _check_names_unique(entries)
    _check_ports_unique(entries)
    _check_pull_settings(entries)
    check_dependencies(entries)
    check_coherence(entries)

    if findings.problems:
        raise ConfigError(_describe(str(path), text, findings.problems))
    share_networks(entries)
    containers = tuple(Container(**entry.values) for entry in entries)
    return Project(source, containers, name)


def _variables(directory: Path, environ: Mapping[str, str]) -> Mapping[str, str]:
    """The environment, over the variables of a `.env` file beside the TOML, as compose reads it."""
    dotenv = directory / DOTENV
    if not dotenv.exists():
        return environ
    try:
        variables = dict(read_env_file(dotenv, str(dotenv)))
    except Invalid as error:
        raise ConfigError(list(error.messages)) from None
    variables.update(environ)
    return variables


def _read(path: Path) -> str:
    try:
        data = read_regular(path, TOML_SIZE_MAX)
    except OSError as error:
        raise ConfigError([f"failed to read {path}: {error.strerror}"]) from error
    except Unreadable as error:
        raise ConfigError([f"failed to read {path}: it {error}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise ConfigError([f"{path}:{line}:{column}: not valid UTF-8"]) from error


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([_syntax_error(str(path), text, str(error))]) from error
    # tomllib descends into nested arrays and tables by recursion, without a limit.
    except RecursionError as error:
        raise ConfigError([f"{path}: values are nested too deeply to parse"]) from error


def _syntax_error(file: str, text: str, message: str) -> str:
    """Turn tomllib's `MESSAGE (at line L, column C)` into `FILE:L:C: message`."""
    match = _DECODE_POSITION.fullmatch(message)
    if match is None:
        return f"{file}: {message}"
    if match["line"] is not None:
        line, column = int(match["line"]), int(match["col"])
    else:
        line, column = text.count("\n") + 1, len(text) - text.rfind("\n")
    reason = match["message"]
    if reason.startswith(_REPEATS):
        reason = _repeated_key(text) or reason
    return f"{file}:{line}:{column}: {reason[:1].lower()}{reason[1:]}"


# tomllib's words for a key or table given twice, which do not say which.
_REPEATS = ("Cannot overwrite a value", "Cannot declare")
_ALREADY = re.compile(r'Key "(?P<key>.*)" already exists\.')


def _repeated_key(text: str) -> str | None:
    """`the key "name" is given twice; valid: ...`, read by tomlkit, which names the key
    tomllib only points at; None if tomlkit says otherwise."""
    import tomlkit.exceptions

    try:
        tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as error:
        found = _ALREADY.match(str(error))
        if found:
            key = found["key"]
            return f'the key "{key}" is given twice; valid: each key once in its table'
    return None


def _container_tables(
    document: dict[str, Any], findings: Findings
) -> list[tuple[Spot, object, str | None]]:
    """Find the container tables: each with its spot, its value, and the name its key gives."""
    root = Spot((), findings)
    for key in document:
        if key not in _TOP_KEYS:
            unknown_key(root.child(key), _TOP_KEYS)

    found: list[tuple[Spot, object, str | None]] = []
    if "container" in document:
        found.append((root.child("container"), document["container"], None))
    if "containers" in document:
        found.extend(_named_tables(document["containers"], root.child("containers")))
    if "container" in document and "containers" in document:
        both = "[container] and [containers] cannot both be used"
        root.child("containers").fail(f"{both}; {_TOP_VALID}")
    if not found:
        where = root.child("containers") if "containers" in document else root
        where.fail(f"no container is defined; {_TOP_VALID}")
    return found


def _named_tables(value: object, spot: Spot) -> list[tuple[Spot, object, str | None]]:
    if not isinstance(value, dict):
        spot.wrong_type("a table of container tables, like [containers.web]", value)
        return []
    return [(spot.child(name), table, name) for name, table in value.items()]


def _read_project(document: dict[str, Any], findings: Findings, path: Path) -> str:
    """The project's name: from the `[project]` table, else the file's name."""
    spot = Spot(("project",), findings)
    read = Read(spot)
    table = document.get("project", {})
    if isinstance(table, dict):
        read_table(read, table, settings.PROJECT, substitute_values=True)
    else:
        spot.wrong_type('a table like [project] with name = "shop"', table)
    if "name" in read.raw:
        # Given: either valid, or its problems are recorded already.
        return str(read.values.get("name") or "")
    return _name_from_file(path, spot.child("name"))


def _name_from_file(path: Path, spot: Spot) -> str:
    try:
        return values.parse_name(path.stem, "project")
    except Invalid as error:
        for message in error.messages:
            spot.fail(f"{message}; or give the project a name in a [project] table", path.stem)
        return ""


def _read_container(spot: Spot, table: object, key_name: str | None) -> Read:
    """Convert one container table, setting by setting, through the setting table."""
    entry = Read(spot)
    if not isinstance(table, dict):
        spot.wrong_type("a table of container settings", table)
        return entry

    # In [containers.NAME], NAME is the container's name unless the table gives one.
    if key_name is not None and "name" not in table:
        _read_key_name(entry, key_name)
    implied = ("name",) if key_name is not None else ()
    read_table(entry, table, settings.SETTINGS, substitute_values=True, implied=implied)
    return entry


def _read_key_name(entry: Read, key_name: str) -> None:
    try:
        entry.values["name"] = values.parse_name(key_name)
    except Invalid as error:
        for message in error.messages:
            entry.spot.fail(f"{message}; or give this table a name key", key_name)


def _check_names_unique(entries: list[Read]) -> None:
    first: dict[str, Spot] = {}
    for entry in entries:
        name = entry.values.get("name")
        if name is None:
            continue
        if name not in first:
            first[name] = entry.spot
            continue
        spot = entry.spot.child("name") if "name" in entry.raw else entry.spot
        spot.fail(
            f"the name is already used by {render_path(first[name].path)}; "
            "valid: a name no other container of this file has",
            name,
        )


def _check_pull_settings(entries: list[Read]) -> None:
    """Refuse pull settings beside an image layout, which is read from disk, never pulled."""
    for entry in entries:
        if not isinstance(entry.values.get("image"), LayoutImage):
            continue
        for key in _PULL_KEYS:
            if key in entry.raw:
                entry.spot.child(key).fail(
                    'applies only to an image from a registry, not to an "oci:" layout; '
                    "valid: no such key beside a layout",
                    entry.raw[key],
                )


def _check_ports_unique(entries: list[Read]) -> None:
    """Refuse two mappings that would bind the same host address, port and protocol."""
    published: list[tuple[PortMapping, Spot]] = []
    for entry in entries:
        for port, spot, raw in _ports_with_items(entry):
            clash = next(((other, at) for other, at in published if _overlap(port, other)), None)
            if clash is None:
                published.append((port, spot))
            else:
                spot.fail(_clash_message(port, *clash), raw)


def _ports_with_items(entry: Read) -> Iterator[tuple[PortMapping, Spot, object]]:
    """Each mapping of a container with the list item it came from: a range makes several."""
    ports = iter(entry.values.get("ports", ()))
    for index, raw in enumerate(entry.raw.get("ports", ()) if "ports" in entry.values else ()):
        count = len(values.parse_ports(raw)) if isinstance(raw, str) else 1
        for _ in range(count):
            yield next(ports), entry.spot.child("ports").child(index), raw


def _clash_message(port: PortMapping, other: PortMapping, other_spot: Spot) -> str:
    where = render_path(other_spot.path)
    if port.host_ip == other.host_ip:
        clash = f"host address {_host_address(port)} is already published by {where}"
    else:
        clash = f"host address {_host_address(port)} overlaps {_host_address(other)} of {where}"
    return f"{clash}; valid: a host port, address or protocol no other mapping here uses"


def _overlap(one: PortMapping, other: PortMapping) -> bool:
    """Whether both mappings bind one socket: the same port, and addresses that meet.

    An unspecified address (0.0.0.0, ::) binds every address of its family, so it meets
    every address of that family.
    """
    if (one.host_port, one.protocol) != (other.host_port, other.protocol):
        return False
    first, second = ipaddress.ip_address(one.host_ip), ipaddress.ip_address(other.host_ip)
    if first == second:
        return True
    return first.version == second.version and (first.is_unspecified or second.is_unspecified)


def _host_address(port: PortMapping) -> str:
    ip = f"[{port.host_ip}]" if ":" in port.host_ip else port.host_ip
    return f"{ip}:{port.host_port}/{port.protocol.value}"


def _describe(file: str, text: str, problems: list[Problem]) -> list[str]:
    """Render the problems, each with its line, in the order of the file; past the first
    `PROBLEMS_SHOWN`, only their number: a file that wrong is not fixed line by line."""
    offset_of = offset_locator(text)
    shown = problems[:PROBLEMS_SHOWN]
    located = [(offset_of(problem.path), problem) for problem in shown]
    # Problems without a place concern the whole file: they come first.
    located.sort(key=lambda pair: -1 if pair[0] is None else pair[0])
    lines = [
        render_problem(file, None if offset is None else line_at(text, offset), problem)
        for offset, problem in located
    ]
    if len(problems) > len(shown):
        lines.append(f"{file}: and {len(problems) - len(shown)} more problems")
    return lines
