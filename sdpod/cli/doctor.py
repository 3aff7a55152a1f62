"""`sdpod doctor`: one line per thing rootless containers need, and how to mend it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sdpod.doctor import Check

LEVEL_WIDTH = len("problem") + 2


@click.command()
@click.pass_context
def doctor(context: click.Context) -> None:
    """Check what rootless containers need here; exit 1 on a problem."""
    from sdpod.doctor import Level, run_checks

    checks = run_checks()
    for check in checks:
        click.echo(line(check))
    problems = sum(check.level is Level.PROBLEM for check in checks)
    warnings = sum(check.level is Level.WARNING for check in checks)
    click.echo(f"\n{_count(problems, 'problem')}, {_count(warnings, 'warning')}")
    if problems:
        context.exit(1)


def line(check: Check) -> str:
    text = f"{check.level.value:<{LEVEL_WIDTH}}{check.name}: {check.message}"
    return f"{text}; fix: {check.fix}" if check.fix else text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"
