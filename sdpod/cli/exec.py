"""`sdpod exec [-i] [-t] NAME COMMAND...`: run a command in a running container."""

from __future__ import annotations

import os

import click


@click.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("-i", "--interactive", is_flag=True, help="Give the command this input.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal of its own.")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(
    context: click.Context, interactive: bool, tty: bool, name: str, command: tuple[str, ...]
) -> None:
    """Run COMMAND in the running container NAME and exit with its status.

    It runs as the container's user, in its directory and environment. Its output is
    sdpod's; its input is /dev/null unless -i is given. With -t it gets a terminal of its
    own, a session with job control: your terminal is relayed to it in raw mode, and
    sdpod passes it SIGTERM, SIGINT, SIGHUP and SIGQUIT.
    """
    from sdpod.runtime import exec as execution

    container = execution.find_running(name)
    attach = execution.join_leaf_or_ask(container.leaf, container.unit)
    null = None if interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stdio = execution.Stdio(stdin=null)
        status = execution.run(
            container.init_pid, container.spec, command, stdio=stdio, attach=attach, terminal=tty
        )
    finally:
        if null is not None:
            os.close(null)
    context.exit(status)
