"""The `sdpod` command: parse the arguments, call one verb, turn errors into messages.

Each verb imports what it needs when it runs, so that `sdpod --help` loads neither the
D-Bus client nor the image code (DESIGN.md: start-up latency is a feature).
"""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path

import click

from sdpod.cli.config import check as check_command
from sdpod.cli.config import config as config_command
from sdpod.cli.disable import disable as disable_command
from sdpod.cli.doctor import doctor as doctor_command
from sdpod.cli.enable import enable as enable_command
from sdpod.cli.exec import exec_command
from sdpod.cli.image import image as image_command
from sdpod.cli.logs import logs as logs_command
from sdpod.cli.ps import ps as ps_command
from sdpod.cli.rm import rm as rm_command
from sdpod.cli.run import run as run_command
from sdpod.cli.runtime import runtime as runtime_command
from sdpod.cli.status import status as status_command
from sdpod.cli.volume import volume as volume_command
from sdpod.errors import ConfigError, SdpodError

EXIT_ERROR = 1
EXIT_USAGE = 2

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sdpod", message="sdpod %(version)s")
@click.option("--debug", is_flag=True, help="Log every step, and show tracebacks.")
@click.pass_context
def cli(context: click.Context, debug: bool) -> None:
    """Rootless containers, supervised by systemd."""
    context.obj = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )


@cli.command()
@click.argument("file", type=_FILE)
@click.pass_obj
def up(debug: bool, file: Path) -> None:
    """Start the containers of FILE as systemd units; return once they run."""
    from sdpod import lifecycle

    lifecycle.up(file, click.echo, debug=debug)


@cli.command()
@click.argument("file", type=_FILE)
def down(file: Path) -> None:
    """Stop the containers of FILE and remove them; their images stay."""
    from sdpod import lifecycle

    lifecycle.down(file, click.echo)


# Verbs that live in modules of their own, which import only click until they run.
cli.add_command(ps_command)
cli.add_command(status_command)
cli.add_command(logs_command)
cli.add_command(doctor_command)
cli.add_command(enable_command)
cli.add_command(disable_command)
cli.add_command(exec_command)
cli.add_command(run_command)
cli.add_command(image_command)
cli.add_command(rm_command)
cli.add_command(runtime_command)
cli.add_command(volume_command)
cli.add_command(check_command)
cli.add_command(config_command)


def _report(error: SdpodError) -> None:
    lines = error.problems if isinstance(error, ConfigError) else str(error).splitlines()
    click.echo(f"error: {lines[0]}", err=True)
    for line in lines[1:]:
        click.echo(f"error: {line}" if isinstance(error, ConfigError) else line, err=True)
    if error.hint:
        click.echo(f"hint: {error.hint}", err=True)


def _os_hint(error: OSError) -> str | None:
    if error.errno == errno.ENOSPC:
        return "free some space (`sdpod image prune` removes images no container uses)"
    return "run again with --debug for the whole trace"


def main() -> None:
    """Entry point: the one place where errors become messages and exit codes."""
    debug = "--debug" in sys.argv[1:]
    try:
        # Without standalone mode, click returns the code of a verb's `context.exit(N)`.
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(EXIT_ERROR)
    except click.ClickException as error:
        error.show()
        sys.exit(EXIT_USAGE)
    except SdpodError as error:
        if debug:
            raise
        _report(error)
        sys.exit(EXIT_ERROR)
    except OSError as error:
        # A failure of the machine rather than of the input (a full disk, a file removed
        # under our feet) that no layer above turned into an SdpodError.
        if debug:
            raise
        _report(SdpodError(f"{error}", hint=_os_hint(error)))
        sys.exit(EXIT_ERROR)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
