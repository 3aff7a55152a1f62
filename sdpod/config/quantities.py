"""Numbers with units in settings: sizes, durations and signals, read and written back.

Each parser takes the TOML value as parsed (a string, or a bare number) and either
returns the number the model holds or raises `Invalid` with a message that ends in what
would be valid. The writers give the normalised text `dump` and the reference show.
"""

from __future__ import annotations

import math
import re
import signal
from decimal import Decimal

from sdpod.config.problems import Invalid

SIZE_SYNTAX = 'a size like "512M", "1.5G" or "64k" (K, M, G, T are powers of 1024), or bytes'
_SIZE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[KMGTkmgt]?)")
_SIZE_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# systemd reads the largest 64-bit value of a limit as "infinity", no limit at all.
_SIZE_MAX = 2**64 - 2

DURATION_SYNTAX = 'a duration like "30s", "2m", "1h30m" or "500ms", or a number of seconds'
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:us|ms|s|m|h))+")
_BARE_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DURATION_PART = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>us|ms|s|m|h)")
_USEC_PER_UNIT = {"us": 1, "ms": 1000, "s": 10**6, "m": 60 * 10**6, "h": 3600 * 10**6}
USEC_PER_SECOND = 10**6
# A day bounds every duration: no stop, restart delay or health check needs longer, and
# sums of them stay far inside systemd's 64-bit microseconds.
DURATION_MAX_SECONDS = 24 * 3600

SIGNAL_SYNTAX = 'a signal like "SIGTERM" or "TERM", or its number, 1 to 64'
# Linux numbers real-time signals up to 64; systemd accepts any signal below _NSIG.
_SIGNAL_MAX = signal.NSIG - 1
_REALTIME = re.compile(r"SIGRTMIN\+(?P<offset>[0-9]{1,2})")


def parse_size(value: str | int) -> int:
    """A number of bytes from `"1.5G"`, `"64k"`, `"4096"` or the integer 4096."""
    if isinstance(value, int):
        number = Decimal(value)
    else:
        match = _SIZE.fullmatch(value)
        # A fraction needs a unit to be a fraction of: bytes come whole.
        if match is None or ("." in match["number"] and not match["unit"]):
            raise Invalid(f"not a size; valid: {SIZE_SYNTAX}")
        number = Decimal(match["number"]) * _SIZE_FACTORS[match["unit"].lower()]
    size = int(number)
    if size < 1:
        raise Invalid(f"the size is below one byte; valid: {SIZE_SYNTAX}")
    if size > _SIZE_MAX:
        raise Invalid(f"the size is too large; valid: at most {_SIZE_MAX} bytes")
    return size


def parse_duration(value: str | float, allow_zero: bool) -> float:
    """Seconds from `"1h30m"`, `"500ms"`, or a bare number of seconds."""
    usec = _duration_usec(value)
    # A timeout or interval shorter than a second leaves systemd no time to stop a
    # container, or a check to run: below it, units fail in ways that name no cause.
    least = "0s" if allow_zero else "1s"
    if usec < (0 if allow_zero else USEC_PER_SECOND):
        raise Invalid(f"the duration is below {least}; valid: {least} to 24h")
    if usec > DURATION_MAX_SECONDS * USEC_PER_SECOND:
        raise Invalid(f"the duration is longer than a day; valid: {least} to 24h")
    return usec / USEC_PER_SECOND


def _duration_usec(value: str | float) -> int:
    if not isinstance(value, str):
        if not math.isfinite(value):
            raise Invalid(f"not a finite number; valid: {DURATION_SYNTAX}")
        return round(Decimal(value) * USEC_PER_SECOND)
    if _BARE_NUMBER.fullmatch(value):
        return round(Decimal(value) * USEC_PER_SECOND)  # "0", "30": seconds, as systemd reads
    if _DURATION.fullmatch(value) is None:
        raise Invalid(f"not a duration; valid: {DURATION_SYNTAX}")
    total = sum(
        Decimal(part["number"]) * _USEC_PER_UNIT[part["unit"]]
        for part in _DURATION_PART.finditer(value)
    )
    return round(total)


def format_duration(seconds: float) -> str:
    """The shortest text `parse_duration` reads back as `seconds`: `"1m30s"`, `"500ms"`."""
    usec = round(seconds * USEC_PER_SECOND)
    parts = []
    for unit in ("h", "m", "s", "ms", "us"):
        count, usec = divmod(usec, _USEC_PER_UNIT[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_signal(value: str | int) -> int:
    """A signal number from `"SIGTERM"`, `"TERM"`, `"SIGRTMIN+2"` or 15."""
    if isinstance(value, int):
        if not 1 <= value <= _SIGNAL_MAX:
            raise Invalid(f"signal {value} is out of range; valid: {SIGNAL_SYNTAX}")
        return value
    name = value if value.startswith("SIG") else f"SIG{value}"
    realtime = _REALTIME.fullmatch(name)
    if realtime is not None:
        number = signal.SIGRTMIN + int(realtime["offset"])
        if number > signal.SIGRTMAX:
            raise Invalid(f"signal {number} is out of range; valid: {SIGNAL_SYNTAX}")
        return number
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise Invalid(f"unknown signal; valid: {SIGNAL_SYNTAX}") from None


def signal_name(number: int) -> str:
    """`"SIGTERM"` for 15; real-time signals as `"SIGRTMIN+N"`; others as the number."""
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    return str(number)
