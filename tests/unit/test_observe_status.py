"""What `ps` and `status` make of unit properties, health files and bundles: pure parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdpod.cli.ps import COLUMNS, duration, port_text, row_cells, row_object, table
from sdpod.cli.status import cpu_time, health_text, report, size
from sdpod.config.model import PortMapping, Protocol
from sdpod.health.state import HealthState, Status
from sdpod.observe import ContainerRow, ContainerStatus, read_health
from sdpod.units.status import SINCE_PROPERTY, UNSET, UnitDetails, accounted, seconds

NOW = 1_800_000_000.0
HEALTHY = {"status": "healthy", "failing_streak": 0, "checked_at": NOW - 5, "output": "ok\n"}


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $XDG_RUNTIME_DIR/sdpod, where the health files live."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "sdpod").mkdir()
    return tmp_path / "sdpod"


def test_a_whole_health_file_is_shown_in_any_state(runtime_dir: Path) -> None:
    (runtime_dir / "web.health").write_text(json.dumps(HEALTHY))
    expected = HealthState(Status.HEALTHY, 0, NOW - 5, "ok\n")
    assert read_health("web", True, "active") == expected
    # A container that a failing check stopped keeps its last verdict until it starts.
    assert read_health("web", True, "inactive") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        json.dumps(HEALTHY)[:-7],
        "[]",
        json.dumps(dict(HEALTHY, status="sick")),
        json.dumps({k: v for k, v in HEALTHY.items() if k != "output"}),
    ],
)
def test_an_odd_health_file_shows_nothing(runtime_dir: Path, text: str) -> None:
    (runtime_dir / "web.health").write_text(text)
    assert read_health("web", True, "active") is None


def test_no_file_is_starting_only_for_a_running_container_with_a_check(
    runtime_dir: Path,
) -> None:
    assert read_health("web", True, "active") == HealthState(Status.STARTING)
    assert read_health("web", True, "activating") == HealthState(Status.STARTING)
    assert read_health("web", True, "inactive") is None
    assert read_health("web", False, "active") is None


def test_unset_counters_and_never_timestamps_become_none() -> None:
    assert UNSET == 18446744073709551615
    assert accounted(UNSET) is None
    assert accounted(0) == 0
    assert accounted(84369000) == 84369000
    assert seconds(0) is None
    assert seconds(1_500_000) == 1.5


def test_every_active_state_has_a_since_timestamp() -> None:
    # The states of org.freedesktop.systemd1(5), ActiveState.
    states = {"active", "reloading", "inactive", "failed", "activating", "deactivating"}
    assert states <= set(SINCE_PROPERTY)
    assert SINCE_PROPERTY["active"] == "ActiveEnterTimestamp"
    assert SINCE_PROPERTY["failed"] == "InactiveEnterTimestamp"


@pytest.mark.parametrize(
    ("span", "text"),
    [(0, "0s"), (59.9, "59s"), (60, "1m 0s"), (303, "5m 3s"), (7500, "2h 5m"), (7230, "2h 0m")],
)
def test_durations_show_their_two_largest_units(span: float, text: str) -> None:
    assert duration(span) == text


def test_days() -> None:
    assert duration(3 * 86400 + 4 * 3600 + 59) == "3d 4h"


WEB_PORTS = (
    PortMapping("127.0.0.1", 8080, 80),
    PortMapping("::1", 5353, 53, Protocol.UDP),
)
WEB = ContainerRow(
    name="web",
    unit="sdpod-web.service",
    loaded=True,
    active_state="active",
    sub_state="running",
    health=HealthState(Status.HEALTHY, 0, NOW - 5, "ok\n"),
    uptime=303.7,
    ports=WEB_PORTS,
    image="oci:/srv/web-image:latest",
)
GONE = ContainerRow("old", "sdpod-old.service", False, "inactive", "dead", None, None, (), "?")


def test_ports_are_written_as_in_the_toml() -> None:
    assert port_text(WEB_PORTS[0]) == "127.0.0.1:8080:80/tcp"
    assert port_text(WEB_PORTS[1]) == "[::1]:5353:53/udp"


def test_the_table_has_a_column_per_fact() -> None:
    lines = table([COLUMNS, row_cells(WEB), row_cells(GONE)])
    assert lines[0].split() == ["NAME", "UNIT", "STATE", "HEALTH", "UPTIME", "PORTS", "IMAGE"]
    assert lines[1].split() == [
        "web",
        "sdpod-web.service",
        "active",
        "(running)",
        "healthy",
        "5m",
        "3s",
        "127.0.0.1:8080:80/tcp,",
        "[::1]:5353:53/udp",
        "oci:/srv/web-image:latest",
    ]
    assert lines[2].split() == [
        "old",
        "sdpod-old.service",
        "inactive",
        "(not",
        "loaded)",
        "-",
        "-",
        "-",
        "?",
    ]
    # Columns line up: every STATE cell starts where the header's does.
    start = lines[0].index("STATE")
    assert lines[1][start:].startswith("active") and lines[2][start:].startswith("inactive")


def test_json_rows_carry_the_same_facts_with_stable_names() -> None:
    assert row_object(WEB) == {
        "name": "web",
        "unit": "sdpod-web.service",
        "loaded": True,
        "state": "active",
        "sub_state": "running",
        "health": "healthy",
        "uptime": 303,
        "ports": [
            {"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
            {"host_ip": "::1", "host_port": 5353, "container_port": 53, "protocol": "udp"},
        ],
        "image": "oci:/srv/web-image:latest",
    }
    assert row_object(GONE)["uptime"] is None
    assert row_object(GONE)["health"] is None
    assert json.loads(json.dumps(row_object(GONE)))["loaded"] is False


def test_sizes_and_cpu_time() -> None:
    assert size(512) == "512B"
    assert size(1536) == "1.5K"
    assert size(12 * 1024 * 1024 + 300 * 1024) == "12.3M"
    assert size(3 * 1024**4) == "3.0T"
    assert cpu_time(84_369_000) == "0.084s"
    assert cpu_time(125 * 10**9) == "2m 5s"


def test_health_text_names_the_streak_and_last_output() -> None:
    assert health_text(None, NOW) == "-"
    assert health_text(WEB.health, NOW) == "healthy, checked 5s ago: ok"
    failing = HealthState(Status.UNHEALTHY, 2, NOW - 61, "connecting\nrefused\n")
    assert health_text(failing, NOW) == "unhealthy, checked 1m 1s ago, 2 failing in a row: refused"
    assert health_text(HealthState(), NOW) == "starting, not checked yet"


DETAILS = UnitDetails(
    name="sdpod-web.service",
    active_state="active",
    sub_state="running",
    since=NOW - 303,
    main_pid=4242,
    memory_bytes=None,
    cpu_nanoseconds=84_369_000,
    tasks=None,
    restarts=1,
)


def test_status_report() -> None:
    lines = report(ContainerStatus(WEB, DETAILS, ("first line", "last line"), None), NOW)
    text = "\n".join(lines)
    assert lines[0] == "web"
    pairs = (line.split(":", 1) for line in lines[1:11])
    facts = {label.strip(): value.strip() for label, value in pairs}
    assert facts["unit"] == "sdpod-web.service"
    assert facts["state"].startswith("active (running) since ")
    assert facts["state"].endswith("(5m 3s ago)")
    assert facts["main PID"] == "4242"
    assert facts["memory"] == "not accounted"
    assert facts["CPU time"] == "0.084s"
    assert facts["tasks"] == "not accounted"
    assert facts["restarts"] == "1"
    assert facts["ports"] == "127.0.0.1:8080:80/tcp, [::1]:5353:53/udp"
    assert text.endswith("last 2 log lines:\n  first line\n  last line")


def test_status_of_a_container_whose_unit_is_gone() -> None:
    lines = report(ContainerStatus(GONE, None, (), "journalctl failed: exit 1"), NOW)
    text = "\n".join(lines)
    assert "inactive (not loaded)" in text
    assert "restarts" not in text
    assert text.endswith("no log lines\n  (journalctl failed: exit 1)")
