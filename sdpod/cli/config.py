"""`sdpod check FILE` and `sdpod config FILE`: what sdpod understands of a TOML file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command()
@click.argument("file", type=_FILE)
def check(file: Path) -> None:
    """Validate FILE; report every problem and exit 1 if there is any."""
    from sdpod import projects

    project = projects.load(file)
    names = ", ".join(container.name for container in project.containers)
    click.echo(f"{file}: valid; containers: {names}")


@click.command()
@click.argument("file", type=_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def config(file: Path, as_json: bool) -> None:
    """Print the normalised model of FILE, with every default filled in."""
    from sdpod import projects
    from sdpod.config.dump import project_to_dict

    model = project_to_dict(projects.load(file))
    if as_json:
        click.echo(json.dumps(model, indent=2))
        return

    import tomlkit

    click.echo(tomlkit.dumps(_without_nulls(model)), nl=False)


def _without_nulls(value: Any) -> Any:
    """TOML has no null: a setting left unset is shown by its absence."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value
