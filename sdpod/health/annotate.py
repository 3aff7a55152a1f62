"""What a bundle's config.json says about readiness and the health check.

The OCI spec has no field for either, so they travel as `io.sdpod.` annotations, written
by `annotate` when the spec is built and read back by the launcher and the checker,
which see only the bundle.
"""

from __future__ import annotations

import json
from typing import Any

from sdpod.config.model import Container, HealthCheck, ReadyWhen, UnhealthyAction

ANNOTATION_READY = "io.sdpod.ready"
ANNOTATION_HEALTH = "io.sdpod.health"


def annotate(container: Container) -> dict[str, str]:
    """The annotations of `container`'s readiness and health check."""
    annotations = {ANNOTATION_READY: container.ready.value}
    check = container.health
    if check is not None:
        annotations[ANNOTATION_HEALTH] = json.dumps(
            {
                "command": list(check.command),
                "interval": check.interval,
                "timeout": check.timeout,
                "retries": check.retries,
                "start_period": check.start_period,
                "on_unhealthy": check.on_unhealthy.value,
            },
            sort_keys=True,
        )
    return annotations


def readiness_of(spec: dict[str, Any]) -> ReadyWhen:
    """The readiness a spec asks for; `started` for a spec written before it existed."""
    value = spec.get("annotations", {}).get(ANNOTATION_READY, ReadyWhen.STARTED.value)
    return ReadyWhen(value)


def check_of(spec: dict[str, Any]) -> HealthCheck | None:
    """The health check a spec carries, or None."""
    text = spec.get("annotations", {}).get(ANNOTATION_HEALTH)
    if not text:
        return None
    fields = json.loads(text)
    return HealthCheck(
        command=tuple(fields["command"]),
        interval=float(fields["interval"]),
        timeout=float(fields["timeout"]),
        retries=int(fields["retries"]),
        start_period=float(fields["start_period"]),
        on_unhealthy=UnhealthyAction(fields["on_unhealthy"]),
    )
