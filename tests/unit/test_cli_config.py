"""`sdpod check` and `sdpod config` on the config fixtures."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from sdpod.cli import main as cli_main

FIXTURES = (Path(__file__).parent.parent / "fixtures" / "config").resolve()


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["sdpod", *args])
    monkeypatch.chdir(FIXTURES)
    try:
        cli_main.main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def test_config_prints_the_normalised_model_as_json_and_toml(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, "config", "--json", "several.toml") == 0
    model = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in model["containers"]] == ["web", "database"]
    assert model["containers"][0]["restart"] == "on-failure"

    assert run(monkeypatch, "config", "several.toml") == 0
    as_toml = tomllib.loads(capsys.readouterr().out)
    assert as_toml["containers"][0]["restart"] == "on-failure"
    assert as_toml["containers"][0]["ports"] == model["containers"][0]["ports"]
    # TOML has no null: a setting with no value (no health check) is left out.
    assert "health" not in as_toml["containers"][0]
    assert as_toml["containers"][0]["hostname"] == "web"


def test_check_exits_1_with_every_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, "check", "several.toml") == 0
    assert "valid" in capsys.readouterr().out

    assert run(monkeypatch, "check", "port-syntax.toml") == cli_main.EXIT_ERROR
    expected = (FIXTURES / "port-syntax.errors").read_text().splitlines()
    assert capsys.readouterr().err.splitlines() == [f"error: {line}" for line in expected]
