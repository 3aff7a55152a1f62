"""`sdpod enable FILE`: the containers of FILE start at boot, from unit files."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def enable(debug: bool, file: Path) -> None:
    """Start the containers of FILE at boot, from unit files; start none now."""
    from sdpod import persist

    persist.enable(file, click.echo, debug=debug)
