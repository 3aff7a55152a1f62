"""Unit files rendered from unit properties: pure.

Each fixture in tests/fixtures/unitfiles is a property list as StartTransientUnit takes
it (`NAME.TYPE.json`) with the unit file it must give beside it (`NAME.TYPE`). The
fixtures' files were also loaded by a real systemd 252, which read back each property
as the list states it (see tests/system/test_persistence.py for the same check on the
properties sdpod gives its containers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdpod.config.model import (
    Container,
    Dependency,
    HealthCheck,
    LayoutImage,
    Project,
    ReadyWhen,
    Resources,
    RestartPolicy,
)
from sdpod.errors import SystemdError
from sdpod.units import unitfile
from sdpod.units.translate import Property, service_properties

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "unitfiles"
CASES = sorted(path.name.removesuffix(".json") for path in FIXTURES.glob("*.json"))


def load_properties(path: Path) -> list[Property]:
    return [(name, (sig, value)) for name, (sig, value) in json.loads(path.read_text())]


@pytest.mark.parametrize("case", CASES)
def test_fixture(case: str) -> None:
    unit_type = case.rsplit(".", 1)[1]
    properties = load_properties(FIXTURES / f"{case}.json")

    assert unitfile.render(unit_type, properties) == (FIXTURES / case).read_text()


def test_every_fixture_has_its_expected_file() -> None:
    assert CASES, f"no fixtures in {FIXTURES}"
    for case in CASES:
        assert (FIXTURES / case).is_file(), f"{case}.json has no expected unit file beside it"


@pytest.mark.parametrize(
    ("usec", "text"),
    [
        (0, "0"),
        (1_000_000, "1s"),
        (90_000_000, "90s"),
        (100_000, "100ms"),
        (1_500_000, "1500ms"),
        (250, "250us"),
        (2**64 - 1, "infinity"),
    ],
)
def test_durations(usec: int, text: str) -> None:
    assert unitfile.property_lines(("RestartUSec", ("t", usec))) == [("RestartSec", text)]


@pytest.mark.parametrize(
    ("word", "written"),
    [
        ("plain/path-1.2", "plain/path-1.2"),
        ("two words", '"two words"'),
        ("", '""'),
        (";", '";"'),
        ("50%", "50%%"),
        ('say "hi"', '"say \\"hi\\""'),
        ("a\\b", '"a\\\\b"'),
        ("new\nline", '"new\\nline"'),
        ("$HOME", "$HOME"),
    ],
)
def test_command_words(word: str, written: str) -> None:
    exec_start = ("ExecStart", ("a(sasb)", [("/bin/echo", ["/bin/echo", word], False)]))
    assert unitfile.property_lines(exec_start) == [("ExecStart", f"/bin/echo {written}")]


def test_argv0_apart_from_the_path_is_written_with_at() -> None:
    exec_start = ("ExecStart", ("a(sasb)", [("/usr/bin/busybox", ["sh", "-c", "true"], True)]))
    assert unitfile.property_lines(exec_start) == [("ExecStart", "-@/usr/bin/busybox sh -c true")]


@pytest.mark.parametrize(
    ("prop", "problem"),
    [
        (("ExecStart", ("a(sasb)", [("python", ["python"], False)])), "absolute path"),
        (("Description", ("s", "two\nlines")), "control character"),
        (("Description", ("s", "ends in \\")), "final backslash"),
        (("ExecStartEx", ("a(sasas)", [])), r"signature a\(sasas\)"),
    ],
)
def test_what_no_unit_file_can_say_is_refused(prop: Property, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        unitfile.render("service", [prop])
    assert prop[0] in str(raised.value)


def test_sections_follow_the_unit_type() -> None:
    text = unitfile.render("timer", [("Description", ("s", "t")), ("Unit", ("s", "x.service"))])
    assert "[Unit]\nDescription=t\n" in text
    assert "[Timer]\nUnit=x.service\n" in text
    assert text.endswith("[Install]\nWantedBy=timers.target\n")


def full_project() -> Project:
    """Containers that use every setting of the model that reaches a unit property."""
    image = LayoutImage(Path("/srv/web image"), "v1")
    health = HealthCheck(("wget", "-q", "-O-", "http://127.0.0.1/"), interval=5.0)
    web = Container(
        "web",
        image,
        restart=RestartPolicy.ALWAYS,
        restart_delay=2.5,
        stop_signal=3,
        stop_timeout=30.0,
        resources=Resources(2**28, 2**27, 1.5, 200, 64, 300),
        health=health,
        ready=ReadyWhen.HEALTHY,
        depends_on=(Dependency("db"),),
        description="The shop's 100% web front",
        documentation=("https://example.org/shop", "man:httpd(8)"),
    )
    db = Container("db", image, restart=RestartPolicy.NO)
    return Project(Path("/srv/shop.toml"), (web, db), name="my-shop")


def test_every_property_of_a_container_has_a_unit_file_form() -> None:
    project = full_project()
    argv = ["/opt/sdpod/venv/bin/python", "-m", "sdpod.runtime", "launch", "/data dir/web"]
    for container in project.containers:
        properties: Any = service_properties(container, project, argv)
        text = unitfile.render("service", properties)
        assert '"/data dir/web"' in text


def test_user_unit_dir_follows_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert unitfile.user_unit_dir() == tmp_path / "systemd" / "user"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert unitfile.user_unit_dir() == Path.home() / ".config" / "systemd" / "user"


def test_write_units_reports_only_changed_files(tmp_path: Path) -> None:
    units = [("a.service", "service", [("Type", ("s", "notify"))])]
    directory = tmp_path / "systemd" / "user"

    assert unitfile.write_units(units, directory) == ["a.service"]
    assert unitfile.write_units(units, directory) == []
    assert "Type=notify\n" in (directory / "a.service").read_text()
    assert unitfile.remove_unit("a.service", directory)
    assert not unitfile.remove_unit("a.service", directory)


def test_write_units_names_the_unit_it_cannot_write(tmp_path: Path) -> None:
    units = [("b.service", "service", [("Description", ("s", "a\nb"))])]

    with pytest.raises(SystemdError, match=r"failed to write the unit file of b\.service"):
        unitfile.write_units(units, tmp_path)
    assert not (tmp_path / "b.service").exists()
