"""Named volumes: the directories sdpod keeps for containers, which outlive them.

`up` makes a volume on first use (`lifecycle.make_volume_sources`); nothing but
`sdpod volume rm` and `prune` deletes one, and neither deletes a volume that a
container's bundle still names, running or not.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdpod import paths
from sdpod.errors import SdpodError
from sdpod.kernel.userns import rootless_mapping, run_in_userns

Say = Callable[[str], None]


@dataclass(frozen=True)
class Volume:
    name: str
    path: Path
    users: tuple[str, ...]  # the containers whose bundles mount it


def list_volumes() -> list[Volume]:
    users = _users_by_volume()
    directory = paths.volumes_dir()
    names = sorted(entry.name for entry in directory.iterdir()) if directory.is_dir() else []
    return [Volume(name, directory / name, tuple(users.get(name, ()))) for name in names]


def _users_by_volume() -> dict[str, list[str]]:
    """Which containers mount which volume, read from their bundles' config.json."""
    volumes = paths.volumes_dir()
    users: dict[str, list[str]] = {}
    containers = paths.containers_dir()
    for config in sorted(containers.glob("*/config.json")) if containers.is_dir() else []:
        try:
            mounts = json.loads(config.read_text()).get("mounts", [])
        except (OSError, ValueError):
            continue
        for mount in mounts:
            source = Path(mount.get("source", ""))
            if source.parent == volumes:
                users.setdefault(source.name, []).append(config.parent.name)
    return users


def remove(names: list[str], say: Say) -> None:
    """Delete the volumes `names`; refuse, deleting none, if any is missing or in use."""
    known = {volume.name: volume for volume in list_volumes()}
    for name in names:
        volume = known.get(name)
        if volume is None:
            raise SdpodError(
                f"failed to remove volume {name}: no such volume",
                hint="`sdpod volume ls` lists them",
            )
        if volume.users:
            raise SdpodError(
                f"failed to remove volume {name}: container {', '.join(volume.users)} uses it",
                hint="take the container down first (`sdpod down FILE` or `sdpod rm NAME`)",
            )
    for name in names:
        _delete(known[name].path)
        say(f"{name}: removed")


def prune(say: Say) -> None:
    """Delete every volume that no container's bundle names."""
    unused = [volume.name for volume in list_volumes() if not volume.users]
    remove(unused, say)
    if not unused:
        say("no unused volumes")


def _delete(path: Path) -> None:
    """Rootless, a container's files in the volume belong to subordinate ids: only a
    process in a user namespace mapping them may delete them."""
    if os.geteuid() == 0:
        shutil.rmtree(path)
    else:
        run_in_userns(rootless_mapping(), functools.partial(shutil.rmtree, path))
