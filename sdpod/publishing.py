"""The units that publish a container's TCP ports through systemd (`sdpod.units.sockets`):
made for `up`, written as files for `enable`, found again for `down`, `rm` and
`disable`. A pod's holder has them as a container has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sdpod import paths
from sdpod.config.model import PortMapping, Project
from sdpod.network import proxy
from sdpod.units import sockets, unitfile
from sdpod.units.manager import Manager
from sdpod.units.translate import Property, slice_name


@dataclass(frozen=True)
class Publishing:
    """What publishing a container's ports through systemd adds to its definition."""

    requires: list[Property]
    """Properties of the container's own unit: it requires its sockets."""
    units: list[unitfile.UnitSpec]
    """The proxy service and socket of each container port."""

    @property
    def aux(self) -> list[tuple[str, Sequence[Property]]]:
        """The units as StartTransientUnit's auxiliary units: made, not started."""
        return [(name, properties) for name, _, properties in self.units]

    @property
    def counted(self) -> list[Property]:
        """Every property it adds, each named after its unit, for the definition's digest."""
        named = [
            (f"{name}:{key}", value)
            for name, _, properties in self.units
            for key, value in properties
        ]
        return [*self.requires, *named]


def units_for(
    name: str, unit: str, by_socket: Sequence[PortMapping], project: Project
) -> Publishing:
    """The units that publish the ports `by_socket` of container `name` (or of a pod's
    holder) of `project`, whose own unit is `unit`."""
    if not by_socket:
        return Publishing([], [])
    nsenter, proxy_path = proxy.find_proxy()
    links = (str(paths.namespace_link(name, "user")), str(paths.namespace_link(name, "net")))
    argv = sockets.proxy_argv(nsenter, proxy_path, *links)
    units = sockets.socket_units(name, unit, by_socket, argv, slice_name(project))
    return Publishing(sockets.owner_properties(name, by_socket), units)


def unit_files(name: str) -> list[str]:
    """The names of the socket and proxy unit files written for container `name`."""
    return sorted(path.name for path in unitfile.unit_dir().glob(sockets.units_glob(name)))


def write_unit_files(manager: Manager, name: str, units: Sequence[unitfile.UnitSpec]) -> bool:
    """Write `units`, those of container `name` (or of a pod's holder), and delete the
    files of the ports it no longer publishes; whether any file changed.

    Those ports' units are stopped first: once its file is gone, a running socket loses
    the dependencies the file gave it (PartOf=), and would hold its port until the next
    reboot.
    """
    keep = {unit for unit, _, _ in units}
    # The sockets before their proxies: a connection meanwhile would start one again.
    stale = sorted((unit for unit in unit_files(name) if unit not in keep), key=_sockets_first)
    for unit in stale:
        manager.stop(unit)
    removed = [unitfile.remove_unit(unit) for unit in stale]
    return bool(unitfile.write_units(units)) or any(removed)


def stop_left_over(manager: Manager, name: str) -> None:
    """Stop the socket and proxy units of container `name` that are still loaded while
    it does not run: one that failed for good (its start limit) leaves its sockets
    listening, since PartOf= follows its stops, not its failures, and they would hold
    the ports its next start binds again."""
    loaded = [unit.name for unit in manager.list_units(sockets.units_glob(name))]
    for unit in sorted(loaded, key=_sockets_first):
        manager.stop(unit)


def _sockets_first(unit: str) -> tuple[bool, str]:
    return (not unit.endswith(".socket"), unit)
