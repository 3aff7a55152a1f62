"""Variables from files: `env_file` settings and the `.env` file beside a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpod.config.envfile import read_env_file
from sdpod.config.load import load_project
from sdpod.config.problems import Invalid
from sdpod.errors import ConfigError

IMAGE = Path(__file__).parent.parent / "fixtures" / "config" / "web-image"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_env_file_lines_are_read_as_compose_reads_them(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "web.env",
        "# comment\n\nA=1\nexport B = two words\nC='single # kept'\nD=\"double\"\nE=x # dropped\n",
    )
    assert read_env_file(path) == [
        ("A", "1"),
        ("B", "two words"),
        ("C", "single # kept"),
        ("D", "double"),
        ("E", "x"),
    ]


def test_every_broken_line_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "web.env", "A=1\nno equals\nB='open\n")
    with pytest.raises(Invalid) as raised:
        read_env_file(path, "web.env")
    assert raised.value.messages == (
        'web.env:2: "no equals" is not KEY=VALUE; valid: KEY=VALUE, a # comment or a blank line',
        "web.env:3: the value's quote is not closed; valid: KEY=VALUE, a # comment or a blank line",
    )


def _toml(tmp_path: Path, body: str) -> Path:
    head = f'[container]\nname = "web"\nimage = "oci:{IMAGE}"\n'
    return _write(tmp_path / "web.toml", head + body)


def test_env_files_come_before_env_and_later_files_win(tmp_path: Path) -> None:
    _write(tmp_path / "a.env", "SHARED=a\nONLY_A=1\n")
    _write(tmp_path / "b.env", "SHARED=b\nLATE=b\n")
    toml = _toml(tmp_path, 'env_file = ["a.env", "b.env"]\nenv = { LATE = "toml" }\n')
    (container,) = load_project(toml, {}).containers
    assert dict(container.environment) == {"SHARED": "b", "ONLY_A": "1", "LATE": "toml"}


def test_dotenv_beside_the_toml_fills_variables_the_environment_lacks(tmp_path: Path) -> None:
    _write(tmp_path / ".env", "GREETING=from-dotenv\nTAG=dotenv\n")
    toml = _toml(tmp_path, 'env = { G = "${GREETING}", T = "${TAG}" }\n')
    (container,) = load_project(toml, {"TAG": "environ"}).containers
    assert dict(container.env) == {"G": "from-dotenv", "T": "environ"}


def test_a_broken_dotenv_is_an_error_naming_its_line(tmp_path: Path) -> None:
    _write(tmp_path / ".env", "OK=1\n=nameless\n")
    toml = _toml(tmp_path, "")
    with pytest.raises(ConfigError) as raised:
        load_project(toml, {})
    assert raised.value.problems == [
        f'{tmp_path / ".env"}:2: "=nameless" is not KEY=VALUE; '
        "valid: KEY=VALUE, a # comment or a blank line"
    ]
