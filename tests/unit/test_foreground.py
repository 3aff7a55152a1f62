"""`sdpod run`'s command line as a container: read through the TOML settings, no privileges."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from sdpod.config.model import BindVolume, NamedVolume, RegistryImage, RestartPolicy
from sdpod.errors import ConfigError
from sdpod.foreground import NAME_PREFIX, RunRequest, container_of, environment

IMAGE = "docker.io/library/busybox:1.36"


def test_the_options_become_the_containers_settings(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    request = RunRequest(
        IMAGE,
        command=("sh", "-c", "echo $A"),
        name="shell",
        env=("A=1", "B=x=y", "A=2"),
        volumes=("./www:/www:ro", "data:/data"),
    )
    container = container_of(request, tmp_path, {})

    assert container.name == "shell"
    assert container.image == RegistryImage(IMAGE)
    assert container.command == ("sh", "-c", "echo $A")
    assert dict(container.environment) == {"A": "2", "B": "x=y"}
    assert container.volumes == (
        BindVolume(tmp_path / "www", PurePosixPath("/www"), read_only=True),
        NamedVolume("data", PurePosixPath("/data")),
    )
    assert container.restart is RestartPolicy.NO


def test_without_a_name_or_command_the_defaults_hold(tmp_path: Path) -> None:
    first = container_of(RunRequest(IMAGE), tmp_path, {})
    second = container_of(RunRequest(IMAGE), tmp_path, {})

    assert first.name.startswith(NAME_PREFIX) and second.name.startswith(NAME_PREFIX)
    assert first.name != second.name
    assert first.command is None


def test_a_variable_named_alone_takes_the_callers_value_if_it_has_one() -> None:
    table = environment(["HOME", "NOT_SET", "X=1"], {"HOME": "/home/me"})
    assert table == {"HOME": "/home/me", "X": "1"}


def test_every_bad_option_is_reported_by_its_name(tmp_path: Path) -> None:
    request = RunRequest("busybox", name="Bad Name", env=("=x",), volumes=("./missing:/data",))
    with pytest.raises(ConfigError) as caught:
        container_of(request, tmp_path, {})

    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith('--name "Bad Name": invalid container name')
    assert problems[1].startswith('IMAGE "busybox": ')
    assert "docker.io/library/busybox" in problems[1]
    assert problems[2].startswith('-e "": invalid variable name')
    assert problems[3].startswith('-v "./missing:/data": source "./missing" does not exist')


def test_the_checks_across_settings_apply_as_in_a_file(tmp_path: Path) -> None:
    request = RunRequest(IMAGE, volumes=("a:/x", "b:/x"))
    with pytest.raises(ConfigError, match=r'-v "b:/x": .*/x'):
        container_of(request, tmp_path, {})


def test_a_short_name_with_an_alias_is_accepted(tmp_path: Path) -> None:
    container = container_of(RunRequest("busybox"), tmp_path, {}, short_names={"busybox"})
    assert container.image == RegistryImage("busybox")
