"""Print the figures as a text table, and write them as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.figures import Figure, Series


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.2f} {unit}"


def short(reason: str) -> str:
    """A reason on one line for the table; the JSON keeps it whole."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def series_row(series: Series) -> str:
    if not series.measured:
        return f"  {series.subject:<34} {series.work:<22} {short(series.reason)}"
    low, mid = number(series.minimum(), series.unit), number(series.median(), series.unit)
    count = len(series.samples)
    return f"  {series.subject:<34} {series.work:<22} min {low:>10}  median {mid:>10}  n={count}"


def figure_lines(figure: Figure) -> list[str]:
    lines = [f"{figure.key}. {figure.title}", f"  how: {figure.method}"]
    if figure.reason:
        return [*lines, f"  {figure.reason}"]
    lines += [series_row(s) for s in figure.series]
    lines += [f"  note: {note}" for note in figure.notes]
    for ours, peer, ratio in figure.ratios():
        shown = f"{ratio:.2f}" if ratio is not None else f"- ({short(peer.reason or ours.reason)})"
        lines.append(f"  ratio {ours.subject} / {peer.subject} ({peer.work}): {shown}")
    return lines


def table(figures: Sequence[Figure]) -> str:
    blocks = ["\n".join(figure_lines(f)) for f in figures]
    return "\n\n".join(blocks) + "\n"


def write_json(path: Path, machine: dict[str, Any], figures: Sequence[Figure]) -> None:
    document = {"machine": machine, "figures": [f.to_json() for f in figures]}
    path.write_text(json.dumps(document, indent=2) + "\n")
