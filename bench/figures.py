"""What a benchmark reports: series of samples per subject, grouped into figures.

A figure is one item of issue 8 (start to serving, resident cost, ...): it says what was
measured and how, holds one series per subject and size (sdpod, podman, crun, ...), and
knows which series to divide by which for the ratios. A subject that cannot be measured
carries a reason ("missing: podman is not installed") instead of samples, never a zero.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Series:
    """The samples of one subject on one work, in `unit`, or why there are none."""

    subject: str
    work: str
    unit: str
    samples: list[float] = field(default_factory=list)
    reason: str = ""

    @property
    def measured(self) -> bool:
        return bool(self.samples) and not self.reason

    def minimum(self) -> float | None:
        return min(self.samples) if self.measured else None

    def median(self) -> float | None:
        return statistics.median(self.samples) if self.measured else None

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "work": self.work,
            "unit": self.unit,
            "samples": self.samples,
            "min": self.minimum(),
            "median": self.median(),
            "reason": self.reason or None,
        }


@dataclass
class Figure:
    """One item: its title, what and how it measured, its series and ratio pairs.

    `pairs` lists (sdpod series index, peer series index); the ratio is of the medians.
    `reason` set means the whole item was not measured, and why.
    """

    key: str
    title: str
    method: str
    series: list[Series] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    def add(self, series: Series) -> int:
        self.series.append(series)
        return len(self.series) - 1

    def compare(self, ours: int, peer: int) -> None:
        self.pairs.append((ours, peer))

    def ratios(self) -> list[tuple[Series, Series, float | None]]:
        out = []
        for ours, peer in self.pairs:
            a, b = self.series[ours], self.series[peer]
            top, bottom = a.median(), b.median()
            ratio = top / bottom if top is not None and bottom else None
            out.append((a, b, ratio))
        return out

    def complete(self) -> bool:
        """Whether every series has a figure or a stated reason (what CI checks)."""
        if self.reason:
            return True
        return bool(self.series) and all(s.measured or s.reason for s in self.series)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "method": self.method,
            "reason": self.reason or None,
            "notes": self.notes,
            "series": [s.to_json() for s in self.series],
            "ratios": [
                {"ours": f"{a.subject} {a.work}", "peer": f"{b.subject} {b.work}", "ratio": r}
                for a, b, r in self.ratios()
            ],
        }
