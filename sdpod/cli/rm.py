"""`sdpod rm NAME...`: delete stopped containers, their files and their runtime files."""

from __future__ import annotations

import click


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Stop running containers first.")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Delete the containers NAMES: their files, overlay layer and records.

    For containers whose TOML file is gone, renamed or broken, or that a crash left
    behind; the images stay. A running container is refused unless --force is given.
    """
    from sdpod import lifecycle

    lifecycle.remove(list(names), click.echo, force)
