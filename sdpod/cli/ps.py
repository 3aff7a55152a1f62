"""`sdpod ps`: every container with its state, health, uptime, ports and image.

A table for people, `--json` for programs: a list of objects with the same facts, under
names that stay (uptime in whole seconds, ports as objects, null for what is unknown).
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sdpod.config.model import PortMapping
    from sdpod.observe import ContainerRow

COLUMNS = ("NAME", "UNIT", "STATE", "HEALTH", "UPTIME", "PORTS", "IMAGE")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def ps(as_json: bool) -> None:
    """List the containers, their state, health, uptime, ports and image."""
    from sdpod import observe

    rows = observe.ps()
    if as_json:
        click.echo(json.dumps([row_object(row) for row in rows], indent=2))
        return
    for line in table([COLUMNS, *(row_cells(row) for row in rows)]):
        click.echo(line)


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns two spaces apart, without trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def row_cells(row: ContainerRow) -> tuple[str, ...]:
    return (
        row.name,
        row.unit,
        state_text(row),
        row.health.status.value if row.health else "-",
        "-" if row.uptime is None else duration(row.uptime),
        ", ".join(port_text(port) for port in row.ports) or "-",
        row.image,
    )


def row_object(row: ContainerRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "unit": row.unit,
        "loaded": row.loaded,
        "state": row.active_state,
        "sub_state": row.sub_state,
        "health": row.health.status.value if row.health else None,
        "uptime": None if row.uptime is None else int(row.uptime),
        "ports": [
            {
                "host_ip": port.host_ip,
                "host_port": port.host_port,
                "container_port": port.container_port,
                "protocol": port.protocol.value,
            }
            for port in row.ports
        ],
        "image": row.image,
    }


def state_text(row: ContainerRow) -> str:
    # systemd forgets a transient unit once it has stopped: nothing but its files remain.
    return f"{row.active_state} ({row.sub_state if row.loaded else 'not loaded'})"


def port_text(port: PortMapping) -> str:
    """As the TOML writes a port: HOST_IP:HOST_PORT:CONTAINER_PORT/PROTOCOL."""
    host_ip = f"[{port.host_ip}]" if ":" in port.host_ip else port.host_ip
    return f"{host_ip}:{port.host_port}:{port.container_port}/{port.protocol.value}"


def duration(seconds: float) -> str:
    """A span in its two largest units: 42s, 5m 3s, 2h 5m, 3d 4h."""
    whole = int(seconds)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for (big, big_size), (small, small_size) in itertools.pairwise(units):
        if whole >= big_size:
            return f"{whole // big_size}{big} {whole % big_size // small_size}{small}"
    return f"{whole}s"
