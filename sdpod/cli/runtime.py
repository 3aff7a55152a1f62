"""`sdpod runtime` and `sdpod-runtime`: the OCI runtime command line, as runc and crun
have it, so that a tool written for them (one program path) can drive sdpod's runtime.

Only click is imported until a verb runs (DESIGN.md: start-up latency is a feature).
Errors go to standard error and, with `--log`, to the log file, as JSON with
`--log-format json`: the form runc's callers read.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

_Verb = TypeVar("_Verb", bound=Callable[..., Any])
_ERRORS = logging.getLogger("sdpod.runtime.errors")
_DIRECTORY = click.Path(path_type=Path, file_okay=False)
_FILE = click.Path(path_type=Path, dir_okay=False)


@dataclass(frozen=True)
class Settings:
    root: Path


class _JsonFormatter(logging.Formatter):
    """runc's log lines: one JSON object each, with level, msg and time."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, UTC).isoformat()
        return json.dumps(
            {"level": record.levelname.lower(), "msg": record.getMessage(), "time": time}
        )


def _configure_logging(log_file: Path | None, log_format: str, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    handlers[0].setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    # Errors reach standard error through the one place that prints them; this logger
    # adds them to the log file only.
    _ERRORS.propagate = False
    _ERRORS.handlers = [logging.NullHandler()]
    if log_file is not None:
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(
            _JsonFormatter()
            if log_format == "json"
            else logging.Formatter("%(asctime)s %(levelname)s: %(message)s")
        )
        handlers.append(to_file)
        _ERRORS.addHandler(to_file)
    logging.basicConfig(level=level, handlers=handlers, force=True)


def _logged(verb: _Verb) -> _Verb:
    """Write a verb's failure to the log file too, before it reaches the one place that
    prints it."""

    @functools.wraps(verb)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sdpod.errors import SdpodError

        try:
            return verb(*args, **kwargs)
        except (SdpodError, OSError) as error:
            _ERRORS.error("%s", error)
            raise

    return wrapper  # type: ignore[return-value]


@click.group("runtime", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=_DIRECTORY,
    help="State directory [default: $XDG_RUNTIME_DIR/sdpod-runtime, as root /run/sdpod-runtime].",
)
@click.option("--log", "log_file", type=_FILE, help="Also write errors and warnings to this file.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--debug", is_flag=True, help="Log every step.")
@click.pass_context
def runtime(
    context: click.Context, root: Path | None, log_file: Path | None, log_format: str, debug: bool
) -> None:
    """Run OCI bundles, as runc and crun do."""
    from sdpod.runtime.state import default_root

    _configure_logging(log_file, log_format, debug)
    context.obj = Settings(root or default_root())


@runtime.command("spec")
@click.option("--rootless", is_flag=True, help="Map your own ids to root in a user namespace.")
@click.option("--bundle", "-b", type=_DIRECTORY, help="Write DIR/config.json, as crun and runc do.")
@_logged
def spec_command(rootless: bool, bundle: Path | None) -> None:
    """Print a default config.json (runs `sh` in ./rootfs), or write it into a bundle."""
    from sdpod.errors import RuntimeSetupError
    from sdpod.runtime.default_spec import default_spec

    text = json.dumps(default_spec(rootless, os.getuid(), os.getgid()), indent=2) + "\n"
    if bundle is None:
        click.echo(text, nl=False)
        return
    try:
        with open(bundle / "config.json", "x") as file:
            file.write(text)
    except FileExistsError:
        raise RuntimeSetupError(f"failed to write {bundle / 'config.json'}: it exists") from None


def _options(settings: Settings, bundle: Path, pid_file: Path | None, socket: str | None) -> Any:
    from sdpod.runtime.lifecycle import Options

    return Options(settings.root, bundle, pid_file.absolute() if pid_file else None, socket)


_bundle_option = click.option(
    "--bundle",
    "-b",
    type=_DIRECTORY,
    default=Path("."),
    help="The bundle's directory [default: .].",
)
_pid_file_option = click.option("--pid-file", type=_FILE, help="Write the init's PID here.")
_console_option = click.option(
    "--console-socket",
    metavar="PATH",
    help="A unix socket to send the master of the process's terminal to, as SCM_RIGHTS; "
    "required with process.terminal or --tty, refused without.",
)


@runtime.command()
@click.argument("container_id", metavar="ID")
@_bundle_option
@_pid_file_option
@_console_option
@click.pass_obj
@_logged
def create(
    settings: Settings,
    container_id: str,
    bundle: Path,
    pid_file: Path | None,
    console_socket: str | None,
) -> None:
    """Set up container ID from a bundle, its process waiting for `start`."""
    from sdpod.runtime import lifecycle

    lifecycle.create(container_id, _options(settings, bundle, pid_file, console_socket))


@runtime.command()
@click.argument("container_id", metavar="ID")
@click.pass_obj
@_logged
def start(settings: Settings, container_id: str) -> None:
    """Start the process of the created container ID."""
    from sdpod.runtime import lifecycle

    lifecycle.start(settings.root, container_id)


@runtime.command()
@click.argument("container_id", metavar="ID")
@_bundle_option
@_pid_file_option
@_console_option
@click.option("--detach", "-d", is_flag=True, help="Return once started, leaving it running.")
@click.pass_context
@_logged
def run(
    context: click.Context,
    container_id: str,
    bundle: Path,
    pid_file: Path | None,
    console_socket: str | None,
    detach: bool,
) -> None:
    """Create and start container ID; wait for it and exit with its status."""
    from sdpod.runtime import lifecycle

    options = _options(context.obj, bundle, pid_file, console_socket)
    context.exit(lifecycle.run(container_id, options, detach))


@runtime.command()
@click.argument("container_id", metavar="ID")
@click.pass_obj
@_logged
def state(settings: Settings, container_id: str) -> None:
    """Print the state of container ID as OCI JSON."""
    from sdpod.runtime.state import find

    click.echo(json.dumps(find(settings.root, container_id).oci_state(), indent=2))


def parse_signal(text: str) -> int:
    """A signal given as a number, `TERM` or `SIGTERM` (any case)."""
    if text.isdigit():
        number = int(text)
        if number in {s.value for s in signal.Signals}:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name in signal.Signals.__members__:
            return signal.Signals[name].value
    raise click.BadParameter(f"{text!r} is no signal; valid: a name like TERM or SIGKILL, or 1-64")


@runtime.command()
@click.argument("container_id", metavar="ID")
@click.argument("signal_name", metavar="[SIGNAL]", default="SIGTERM")
@click.option("--all", "-a", "every", is_flag=True, help="Signal every process of the container.")
@click.pass_obj
@_logged
def kill(settings: Settings, container_id: str, signal_name: str, every: bool) -> None:
    """Send SIGNAL (default SIGTERM) to the init of container ID."""
    from sdpod.runtime import lifecycle

    lifecycle.kill(settings.root, container_id, parse_signal(signal_name), every)


@runtime.command()
@click.argument("container_id", metavar="ID")
@click.option("--force", "-f", is_flag=True, help="Kill the container first if it runs.")
@click.pass_obj
@_logged
def delete(settings: Settings, container_id: str, force: bool) -> None:
    """Remove the stopped container ID."""
    from sdpod.runtime import lifecycle

    lifecycle.delete(settings.root, container_id, force)


def _user(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or not (gid or "0").isdigit():
        raise click.BadParameter(f"{text!r}: give UID or UID:GID, as numbers")
    return int(uid), int(gid or 0)


@runtime.command(
    "exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.argument("container_id", metavar="ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--process", "-p", "process_file", type=_FILE, help="An OCI process object (JSON).")
@click.option("--env", "-e", multiple=True, help="KEY=VALUE, added to the environment.")
@click.option("--cwd", help="The working directory.")
@click.option("--user", "-u", help="UID[:GID].")
@click.option("--tty", "-t", is_flag=True, help="A terminal of its own, sent to --console-socket.")
@_console_option
@click.pass_context
@_logged
def exec_command(
    context: click.Context,
    container_id: str,
    command: tuple[str, ...],
    process_file: Path | None,
    env: tuple[str, ...],
    cwd: str | None,
    user: str | None,
    tty: bool,
    console_socket: str | None,
) -> None:
    """Run COMMAND in the running container ID and exit with its status."""
    from sdpod.runtime import lifecycle

    if not command and process_file is None:
        raise click.UsageError("give a COMMAND or --process FILE")
    request = lifecycle.ExecRequest(
        command, process_file, env, cwd, _user(user), tty, console_socket
    )
    context.exit(lifecycle.exec_in(context.obj.root, container_id, request))


@runtime.command("list")
@click.option("--format", "-f", "output", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True, help="Only the ids.")
@click.pass_obj
@_logged
def list_command(settings: Settings, output: str, quiet: bool) -> None:
    """List the containers of the state directory."""
    from sdpod.runtime.state import every

    states = [container.oci_state() for container in every(settings.root)]
    if quiet:
        for item in states:
            click.echo(item["id"])
    elif output == "json":
        click.echo(json.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [
            (s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
            for s in states
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )


def main() -> None:
    """`sdpod-runtime`: the same verbs as `sdpod runtime`, as a program of its own."""
    from sdpod.errors import SdpodError

    try:
        code = runtime.main(standalone_mode=False, prog_name="sdpod-runtime")
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(2)
    except (SdpodError, OSError) as error:
        if "--debug" in sys.argv[1:]:
            raise
        click.echo(f"error: {error}", err=True)
        hint = getattr(error, "hint", None)
        if hint:
            click.echo(f"hint: {hint}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
