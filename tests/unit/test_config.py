"""`sdpod.config.load` against fixture files, each carrying its own expected result.

Every `NAME.toml` under tests/fixtures/config has beside it either `NAME.model.json`, the
normalised project it must load into, or `NAME.errors`, the exact lines of the
`ConfigError` it must raise (the file shown by its base name).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdpod.config.dump import project_to_dict
from sdpod.config.load import load_project
from sdpod.config.model import Container, HealthCheck, Project, Resources
from sdpod.config.schema import Setting
from sdpod.config.settings import HEALTH, PROJECT, RESOURCES, SETTINGS
from sdpod.errors import ConfigError

FIXTURES = (Path(__file__).parent.parent / "fixtures" / "config").resolve()
ENVIRON = {"WEB_PORT": "8080", "EMPTY": "", "WWW": "www"}
"""The environment every fixture is loaded with, so that none depends on the caller's."""
SHORT_NAMES = ("webapp",)
"""Short names with a registries.conf alias, as if the user's file had them."""


def _cases() -> list[Path]:
    return sorted(FIXTURES.glob("*.toml"))


@pytest.mark.parametrize("toml", _cases(), ids=lambda path: path.stem)
def test_fixture(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = toml.with_suffix(".model.json")
    errors = toml.with_suffix(".errors")
    assert model.exists() != errors.exists(), f"{toml.name} needs one expected result"

    # Loading by base name from the fixture directory shows the file by its base name.
    monkeypatch.chdir(FIXTURES)
    if model.exists():
        project = load_project(Path(toml.name), ENVIRON, short_names=SHORT_NAMES)
        assert project_to_dict(project, FIXTURES) == json.loads(model.read_text())
    else:
        with pytest.raises(ConfigError) as raised:
            load_project(Path(toml.name), ENVIRON, short_names=SHORT_NAMES)
        assert raised.value.problems == errors.read_text().splitlines()


def test_every_expected_result_has_its_toml() -> None:
    expected = [*FIXTURES.glob("*.model.json"), *FIXTURES.glob("*.errors")]
    orphans = [path.name for path in expected if not (FIXTURES / _stem(path)).exists()]
    assert orphans == []


def _stem(path: Path) -> str:
    return path.name.split(".")[0] + ".toml"


@pytest.mark.parametrize(
    ("rows", "model"),
    [(SETTINGS, Container), (RESOURCES, Resources), (HEALTH, HealthCheck)],
    ids=["container", "resources", "health"],
)
def test_settings_table_matches_the_model(rows: tuple[Setting[object], ...], model: type) -> None:
    assert [row.attribute for row in rows] == [field.name for field in dataclasses.fields(model)]


def test_project_table_fills_the_project_but_its_containers() -> None:
    fields = [field.name for field in dataclasses.fields(Project)]
    assert [row.attribute for row in PROJECT] == [
        name for name in fields if name not in ("source", "containers")
    ]


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_PORT", "9090")
    monkeypatch.setenv("WWW", "www")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("IMAGE_DIR", raising=False)
    monkeypatch.delenv("TAG", raising=False)
    project = load_project(FIXTURES / "variables.toml")
    assert project.containers[0].ports[0].host_port == 9090


def test_paths_are_absolute_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    project = load_project(Path(os.path.relpath(FIXTURES / "first-light.toml")), ENVIRON)
    directory = FIXTURES.resolve()
    assert project.source == directory / "first-light.toml"
    assert project.containers[0].image.path == directory / "web-image"
    assert project.containers[0].volumes[0].source == directory / "www"


def test_unreadable_file_says_what_failed(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as raised:
        load_project(missing, ENVIRON)
    assert raised.value.problems == [f"failed to read {missing}: No such file or directory"]


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):
        load_project(deep, ENVIRON)


def test_success_path_does_not_import_tomlkit() -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sdpod.config.load import load_project\n"
        f"load_project(Path({str(FIXTURES / 'first-light.toml')!r}), {{}})\n"
        "assert 'tomlkit' not in sys.modules, 'tomlkit was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
