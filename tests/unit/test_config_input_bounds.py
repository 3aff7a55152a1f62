"""Files that are no TOML at all, or wrong everywhere, are refused quickly and boundedly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdpod.config.load import PROBLEMS_SHOWN, TOML_SIZE_MAX, load_project
from sdpod.errors import ConfigError


def refusal(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_project(path, {})
    return raised.value.problems


def test_a_link_to_a_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    link = tmp_path / "web.toml"
    link.symlink_to("/dev/zero")
    assert refusal(link) == [f"failed to read {link}: it is not a regular file"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "web.toml"
    os.mkfifo(fifo)
    assert refusal(fifo) == [f"failed to read {fifo}: it is not a regular file"]


def test_a_file_too_large_for_a_toml_of_containers_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "web.toml"
    with big.open("wb") as file:
        file.truncate(TOML_SIZE_MAX + 1)
    assert refusal(big) == [f"failed to read {big}: it is larger than 10 MiB"]


def test_past_the_first_problems_only_their_number_is_given(tmp_path: Path) -> None:
    toml = tmp_path / "web.toml"
    keys = "\n".join(f"bad_{index} = 1" for index in range(PROBLEMS_SHOWN + 50))
    toml.write_text(f'[container]\nname = "web"\nimage = "oci:x"\n{keys}\n')
    problems = refusal(toml)
    assert len(problems) == PROBLEMS_SHOWN + 1
    assert problems[-1].endswith(f"and {50 + 1} more problems")
