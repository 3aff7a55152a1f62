"""Alternate subjects on the same work, round after round.

Each round runs every subject once, in an order rotated by one each round, so that no
subject always goes first (cold caches) or last. A subject whose measurement fails gets
the failure as its reason and is not run again; the others go on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.figures import Series
from bench.host import BenchError

Measure = Callable[[int], float]
Teardown = Callable[[int], None]


@dataclass
class Subject:
    series: Series
    measure: Measure
    teardown: Teardown


def alternate(subjects: Sequence[Subject], rounds: int) -> None:
    for number in range(rounds):
        shift = number % len(subjects)
        for subject in [*subjects[shift:], *subjects[:shift]]:
            if subject.series.reason:
                continue
            run_once(subject, number)


def run_once(subject: Subject, number: int) -> None:
    try:
        subject.series.samples.append(subject.measure(number))
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        subject.series.reason = f"failed: {e}"
    finally:
        subject.teardown(number)


def nothing(number: int) -> None:
    """A teardown for work that leaves nothing behind."""
