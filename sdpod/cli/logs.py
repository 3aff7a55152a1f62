"""`sdpod logs NAME`: the container's journal, shown by journalctl itself."""

from __future__ import annotations

import os
import signal
import sys

import click

from sdpod.errors import SdpodError


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("-n", "--lines", type=click.IntRange(min=0), help="Show only the last LINES lines.")
def logs(name: str, follow: bool, lines: int | None) -> None:
    """Show the journal of container NAME, through journalctl."""
    from sdpod import observe

    argv = observe.logs_argv(name, follow, lines)
    # journalctl replaces this process, so that it owns the terminal: it streams with -f,
    # pages as it likes, and Ctrl-C ends it rather than a Python process around it.
    sys.stdout.flush()
    sys.stderr.flush()
    # A shell starts a background job with SIGINT ignored, and an ignored signal stays
    # ignored across exec: journalctl -f could then not be interrupted at all.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        raise SdpodError(
            f"failed to run {argv[0]}: {error.strerror}",
            hint="journalctl comes with systemd; the same log: " + " ".join(argv),
        ) from None
