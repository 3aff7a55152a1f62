"""Checks of `depends_on` and `ready` across the containers of one file.

A container may depend only on another container of the same file, never on itself,
and never in a cycle, which systemd would break by dropping a start job at random
(systemd.unit(5), "ordering cycle"). Waiting for a container to be healthy, or for
one's own health, needs a health check to wait for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sdpod.config.model import Dependency, DependencyCondition, ReadyWhen
from sdpod.config.problems import Spot, render_path
from sdpod.config.schema import Read


def check_dependencies(entries: Sequence[Read]) -> None:
    """Record every problem of the containers' `ready` and `depends_on` settings."""
    by_name: dict[str, Read] = {}
    for entry in entries:
        name = entry.values.get("name")
        if name is not None:
            by_name.setdefault(name, entry)

    for entry in entries:
        _check_ready(entry)
        seen: set[str] = set()
        for dependency, spot in dependencies_of(entry):
            if dependency.name in seen:
                spot.fail("the name is listed twice; valid: each name once", dependency.name)
            else:
                _check_target(entry, dependency, spot, by_name)
            seen.add(dependency.name)
    _check_cycles(entries, by_name)


def dependencies_of(entry: Read) -> Iterator[tuple[Dependency, Spot]]:
    """Each valid dependency of a container, with the spot it was given at."""
    spot = entry.spot.child("depends_on")
    raw = entry.raw.get("depends_on")
    for index, dependency in enumerate(entry.values.get("depends_on", ())):
        yield dependency, spot.child(dependency.name if isinstance(raw, dict) else index)


def _has_health(entry: Read) -> bool:
    # A health table that was given but is wrong has its own problems: it counts as
    # given, so that one mistake is not reported twice.
    return "health" in entry.raw


def _health_table(entry: Read) -> str:
    return render_path((*entry.spot.path, "health"))


def _check_ready(entry: Read) -> None:
    if entry.values.get("ready") is ReadyWhen.HEALTHY and not _has_health(entry):
        entry.spot.child("ready").fail(
            "the container has no health check to wait for; valid: a "
            f'[{_health_table(entry)}] table, or ready = "started" or "notify"',
            ReadyWhen.HEALTHY.value,
        )


def _check_target(
    entry: Read, dependency: Dependency, spot: Spot, by_name: dict[str, Read]
) -> None:
    shown = None if isinstance(entry.raw.get("depends_on"), dict) else dependency.name
    name = entry.values.get("name")
    if dependency.name == name:
        spot.fail("a container cannot depend on itself; valid: another container's name", shown)
        return
    target = by_name.get(dependency.name)
    if target is None:
        others = [f'"{other}"' for other in by_name if other != name]
        valid = f"one of {', '.join(others)}" if others else "another container of this file"
        spot.fail(f"no container of this file has this name; valid: {valid}", shown)
        return
    if dependency.condition is DependencyCondition.HEALTHY and not _has_health(target):
        spot.fail(
            f'container "{dependency.name}" has no health check; valid: "started", '
            f"or a [{_health_table(target)}] table",
            DependencyCondition.HEALTHY.value,
        )


def _check_cycles(entries: Sequence[Read], by_name: dict[str, Read]) -> None:
    """Report each cycle once, at the first container of the file that is part of it."""
    graph = {
        name: [d.name for d in entry.values.get("depends_on", ()) if d.name in by_name]
        for name, entry in by_name.items()
    }
    reported: set[str] = set()
    for name, entry in by_name.items():
        if name in reported:
            continue
        cycle = _path_back(graph, name)
        if cycle is None:
            continue
        reported.update(cycle)
        spot = next(spot for d, spot in dependencies_of(entry) if d.name == cycle[1])
        shown = None if isinstance(entry.raw.get("depends_on"), dict) else cycle[1]
        spot.fail(
            f"the dependencies form a cycle: {' -> '.join(cycle)}; "
            "valid: dependencies that never lead back to a container",
            shown,
        )


def _path_back(graph: dict[str, list[str]], start: str) -> list[str] | None:
    """The shortest path of dependencies from `start` back to itself, or None."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for name in frontier:
            for target in graph[name]:
                if target == start and name != start:
                    return [*_walk_back(came_from, name, start), start]
                if target not in came_from and target != start:
                    came_from[target] = name
                    following.append(target)
        frontier = following
    return None


def _walk_back(came_from: dict[str, str], name: str, start: str) -> list[str]:
    path = [name]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return path[::-1]
