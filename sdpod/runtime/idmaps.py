"""Each container's id mapping, as its `userns` setting asks, checked before it starts.

Rootless, "auto" is the user's default mapping (their own id as root, then their
subordinate ids), "keep-id" keeps their own id the same inside, and explicit maps must
stay within what newuidmap(1) would grant. As root, "auto" takes a block of root's id
pool (`sdpod.runtime.idpool`) and explicit maps are taken as written, clear of that pool;
the image is then seen through an idmapped mount, so any mapping works with it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from sdpod.config.model import Container, IdMap, UsernsMode
from sdpod.errors import RuntimeSetupError
from sdpod.kernel.userns import (
    SUBGID,
    SUBUID,
    Grants,
    IdMapping,
    IdRange,
    keep_id_mapping,
    ungranted,
)
from sdpod.runtime import idpool


def mapping_for(container: Container, rootless: IdMapping | None, pool: idpool.IdPool) -> IdMapping:
    """The mapping `container` runs with; `rootless` is the user's default, None as root."""
    userns = container.userns
    if rootless is None:
        return _as_root(container, pool)
    if userns.mode is UsernsMode.AUTO:
        return rootless
    grants = Grants.of_caller()
    if userns.mode is UsernsMode.KEEP_ID:
        return _keep_id(container.name, grants)
    mapping = explicit_mapping(userns.uid_map, userns.gid_map)
    check_granted(container.name, mapping, grants)
    return mapping


def with_default_user(container: Container) -> Container:
    """Under "keep-id" the container runs as the user's own uid and gid, as podman's
    keep-id does, unless its `user` setting names another user."""
    if container.userns.mode is not UsernsMode.KEEP_ID or container.user is not None:
        return container
    return dataclasses.replace(container, user=f"{os.getuid()}:{os.getgid()}")


def _as_root(container: Container, pool: idpool.IdPool) -> IdMapping:
    userns = container.userns
    if userns.mode is UsernsMode.AUTO and container.network.container is not None:
        # It joins the user namespace of the container whose network it shares (a network
        # namespace is entered from the user namespace that owns it): its image is seen,
        # and its files are owned, with that container's ids.
        return pool.share(container.name, container.network.container)
    if userns.mode is UsernsMode.AUTO:
        return pool.mapping_for(container.name)
    if userns.mode is UsernsMode.KEEP_ID:
        raise RuntimeSetupError(
            f'failed to start container {container.name}: userns = "keep-id" keeps the id '
            "of whoever runs sdpod, and as root that would give the container the host's root",
            hint='run it as the user whose id it should keep, or use "auto" or explicit maps',
        )
    mapping = explicit_mapping(userns.uid_map, userns.gid_map)
    for kind, ranges in (("uid_map", mapping.uids), ("gid_map", mapping.gids)):
        clash = next((r for r in ranges if idpool.overlaps_pool(r.host_id, r.size)), None)
        if clash is not None:
            first, last = idpool.POOL
            raise RuntimeSetupError(
                f"failed to start container {container.name}: userns.{kind} entry "
                f'"{_show(clash)}" maps host ids that sdpod as root hands to containers '
                f'of userns = "auto" ({first} to {last})',
                hint="map host ids outside that range",
            )
    return mapping


def _keep_id(name: str, grants: Grants) -> IdMapping:
    if not (grants.subuids and grants.subgids):
        raise RuntimeSetupError(
            f'failed to start container {name}: userns = "keep-id" needs subordinate ids '
            f"for the container's root, and user {grants.user} has none in {SUBUID} and "
            f"{SUBGID}",
            hint='give the user ranges (`sdpod doctor` says how), or use userns = "auto"',
        )
    return keep_id_mapping(grants)


def explicit_mapping(uid_map: Sequence[IdMap], gid_map: Sequence[IdMap]) -> IdMapping:
    def ranges(maps: Sequence[IdMap]) -> tuple[IdRange, ...]:
        ordered = sorted(maps, key=lambda m: m.container_id)
        return tuple(IdRange(m.container_id, m.host_id, m.count) for m in ordered)

    return IdMapping(uids=ranges(uid_map), gids=ranges(gid_map))


def check_granted(name: str, mapping: IdMapping, grants: Grants) -> None:
    """Refuse what newuidmap and newgidmap would refuse, naming the entry and the ranges
    the user has; and a mapping without the user's own ids, which sdpod needs."""
    checks = (
        ("uid_map", "uid", mapping.uids, grants.uid, grants.subuids, SUBUID),
        ("gid_map", "gid", mapping.gids, grants.gid, grants.subgids, SUBGID),
    )
    for key, what, ranges, own, granted, path in checks:
        have = f"their own {what} {own} and " + (
            f"the {path} ranges {', '.join(_show_grant(g) for g in granted)}"
            if granted
            else f"no {path} range"
        )
        refused = ungranted(ranges, own, granted)
        if refused is not None:
            last = refused.host_id + refused.size - 1
            raise RuntimeSetupError(
                f'failed to start container {name}: userns.{key} entry "{_show(refused)}" '
                f"maps host {what}s {refused.host_id} to {last}, which user {grants.user} "
                f"may not map; they have {have}",
                hint=f"map only ids of those ranges, or ask root to add some to {path}",
            )
        # The launcher and the image's copy reach sdpod's files under the user's home,
        # which only the user's own ids may enter.
        if not any(r.host_id <= own < r.host_id + r.size for r in ranges):
            raise RuntimeSetupError(
                f"failed to start container {name}: userns.{key} does not map your own "
                f"{what} {own}; the container's files under your home are reachable only "
                "through it",
                hint=f'add an entry for it, like "CONTAINER_ID:{own}:1"',
            )


def _show(r: IdRange) -> str:
    return f"{r.container_id}:{r.host_id}:{r.size}"


def _show_grant(grant: tuple[int, int]) -> str:
    start, count = grant
    return f"{start}-{start + count - 1}"
