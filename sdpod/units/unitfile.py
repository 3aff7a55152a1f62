"""Unit files: written from the same properties that a transient unit is started with.

`render` is pure: D-Bus properties in, the text of a unit file out, in the syntax of
systemd.syntax(7) and systemd.unit(5). The tables below map each property to its key
and value syntax; a property they cannot write is an error, never silently dropped, so
that a persistent unit never differs from the transient one it replaces.

`write_units` keeps the files in the user's unit directory, which the user manager reads
(`$XDG_CONFIG_HOME/systemd/user`, systemd.unit(5) "Unit File Load Path").
"""

from __future__ import annotations

import os
import signal
import string
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sdpod.errors import SystemdError
from sdpod.runtime.bundle import write_atomically
from sdpod.units.translate import Property

# A unit to write: its name, its type ("service", "timer") and its properties.
UnitSpec = tuple[str, str, Sequence[Property]]

HEADER = (
    "# Written by sdpod, from the properties it would give a transient unit. `sdpod up`\n"
    "# rewrites this file when the TOML changes and `sdpod disable` removes it: edit the TOML.\n"
)

UINT64_MAX = 2**64 - 1  # systemd's "infinity" for sizes, counts and durations
USEC_PER_SECOND = 1_000_000
USEC_PER_MS = 1_000

# The target each type of unit is installed into (systemd.special(7)): services start
# with the user's session or at boot when linger is on, timers with the timers.
INSTALL_TARGETS = {"service": "default.target", "timer": "timers.target"}

# The settings of the [Unit] section (systemd.unit(5)); every other property belongs to
# the section of the unit's type ([Service] holds exec, kill and resource settings).
UNIT_SECTION_KEYS = frozenset(
    {
        "Description",
        "Documentation",
        "Wants",
        "Requires",
        "Requisite",
        "BindsTo",
        "PartOf",
        "Upholds",
        "Conflicts",
        "Before",
        "After",
        "OnFailure",
        "OnSuccess",
        "PropagatesReloadTo",
        "ReloadPropagatedFrom",
        "PropagatesStopTo",
        "StopPropagatedFrom",
        "JoinsNamespaceOf",
        "RequiresMountsFor",
        "OnFailureJobMode",
        "IgnoreOnIsolate",
        "StopWhenUnneeded",
        "RefuseManualStart",
        "RefuseManualStop",
        "AllowIsolate",
        "DefaultDependencies",
        "CollectMode",
        "FailureAction",
        "SuccessAction",
        "FailureActionExitStatus",
        "SuccessActionExitStatus",
        "JobTimeoutSec",
        "JobRunningTimeoutSec",
        "JobTimeoutAction",
        "StartLimitIntervalSec",
        "StartLimitBurst",
        "StartLimitAction",
        "RebootArgument",
    }
)

# Characters a word may hold without quotes in a command line or a list.
_BARE = frozenset(string.ascii_letters + string.digits + "-_./:=,+@%$()[]{}#?&~!*^<>|")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _duration(usec: int) -> str:
    """systemd.time(5) spans: the largest unit that states `usec` exactly."""
    if usec == UINT64_MAX:
        return "infinity"
    if usec % USEC_PER_SECOND == 0:
        return f"{usec // USEC_PER_SECOND}s" if usec else "0"
    if usec % USEC_PER_MS == 0:
        return f"{usec // USEC_PER_MS}ms"
    return f"{usec}us"


def _specifiers(text: str) -> str:
    # Unit files expand %-specifiers in almost every value (systemd.unit(5)); a literal
    # percent sign is written %%.
    return text.replace("%", "%%")


def _plain(name: str, text: str) -> str:
    """A value taken verbatim to the end of its line."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in text) or text.endswith("\\"):
        raise ValueError(f"{name} {text!r} has a control character or a final backslash")
    return _specifiers(text)


def _word(text: str) -> str:
    """One word of a command line or list, quoted where systemd.syntax(7) needs it.

    A lone `;` would separate commands, and is quoted. `$` is left as it is: systemd
    expands variables in the command lines of transient units too, at each start.
    """
    text = _specifiers(text)
    if text and text != ";" and all(c in _BARE for c in text):
        return text
    escaped = "".join(_ESCAPES.get(c, c if c.isprintable() else f"\\x{ord(c):02x}") for c in text)
    return f'"{escaped}"'


def _command(name: str, entry: Sequence[Any]) -> str:
    """An ExecStart= style line: [-][@]PATH ARGV..., from D-Bus's (path, argv, ignore)."""
    path, argv, ignore_failure = entry
    if not str(path).startswith("/"):
        # A leading -, @, :, + or ! of a relative path would be read as a prefix.
        raise ValueError(f"{name} runs {path!r}: only an absolute path can be written")
    argv = [str(arg) for arg in argv] or [str(path)]
    prefix = "-" if ignore_failure else ""
    if argv[0] == path:
        return prefix + " ".join(_word(arg) for arg in argv)
    # `@` says that the second word is argv[0], not the first argument.
    words = [_word(str(path)), *(_word(a) for a in argv)]
    return prefix + "@" + " ".join(words)


def _signal(number: int) -> str:
    """A signal's name as signal(7) and systemd.kill(5) spell it: SIGTERM, SIGRTMIN+3."""
    if signal.SIGRTMIN < number <= signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _cpu_quota(usec_per_second: int) -> str:
    """CPUQuotaPerSecUSec is CPUQuota= in a unit file, in percent of one CPU; a unit
    file states it to a hundredth of a percent (100 us of CPU time per second)."""
    if usec_per_second == UINT64_MAX:
        return ""
    percent = f"{usec_per_second / 10_000:.2f}".rstrip("0").rstrip(".")
    return f"{percent}%"


def _exit_statuses(codes: Sequence[int], signals: Sequence[int]) -> str:
    """The (aiai) of SuccessExitStatus=: exit codes, then signal names (systemd.service(5))."""
    return " ".join([str(code) for code in codes] + [_signal(number) for number in signals])


def _number(value: int) -> str:
    return "infinity" if value == UINT64_MAX else str(int(value))


# Lines of a property: (key, value) pairs; most properties give one.
Lines = list[tuple[str, str]]
Writer = Callable[[str, Any], Lines]

# Properties whose key or value syntax differs from what their signature gives.
BY_NAME: dict[str, Writer] = {
    "CPUQuotaPerSecUSec": lambda _, v: [("CPUQuota", _cpu_quota(v))],
    "KillSignal": lambda n, v: [(n, _signal(v))],
    "FinalKillSignal": lambda n, v: [(n, _signal(v))],
    "RestartKillSignal": lambda n, v: [(n, _signal(v))],
    "WatchdogSignal": lambda n, v: [(n, _signal(v))],
    "SuccessExitStatus": lambda n, v: [(n, _exit_statuses(*v))],
    # Timers: monotonic ones as (base, usec), where the base names the setting.
    "TimersMonotonic": lambda _, v: [(_sec_key(base), _duration(usec)) for base, usec in v],
    "TimersCalendar": lambda _, v: [("OnCalendar", _plain("OnCalendar", spec)) for _, spec in v],
    # Sockets: (type, address) pairs, where the type names the setting (ListenStream=).
    "Listen": lambda _, v: [(f"Listen{kind}", _plain("Listen", address)) for kind, address in v],
}


def _sec_key(name: str) -> str:
    """D-Bus names durations ...USec; the unit file's key is ...Sec (RestartUSec: RestartSec)."""
    return name[: -len("USec")] + "Sec" if name.endswith("USec") else name


def _by_signature(name: str, sig: str, value: Any) -> Lines:
    if sig == "b":
        return [(name, "yes" if value else "no")]
    if sig == "t" and name.endswith("USec"):
        return [(_sec_key(name), _duration(value))]
    if sig in ("t", "u", "i", "x", "q", "n", "y"):
        return [(name, _number(value))]
    if sig == "s":
        return [(name, _plain(name, value))]
    if sig == "as":
        return [(name, " ".join(_word(item) for item in value))] if value else []
    if sig == "a(sasb)":
        return [(name, _command(name, entry)) for entry in value]
    raise ValueError(f"property {name} has signature {sig}, which no unit file key takes here")


def property_lines(prop: Property) -> Lines:
    """The unit file lines of one D-Bus property, empty ones left out."""
    name, (sig, value) = prop
    writer = BY_NAME.get(name)
    lines = writer(name, value) if writer else _by_signature(name, sig, value)
    return [(key, text) for key, text in lines if text != ""]


def _section_of(key: str, unit_type: str) -> str:
    if key in UNIT_SECTION_KEYS or key.startswith(("Condition", "Assert")):
        return "Unit"
    return unit_type.capitalize()


def render(unit_type: str, properties: Iterable[Property]) -> str:
    """The unit file of a unit of `unit_type` ("service", "timer") with `properties`.

    Raises ValueError, naming the property, for one that has no unit file form.
    """
    sections: dict[str, list[str]] = {"Unit": [], unit_type.capitalize(): []}
    for prop in properties:
        for key, text in property_lines(prop):
            sections[_section_of(key, unit_type)].append(f"{key}={text}")
    target = INSTALL_TARGETS.get(unit_type)
    if target is not None:
        sections["Install"] = [f"WantedBy={target}"]
    blocks = [
        f"[{title}]\n" + "".join(f"{line}\n" for line in lines)
        for title, lines in sections.items()
        if lines
    ]
    return HEADER + "\n" + "\n".join(blocks)


def unit_dir() -> Path:
    """Where the administrator's unit files live: the user's own directory, or
    `/etc/systemd/system` for the system's manager (root mode)."""
    return Path("/etc/systemd/system") if os.geteuid() == 0 else user_unit_dir()


def user_unit_dir() -> Path:
    """`$XDG_CONFIG_HOME/systemd/user`, `~/.config/systemd/user` by default."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def unit_path(name: str) -> Path:
    return unit_dir() / name


def write_units(units: Iterable[UnitSpec], directory: Path | None = None) -> list[str]:
    """Write the unit file of each unit; return the names whose text changed.

    The caller reloads the manager when the list is not empty. Each file is replaced
    atomically, so that a manager reading it meanwhile sees the old text or the new.
    `directory` is `unit_dir()` unless given.
    """
    directory = directory or unit_dir()
    rendered = []
    for name, unit_type, properties in units:
        try:
            rendered.append((name, render(unit_type, properties)))
        except ValueError as error:
            raise SystemdError(f"failed to write the unit file of {name}: {error}") from None
    changed = []
    for name, text in rendered:
        path = directory / name
        if _read(path) != text:
            directory.mkdir(parents=True, exist_ok=True)
            write_atomically(path, text)
            path.chmod(0o644)  # as systemctl edit leaves a unit file: nothing in it is secret
            changed.append(name)
    return changed


def remove_unit(name: str, directory: Path | None = None) -> bool:
    """Delete the unit file of `name`; whether there was one."""
    try:
        (directory or unit_dir()).joinpath(name).unlink()
    except FileNotFoundError:
        return False
    return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
