"""`sdpod run [OPTIONS] IMAGE [COMMAND...]`: a container in the foreground."""

from __future__ import annotations

import click


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("-i", "--interactive", is_flag=True, help="Give the container this input.")
@click.option("-t", "--tty", is_flag=True, help="Give the container a terminal of its own.")
@click.option("--rm", "remove", is_flag=True, help="Remove the container's files when it exits.")
@click.option("--name", help="The container's name (default: run-XXXXXX).")
@click.option(
    "-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set a variable; KEY alone: yours."
)
@click.option(
    "-v",
    "--volume",
    "volumes",
    multiple=True,
    metavar="SOURCE:TARGET[:OPTIONS]",
    help="Mount a host path or named volume, as `volumes` in a TOML file.",
)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    context: click.Context,
    interactive: bool,
    tty: bool,
    remove: bool,
    name: str | None,
    env: tuple[str, ...],
    volumes: tuple[str, ...],
    image: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (default: the image's) in a new container of IMAGE, in the foreground.

    IMAGE is an image layout, oci:PATH[:TAG] (PATH relative to here), or a registry's
    image, imported or pulled as `up` does. The container runs in a transient scope,
    sdpod-NAME.scope, of your systemd manager; sdpod stays attached to it, passes it
    SIGTERM, SIGINT, SIGHUP and SIGQUIT, and exits with its status (128 plus the signal
    that ended it). Without -i its input is /dev/null. Its files stay until
    `sdpod rm NAME`, unless --rm is given.
    """
    from sdpod import foreground

    request = foreground.RunRequest(
        image=image,
        command=command,
        name=name,
        env=env,
        volumes=volumes,
        interactive=interactive,
        terminal=tty,
        remove=remove,
    )
    context.exit(foreground.run(request, debug=bool(context.obj)))
