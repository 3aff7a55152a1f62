"""Sizes, durations and signals: what each accepts, what it refuses, and the round trip."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdpod.config.problems import Invalid
from sdpod.config.quantities import (
    DURATION_MAX_SECONDS,
    USEC_PER_SECOND,
    format_duration,
    parse_duration,
    parse_signal,
    parse_size,
    signal_name,
)


@pytest.mark.parametrize(
    ("given", "size"),
    [
        ("512M", 512 * 1024**2),
        ("1.5G", 3 * 1024**3 // 2),
        ("64k", 65536),
        ("64K", 65536),
        ("2t", 2 * 1024**4),
        ("4096", 4096),
        (4096, 4096),
        ("1.3k", 1331),
        ("1", 1),
    ],
)
def test_sizes(given: str | int, size: int) -> None:
    assert parse_size(given) == size


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("512MB", "not a size"),
        ("1.5", "not a size"),
        ("-1", "not a size"),
        (" 1G", "not a size"),
        ("1 G", "not a size"),
        ("", "not a size"),
        (0, "below one byte"),
        ("0.5", "not a size"),
        ("0.0001k", "below one byte"),
        (-5, "below one byte"),
        ("16777216T", "too large"),
        (2**64 - 1, "too large"),
    ],
)
def test_sizes_refused(given: str | int, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        parse_size(given)


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("1h1m1s1ms1us", 3661.001001),
        ("30s1m", 90.0),
        (10, 10.0),
        (2.5, 2.5),
        ("24h", 86400.0),
    ],
)
def test_durations(given: str | float, seconds: float) -> None:
    assert parse_duration(given, allow_zero=True) == seconds


@pytest.mark.parametrize(
    ("given", "allow_zero", "reason"),
    [
        ("30 s", True, "not a duration"),
        ("5 min", True, "not a duration"),
        ("2d", True, "not a duration"),
        ("-1s", True, "not a duration"),
        ("s", True, "not a duration"),
        (float("inf"), True, "not a finite number"),
        (float("nan"), True, "not a finite number"),
        (-0.5, True, "below 0s"),
        (0, False, "below 1s"),
        ("0s", False, "below 1s"),
        ("999ms", False, "below 1s"),
        ("24h1us", True, "longer than a day"),
        (86401, True, "longer than a day"),
    ],
)
def test_durations_refused(given: str | float, allow_zero: bool, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        parse_duration(given, allow_zero)


def test_zero_is_a_duration_where_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == 0.0
    assert parse_duration(0, allow_zero=True) == 0.0


def test_a_bare_number_in_a_string_is_seconds_as_systemd_reads_it() -> None:
    assert parse_duration("0", allow_zero=True) == 0.0
    assert parse_duration("30", allow_zero=False) == 30.0
    assert parse_duration("1.5", allow_zero=False) == 1.5


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0s"), (1.0, "1s"), (90.0, "1m30s"), (0.5, "500ms"), (3600.000001, "1h1us")],
)
def test_durations_are_written_shortest(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=DURATION_MAX_SECONDS * USEC_PER_SECOND))
def test_written_durations_read_back(usec: int) -> None:
    seconds = usec / USEC_PER_SECOND
    assert parse_duration(format_duration(seconds), allow_zero=True) == seconds


@pytest.mark.parametrize(
    ("given", "number"),
    [
        ("SIGTERM", 15),
        ("TERM", 15),
        ("SIGKILL", 9),
        ("QUIT", 3),
        (15, 15),
        (64, 64),
        ("SIGRTMIN", signal.SIGRTMIN),
        ("RTMIN+3", signal.SIGRTMIN + 3),
        ("SIGRTMAX", signal.SIGRTMAX),
    ],
)
def test_signals(given: str | int, number: int) -> None:
    assert parse_signal(given) == number


@pytest.mark.parametrize("given", ["sigterm", "TERMINATE", "SIG", "", "15", 0, 65, -15])
def test_signals_refused(given: str | int) -> None:
    with pytest.raises(Invalid):
        parse_signal(given)


@pytest.mark.parametrize("number", range(1, signal.NSIG))
def test_every_signal_name_reads_back(number: int) -> None:
    name = signal_name(number)
    assert parse_signal(int(name) if name.isdigit() else name) == number
