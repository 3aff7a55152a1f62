"""`sdpod volume ls/rm/prune`: the named volumes, which outlive their containers."""

from __future__ import annotations

import json

import click


@click.group()
def volume() -> None:
    """List and remove named volumes."""


@volume.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """List the named volumes and the containers that use them."""
    from sdpod import volumes

    found = volumes.list_volumes()
    if as_json:
        rows = [{"name": v.name, "path": str(v.path), "used_by": list(v.users)} for v in found]
        click.echo(json.dumps(rows, indent=2))
        return
    width = max([len("NAME"), *(len(v.name) for v in found)])
    click.echo(f"{'NAME':<{width}}  USED BY")
    for v in found:
        click.echo(f"{v.name:<{width}}  {', '.join(v.users) or '-'}")


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
def remove_command(names: tuple[str, ...]) -> None:
    """Delete the volumes NAMES and their data; none that a container uses."""
    from sdpod import volumes

    volumes.remove(list(names), click.echo)


@volume.command("prune")
def prune_command() -> None:
    """Delete every volume that no container uses."""
    from sdpod import volumes

    volumes.prune(click.echo)
