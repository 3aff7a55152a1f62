"""A health check's timer and service properties, and what the container's unit adds: pure."""

from __future__ import annotations

from pathlib import Path

from sdpod.config.model import Container, HealthCheck, LayoutImage
from sdpod.units import health

ARGV = ["/py", "-m", "sdpod.health", "check", "/bundle"]
CHECK = HealthCheck(("true",), interval=30.0, timeout=5.0)


def web(check: HealthCheck | None = CHECK) -> Container:
    return Container("web", LayoutImage(Path("/img"), "latest"), health=check)


def test_the_timer_and_service_of_a_check() -> None:
    units = dict(health.health_units(web(), ARGV, "sdpod-shop.slice"))

    assert units == {
        "sdpod-web-health.timer": [
            ("Description", ("s", "sdpod container web: health check timer")),
            (
                "TimersMonotonic",
                ("a(st)", [("OnActiveSec", 1_000_000), ("OnUnitActiveSec", 30_000_000)]),
            ),
            ("AccuracyUSec", ("t", 1_000_000)),
            ("BindsTo", ("as", ["sdpod-web.service"])),
            ("StartLimitIntervalUSec", ("t", 0)),
        ],
        "sdpod-web-health.service": [
            ("Description", ("s", "sdpod container web: health check")),
            ("Type", ("s", "oneshot")),
            ("ExecStart", ("a(sasb)", [("/py", ARGV, False)])),
            ("NotifyAccess", ("s", "main")),
            ("LogLevelMax", ("i", 5)),
            ("StartLimitIntervalUSec", ("t", 0)),
            ("CollectMode", ("s", "inactive-or-failed")),
            ("TimeoutStartUSec", ("t", 35_000_000)),
            ("SyslogIdentifier", ("s", "web-health")),
            ("Slice", ("s", "sdpod-shop.slice")),
        ],
    }


def test_a_short_interval_is_also_the_first_checks_delay_and_sharpens_accuracy() -> None:
    timer = dict(health.timer_properties(web(), HealthCheck(("true",), interval=0.5)))
    assert timer["TimersMonotonic"] == (
        "a(st)",
        [("OnActiveSec", 500_000), ("OnUnitActiveSec", 500_000)],
    )
    assert timer["AccuracyUSec"] == ("t", 50_000)


def test_the_containers_unit_wants_its_timer() -> None:
    assert health.main_unit_properties(web()) == [("Wants", ("as", ["sdpod-web-health.timer"]))]


def test_a_container_without_a_check_gets_no_units() -> None:
    assert health.health_units(web(None), ARGV) == []
    assert health.main_unit_properties(web(None)) == []
    service = dict(health.service_properties(web(), CHECK, ARGV))
    assert "Slice" not in service
