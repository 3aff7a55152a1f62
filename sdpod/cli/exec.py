"""`sdpod exec NAME COMMAND...`: run a command in a running container."""

from __future__ import annotations

import click


@click.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(context: click.Context, name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in the running container NAME and exit with its status.

    It runs as the container's user, in its directory and environment, without a
    terminal (its input and output are sdpod's).
    """
    from sdpod.runtime import exec as execution

    container = execution.find_running(name)
    attach = execution.join_leaf_or_ask(container.leaf, f"sdpod-{name}.service")
    context.exit(execution.run(container.init_pid, container.spec, command, attach=attach))
