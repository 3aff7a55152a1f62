"""Readiness and health checks: when a container counts as started, and whether it works.

A check runs as a transient oneshot service, started by a timer of its own, both bound
to the container's unit: no Python stays resident. `python -m sdpod.health check BUNDLE`
is that service's command; it imports only the runtime's exec path and this package.
"""
