"""Environments exec(2) would refuse are refused by the config check, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpod.config.load import load_project
from sdpod.config.settings import ENV_ENTRY_MAX, ENV_TOTAL_MAX
from sdpod.errors import ConfigError


def write(tmp_path: Path, env_lines: list[str]) -> Path:
    layout = tmp_path / "image"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    toml = tmp_path / "web.toml"
    head = '[container]\nname = "web"\nimage = "oci:image"\n[container.env]\n'
    toml.write_text(head + "\n".join(env_lines) + "\n")
    return toml


def test_one_variable_too_long_for_exec_is_named(tmp_path: Path) -> None:
    toml = write(tmp_path, [f'BIG = "{"a" * ENV_ENTRY_MAX}"', 'OK = "1"'])
    with pytest.raises(ConfigError) as raised:
        load_project(toml)
    assert raised.value.problems == [
        f"{toml}:5: container.env.BIG: the variable is too long for exec(2); "
        f"valid: under {ENV_ENTRY_MAX} bytes"
    ]


def test_many_variables_too_long_together_are_refused(tmp_path: Path) -> None:
    value = "a" * 100_000
    count = ENV_TOTAL_MAX // len(value) + 1
    toml = write(tmp_path, [f'V{i} = "{value}"' for i in range(count)])
    with pytest.raises(ConfigError, match="add up to more than exec"):
        load_project(toml)


def test_an_environment_exec_takes_is_accepted(tmp_path: Path) -> None:
    toml = write(tmp_path, [f'V{i} = "{"a" * 1000}"' for i in range(100)])
    assert len(load_project(toml).containers[0].env) == 100
