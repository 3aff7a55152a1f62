"""Checks of settings that only make sense together, within a container or across them.

Each check reads the containers as read (`Read` entries), records its problems at the
key that would have to change, and leaves valid values as they are; `share_networks`
then adds the start order that sharing a network implies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePosixPath

from sdpod.config.model import (
    SOCKET_PORTS_MAX,
    Dependency,
    Network,
    NetworkMode,
    Ownership,
    PortProxy,
    Protocol,
    UserNamespace,
    Volume,
)
from sdpod.config.mounts import SECRETS_DIR
from sdpod.config.problems import Spot
from sdpod.config.schema import Read
from sdpod.config.security import ALL_CAPABILITIES, is_network_sysctl

_MOUNT_KEYS = ("volumes", "tmpfs", "secrets", "devices")
_RESOLUTION_KEYS = ("dns", "dns_search", "dns_options", "extra_hosts")


def check_coherence(entries: Sequence[Read]) -> None:
    by_name = {entry.values["name"]: entry for entry in entries if "name" in entry.values}
    for entry in entries:
        _check_mount_targets(entry)
        _check_volume_owners(entry)
        _check_capabilities(entry)
        _check_network(entry, by_name)
    _check_pod(entries)


def _check_mount_targets(entry: Read) -> None:
    """Refuse two mounts on one path: the later would hide the earlier without a word."""
    seen: dict[PurePosixPath, str] = {}
    for key in _MOUNT_KEYS:
        for index, mount in enumerate(entry.values.get(key, ())):
            target = PurePosixPath("/" + str(mount.target).lstrip("/"))
            earlier = seen.get(target)
            if earlier is not None:
                entry.spot.child(key).child(index).fail(
                    f"{target} is already the target of {earlier}; valid: one mount a path",
                    entry.raw[key][index],
                )
            seen[target] = f"{key}[{index}]"
            if entry.values.get("secrets") and key != "secrets":
                _check_clear_of_secrets(entry, key, index, target)


def _check_clear_of_secrets(entry: Read, key: str, index: int, target: PurePosixPath) -> None:
    """A mount at /run/secrets or inside it would be hidden by the secrets' own, or
    take their files onto a disk: secrets are written only to memory."""
    if target == SECRETS_DIR or SECRETS_DIR in target.parents:
        entry.spot.child(key).child(index).fail(
            f"{target} is where the secrets go; valid: a target outside {SECRETS_DIR}",
            entry.raw[key][index],
        )


def _check_capabilities(entry: Read) -> None:
    added = set(entry.values.get("cap_add", ()))
    for index, name in enumerate(entry.values.get("cap_drop", ())):
        if name in added and name != ALL_CAPABILITIES:
            entry.spot.child("cap_drop").child(index).fail(
                "cap_add gives the same capability; valid: name it in one of them",
                entry.raw["cap_drop"][index],
            )
    if ALL_CAPABILITIES in added:
        index = entry.values["cap_add"].index(ALL_CAPABILITIES)
        entry.spot.child("cap_add").child(index).fail(
            "a container with every capability is not isolated from the kernel; valid: "
            "the capabilities it needs, by name",
            entry.raw["cap_add"][index],
        )


def _check_network(entry: Read, by_name: dict[str, Read]) -> None:
    network: Network | None = entry.values.get("network")
    if network is None or network.mode.user_mode:
        return
    spot = entry.spot.child("network")
    _check_own_network_keys(entry, network)
    if network.mode is NetworkMode.CONTAINER:
        _check_shared_with(entry, network, spot, by_name)


def _check_own_network_keys(entry: Read, network: Network) -> None:
    """Ports, and the network's own settings, belong to the container that owns it."""
    mode = network.mode.value if network.container is None else f"container:{network.container}"
    owner = (
        f'container "{network.container}"'
        if network.container is not None
        else "a container with its own network"
    )
    if network.mode is NetworkMode.NONE:
        _check_ports_without_helper(entry)
    elif entry.values.get("ports") and network.mode is not NetworkMode.HOST:
        _refuse_key(
            entry,
            "ports",
            f'network = "{mode}" has no ports to publish; valid: publish them on {owner}',
        )
    if entry.values.get("ports") and network.mode is NetworkMode.HOST:
        _refuse_key(
            entry,
            "ports",
            'on network = "host" the container listens on the '
            "host's ports itself; valid: no ports",
        )
    sysctls = [name for name, _ in entry.values.get("sysctls", ()) if is_network_sysctl(name)]
    if sysctls and network.mode is not NetworkMode.NONE:
        _refuse_key(
            entry,
            "sysctls",
            f'network = "{mode}" is not this container\'s own, '
            f"so neither are {', '.join(sysctls)}; valid: set them on {owner}",
        )
    if network.mode is NetworkMode.CONTAINER:
        # Its /etc/hosts and resolv.conf are those of the network's owner.
        for key in _RESOLUTION_KEYS:
            if entry.values.get(key):
                _refuse_key(
                    entry,
                    key,
                    f'network = "{mode}" resolves names as {owner} does; valid: set {key} '
                    f"on {owner}",
                )


def _check_ports_without_helper(entry: Read) -> None:
    """On loopback alone only systemd's socket activation publishes ports: TCP ones, as
    many container ports as it takes units for (`Container.socket_ports`)."""
    ports = entry.values.get("ports", ())
    if ports and entry.values.get("port_proxy") is PortProxy.HELPER:
        entry.spot.child("port_proxy").fail(
            'network = "none" has no network helper to forward its ports; valid: "systemd", '
            'or network = "private" for the helper'
        )
    for index, port in enumerate(ports):
        if port.protocol is not Protocol.TCP:
            entry.spot.child("ports").child(index).fail(
                'on network = "none" only TCP ports are published, by systemd\'s socket '
                'activation; valid: a TCP port, or network = "private" for UDP'
            )
    if len({port.container_port for port in ports}) > SOCKET_PORTS_MAX:
        entry.spot.child("ports").fail(
            f'on network = "none" at most {SOCKET_PORTS_MAX} container ports are '
            'published; valid: fewer, or network = "private"'
        )


def _check_shared_with(entry: Read, network: Network, spot: Spot, by_name: dict[str, Read]) -> None:
    name = network.container
    owner = by_name.get(name) if name is not None else None
    shown = f"container:{name}"
    if name == entry.values.get("name"):
        spot.fail("a container cannot share its own network; valid: another's name", shown)
    elif owner is None:
        others = [f'"container:{other}"' for other in by_name if other != entry.values["name"]]
        valid = f"one of {', '.join(others)}" if others else "another container of this file"
        spot.fail(f"no container of this file has this name; valid: {valid}", shown)
    elif owner.values.get("network", Network()).mode is NetworkMode.CONTAINER:
        spot.fail(
            f'container "{name}" shares another\'s network itself; valid: the name of the '
            "container that owns the network",
            shown,
        )
    elif entry.values.get("userns", UserNamespace()) != owner.values.get("userns"):
        spot.fail(
            f'container "{name}" has another userns setting; a network is shared only '
            "within one user namespace; valid: the same userns on both",
            shown,
        )
    elif _depends_on(owner, entry.values["name"], by_name):
        spot.fail(
            f'container "{name}" depends on this one, but must start first to share its '
            "network; valid: drop that dependency",
            shown,
        )


def _check_pod(entries: Sequence[Read]) -> None:
    """The containers on the default network share one, pod-style (`Project.pod_members`):
    they must have one user namespace, and not publish one container port twice."""
    members = [
        entry
        for entry in entries
        if "network" in entry.values
        and entry.values["network"].on_the_files_network
        and "name" in entry.values
    ]
    if len(members) < 2:
        return
    first = members[0].values
    shares = f'containers on network = "private" share one network, as {first["name"]} does'
    listening: dict[tuple[int, str], str] = {}
    for entry in members:
        values = entry.values
        if "userns" in values and values["userns"] != first.get("userns"):
            entry.spot.child("userns").fail(
                f"{shares}, which needs one user namespace; valid: the userns of "
                f'{first["name"]}, or network = "slirp4netns" or "pasta" for a network apart'
            )
        if "port_proxy" in values and values["port_proxy"] != first.get("port_proxy"):
            entry.spot.child("port_proxy").fail(
                f"{shares}, whose ports one proxy publishes; valid: the port_proxy of "
                f'{first["name"]}, or network = "slirp4netns" or "pasta" for a network apart'
            )
        for index, port in enumerate(values.get("ports", ())):
            where = f"{port.container_port}/{port.protocol.value}"
            other = listening.setdefault((port.container_port, port.protocol.value), values["name"])
            if other != values["name"]:
                entry.spot.child("ports").child(index).fail(
                    f"{shares}, and {other} listens on container port {where}; valid: "
                    'another container port, or network = "slirp4netns" or "pasta" for a '
                    "network apart"
                )


def _depends_on(entry: Read, name: str, by_name: dict[str, Read]) -> bool:
    """Whether `entry` depends on container `name`, directly or through others."""
    seen: set[str] = set()
    waiting = [dependency.name for dependency in entry.values.get("depends_on", ())]
    while waiting:
        current = waiting.pop()
        if current == name:
            return True
        other = by_name.get(current)
        if other is None or current in seen:
            continue
        seen.add(current)
        waiting += [dependency.name for dependency in other.values.get("depends_on", ())]
    return False


def _refuse_key(entry: Read, key: str, message: str) -> None:
    entry.spot.child(key).fail(message)


def share_networks(entries: Sequence[Read]) -> None:
    """Make each container that shares another's network start after it, and stop with it."""
    for entry in entries:
        network: Network | None = entry.values.get("network")
        if network is None or network.container is None:
            continue
        dependencies = entry.values.get("depends_on", ())
        if all(dependency.name != network.container for dependency in dependencies):
            entry.values["depends_on"] = (*dependencies, Dependency(network.container))


def _check_volume_owners(entry: Read) -> None:
    """Refuse an owner option that cannot work for the user running sdpod."""
    for index, volume in enumerate(entry.values.get("volumes", ())):
        problem = _volume_problem(volume)
        if problem:
            entry.spot.child("volumes").child(index).fail(problem)


def _volume_problem(volume: Volume) -> str | None:
    if volume.owner is not Ownership.IDMAP:
        return None
    if os.geteuid() == 0:
        return None
    # An idmapped mount needs CAP_SYS_ADMIN in the user namespace that owns the file
    # system, the host's for any host directory (mount_setattr(2)).
    return (
        'owner = "idmap" needs sdpod to run as root: only root may idmap a host '
        'directory; valid: owner = "shift" to give the files to the container\'s user'
    )
