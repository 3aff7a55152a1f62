"""`sdpod rm NAME...`: delete stopped containers, their files and their runtime files."""

from __future__ import annotations

import click


@click.command()
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Delete the stopped containers NAMES: their files, overlay layer and records.

    For containers whose TOML file is gone, or that a crash left behind; the images
    stay. A running container is refused: `sdpod down FILE` stops and removes it.
    """
    from sdpod import lifecycle

    lifecycle.remove(list(names), click.echo)
