"""The network that the containers of one file share, pod-style, and the unit that holds it.

The containers of a file on the default network (`Project.pod_members`) reach each other
by name: they join one network namespace, which `sdpod-PROJECT-pod.service` holds
(`sdpod.runtime.pod`), as a container joins another's with `network = "container:NAME"`.
The holder publishes every member's ports, and each member requires it, so that the
members follow it through a restart. `up` starts the holder before its members, `down`
stops it after them.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdpod import lifecycle, paths, publishing
from sdpod.config.model import Container, Network, NetworkMode, PortMapping, Project
from sdpod.errors import RuntimeSetupError, SdpodError
from sdpod.kernel.userns import IdMapping
from sdpod.network import files, ports
from sdpod.runtime import bundle, idmaps
from sdpod.runtime.idpool import IdPool
from sdpod.runtime.pod import PAUSE_BINARY, PAUSE_PATH, holder_spec
from sdpod.units import unitfile
from sdpod.units.manager import UNIT_INTERFACE, Manager
from sdpod.units.translate import Property, pod_properties, pod_unit_name


@dataclass(frozen=True)
class Holder:
    """The holder of a project's shared network, as the TOML defines it now."""

    name: str
    unit: str
    members: tuple[str, ...]
    ports: tuple[PortMapping, ...]
    spec: dict[str, Any]
    properties: list[Property]
    digest: str
    source: Path
    ports_units: publishing.Publishing
    """The units that publish the members' TCP ports."""

    @property
    def unit_files(self) -> list[unitfile.UnitSpec]:
        return [(self.unit, "service", self.properties), *self.ports_units.units]

    @property
    def directory(self) -> Path:
        return paths.container_dir(self.name)

    @property
    def unchanged(self) -> bool:
        return lifecycle.made_from(self.directory, self.digest)


def member_view(container: Container, project: Project) -> Container:
    """`container` as it runs: a member of the project's pod joins the holder's network,
    and publishes nothing itself; the holder publishes its ports."""
    if container.name not in {member.name for member in project.pod_members}:
        return container
    network = Network(NetworkMode.CONTAINER, project.pod_name)
    return dataclasses.replace(container, network=network, ports=())


def neighbours(owner: Container, project: Project) -> list[str]:
    """The names that a container on `owner`'s network finds on its own address: those
    of every container in the project's pod, members and their joiners, where `owner`
    is a member (itself, for a member; the member whose network it joins, for a
    `container:NAME` joiner)."""
    members = {member.name for member in project.pod_members}
    if owner.name not in members:
        return []
    # The members, and the containers that join a member's network, in the file's order.
    sharing = (c for c in project.containers if members & {c.name, c.network.container})
    return [name for container in sharing for name in files.names_of(container)]


def find_pause() -> Path:
    found = shutil.which(PAUSE_BINARY)
    if found is None:
        raise RuntimeSetupError(
            f"failed to find {PAUSE_BINARY}, which holds the network that the containers "
            "of one file share",
            hint="install Debian's package `catatonit`",
        )
    return Path(found)


def desired_holder(context: lifecycle.Context) -> Holder | None:
    """The holder of the project's pod, None where no containers share a network.

    Run before the members' `lifecycle.desired`: as root, they share the id range it
    takes."""
    project = context.project
    members = project.pod_members
    if not members:
        return None
    name = project.pod_name
    all_ports = tuple(port for member in members for port in member.ports)
    # The members' network settings are the holder's: their backend, their user namespace.
    model = dataclasses.replace(members[0], name=name, network=Network(), ports=all_ports)
    resolved = lifecycle.with_backend(model)
    mapping = idmaps.mapping_for(model, context.rootless, IdPool(paths.data_dir()))
    backend = resolved.network.mode.value
    by_socket = resolved.socket_ports
    spec = holder_spec(name, mapping, backend, (resolved.helper_ports, by_socket), find_pause())
    unit = pod_unit_name(project)
    argv = lifecycle.launcher_argv(paths.container_dir(name), context.debug)
    publish = publishing.units_for(name, unit, by_socket, project)
    properties = pod_properties(project, argv) + publish.requires
    plain = pod_properties(project, lifecycle.launcher_argv(paths.container_dir(name)))
    digest = lifecycle.definition_digest(spec, plain + publish.counted, {})
    names = tuple(member.name for member in members)
    return Holder(name, unit, names, all_ports, spec, properties, digest, project.source, publish)


def bring_up(holder: Holder, context: lifecycle.Context, say: lifecycle.Say) -> None:
    """Start the holder unless it runs as `holder` says; replacing it stops its members,
    which `up` then starts again."""
    manager = context.manager
    running = lifecycle.is_running(manager, holder.unit)
    _check_owner(holder, running)
    if running and holder.unchanged:
        say(f"{holder.name}: already running as {holder.unit}")
        return
    if not running:
        publishing.stop_left_over(manager, holder.name)
    moving = _moving(holder)
    held = lifecycle.held_ports(holder.name) + [p for own in moving.values() for p in own]
    ports.check_free([port for port in holder.ports if port not in held])
    # They are replaced after the holder, joining it; first they let go of the ports.
    for member in moving:
        manager.stop(f"sdpod-{member}.service")
    replaced = (running or holder.directory.exists()) and not holder.unchanged
    if replaced:
        # Its id range stays: as root the members, about to join it, share it.
        manager.stop(holder.unit)
        lifecycle.remove_runtime_files(holder.name)
        lifecycle.remove_container_files(holder.name, context.rootless)
    ports.check_free(holder.ports)

    _prepare(holder)
    try:
        _start(holder, manager)
    except SdpodError:
        manager.stop(holder.unit)
        _remove_files(holder.name, context.rootless)
        raise
    how = "replaced, running" if replaced else "running"
    members, listed = ", ".join(holder.members), lifecycle.published(holder.ports)
    say(f"{holder.name}: {how} as {holder.unit}, the network of {members}{listed}")


def _moving(holder: Holder) -> dict[str, list[PortMapping]]:
    """The members of this file that still hold ports on networks of their own, from
    before they joined the pod, with those ports: the holder takes them over."""
    held = {
        member: lifecycle.held_ports(member)
        for member in holder.members
        if lifecycle.owner_of(member) == holder.source
    }
    return {member: own for member, own in held.items() if own}


def _check_owner(holder: Holder, running: bool) -> None:
    owner = lifecycle.owner_of(holder.name)
    if owner is not None and owner != holder.source:
        raise SdpodError(
            f"failed to start {holder.name}: {owner} has a project of the same name, whose "
            "containers share the network it holds",
            hint=f"name this project otherwise (`[project] name` in {holder.source})",
        )
    if owner is None and running:
        raise SdpodError(
            f"failed to start {holder.name}: a unit {holder.unit} runs that sdpod did not make",
            hint=f"name this project otherwise (`[project] name` in {holder.source})",
        )


def _prepare(holder: Holder) -> None:
    """The holder's bundle: its config.json, and an empty root with the mount points
    made ahead, which the holder's root could not make in it as root (real root owns
    the root, not one of the holder's ids)."""
    root = holder.directory / "rootfs"
    (root / "dev").mkdir(parents=True, exist_ok=True)
    (root / PAUSE_PATH.lstrip("/")).touch()
    bundle.write_spec(holder.directory, holder.spec)
    lifecycle.record_definition(holder.directory, holder.digest, holder.source)


def _start(holder: Holder, manager: Manager) -> None:
    """From a unit file where a member has one (`enable`), since that member requires the
    holder at boot, and systemd refuses a transient unit of a name that has a file;
    transient otherwise."""
    members = (f"sdpod-{member}.service" for member in holder.members)
    if any(unitfile.unit_path(unit).exists() for unit in [holder.unit, *members]):
        if publishing.write_unit_files(manager, holder.name, holder.unit_files):
            manager.reload()
        manager.start_unit(holder.unit)
        return
    manager.start_transient(holder.unit, holder.properties, holder.ports_units.aux)


def take_down(project: Project, manager: Manager, say: lifecycle.Say) -> None:
    """Stop the holder of `project`'s network, once its members are stopped or have left
    it; its files go unless a unit still requires it, an enabled member, at boot."""
    name, unit = project.pod_name, pod_unit_name(project)
    owner = lifecycle.owner_of(name)
    if owner is None and lifecycle.own_mapping() is None:
        # A range that an `up` which failed early took for it.
        IdPool(paths.data_dir()).release(name)
    if owner != project.source:
        return
    manager.stop(unit)
    lifecycle.remove_runtime_files(name)
    if _required_at_boot(unit, manager):
        say(f"{name}: stopped; kept for the enabled containers whose network it holds")
        return
    if _remove_unit_files(name, unit):
        manager.reload()
    _remove_files(name, lifecycle.own_mapping())
    say(f"{name}: stopped and removed")


def _remove_unit_files(name: str, unit: str) -> bool:
    """Delete the holder's unit file and its ports'; whether there was one."""
    names = [unit, *publishing.unit_files(name)]
    return any([unitfile.remove_unit(each) for each in names])


def _required_at_boot(unit: str, manager: Manager) -> list[str]:
    """The units with files of their own that require `unit`: enabled members, which
    pull it in at boot. Transient ones go as they stop."""
    required_by = manager.unit_property(unit, UNIT_INTERFACE, "RequiredBy") or []
    return [name for name in required_by if unitfile.unit_path(name).exists()]


def _unused(project: Project) -> bool:
    """Whether the project has a holder of its own but no containers share a network."""
    return not project.pod_members and lifecycle.owner_of(project.pod_name) == project.source


def stop_unused(context: lifecycle.Context) -> None:
    """Stop the holder of a project whose containers no longer share a network, before
    they are replaced: the ports it holds are theirs again."""
    if _unused(context.project):
        context.manager.stop(pod_unit_name(context.project))


def remove_unused(context: lifecycle.Context, say: lifecycle.Say) -> None:
    """Take down the holder of a project whose containers no longer share a network,
    once they are replaced and their units no longer require it."""
    if _unused(context.project):
        take_down(context.project, context.manager, say)


def _remove_files(name: str, rootless: IdMapping | None) -> None:
    lifecycle.remove_runtime_files(name)
    lifecycle.remove_container_files(name, rootless)
    if rootless is None:
        IdPool(paths.data_dir()).release(name)


def make_persistent(
    holder: Holder, context: lifecycle.Context, say: lifecycle.Say, running: bool
) -> None:
    """Write the holder's unit file for `enable`: the enabled members pull it in at boot
    (Requires=). A transient holder moves to its file by a restart, as a
    container does, and its members, stopped with it, come back from theirs."""
    manager = context.manager
    if manager.unit_property(holder.unit, UNIT_INTERFACE, "Transient"):
        manager.stop(holder.unit)
        manager.wait_unloaded(holder.unit)
    if publishing.write_unit_files(manager, holder.name, holder.unit_files):
        manager.reload()
    if running:
        bring_up(holder, context, say)
    else:
        _prepare(holder)
    say(f"{holder.name}: {holder.unit} starts at boot with the members that require it")


def forget_unit_file(project: Project, manager: Manager) -> None:
    """After `disable`: the holder's unit file goes with the last member's, unless the
    holder runs; `down` removes it then."""
    unit = pod_unit_name(project)
    if any(unitfile.unit_path(c.unit_name).exists() for c in project.containers):
        return
    if lifecycle.is_running(manager, unit):
        return
    if _remove_unit_files(project.pod_name, unit):
        manager.reload()
    if lifecycle.owner_of(project.pod_name) == project.source:
        _remove_files(project.pod_name, lifecycle.own_mapping())
