"""The order in which the containers of a file start and stop, and their readiness.

Each container's start job ends when it is ready, so starting them one after another,
each after those it depends on, makes a dependent wait until its dependencies are ready
or healthy, as it asks. `Project.ready_of` says when a container counts as ready (once
healthy when another waits for that, whatever its own `ready` says); `start_order`
hands each container on with that readiness as its `ready`, so that every later step
(the spec the launcher reads, the unit's properties) agrees with it.
"""

from __future__ import annotations

import dataclasses

from sdpod.config.model import Container, Project


def start_order(project: Project) -> list[Container]:
    """The containers with their effective readiness, each after those it depends on.

    Containers that do not depend on each other keep the file's order. The config
    loader refuses cycles; should one reach here, its members come last, in file order.
    """
    placed: dict[str, Container] = {}
    remaining = list(project.containers)
    while remaining:
        ready = [c for c in remaining if all(d.name in placed for d in c.depends_on)]
        for container in ready or remaining:
            effective = project.ready_of(container)
            placed[container.name] = dataclasses.replace(container, ready=effective)
        remaining = [c for c in remaining if c.name not in placed]
    return list(placed.values())


def stop_order(project: Project) -> list[Container]:
    """Dependents before their dependencies: the start order, reversed."""
    return list(reversed(start_order(project)))
