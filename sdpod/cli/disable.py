"""`sdpod disable FILE`: the containers of FILE no longer start at boot."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def disable(file: Path) -> None:
    """Start the containers of FILE no longer at boot; running ones go on."""
    from sdpod import persist

    persist.disable(file, click.echo)
