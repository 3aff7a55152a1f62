"""The holder of a project's shared network: a container that only waits.

The containers of one file on the default network share one network namespace
(`Project.pod_members`), so that each reaches the others by name. The namespace belongs
to none of them: any of them can stop, crash or be replaced without taking the others'
network with it. A pause process holds it instead, catatonit in its pause mode (the one
podman's pods use), bound read-only into an empty root. The launcher treats the holder
as any container: it starts the network helper and publishes the members' ports there,
and records the links that the members join (`sdpod.runtime.shared`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdpod.config.model import PortMapping
from sdpod.kernel.userns import IdMapping
from sdpod.runtime.spec import (
    ANNOTATION_IMAGE,
    ANNOTATION_NAME,
    ANNOTATION_NETWORK,
    NAMESPACES,
    OCI_VERSION,
    id_map,
    port_annotations,
)

PAUSE_BINARY = "catatonit"
# Where the pause binary is bound in the holder's empty root, which the bundle provides
# as an empty file.
PAUSE_PATH = "/catatonit"


def holder_spec(
    name: str,
    mapping: IdMapping,
    backend: str,
    ports: tuple[Sequence[PortMapping], Sequence[PortMapping]],
    pause: Path,
) -> dict[str, Any]:
    """The config.json of the holder `name`: root in `mapping`'s user namespace, a network
    through `backend` ("slirp4netns" or "pasta"), and nothing else but the pause binary
    `pause`. `ports` are those its network helper publishes, then those systemd's
    sockets do."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [PAUSE_PATH, "-P"],
            "env": [],
            "cwd": "/",
            "noNewPrivileges": True,
            "capabilities": {"bounding": []},
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": name,
        "mounts": [
            # The default devices go here rather than into the bundle's root.
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "noexec", "mode=755", "size=64k"],
            },
            {
                "destination": PAUSE_PATH,
                "type": "bind",
                "source": str(pause),
                "options": ["bind", "ro", "nosuid", "nodev"],
            },
        ],
        "linux": {
            "uidMappings": id_map(mapping.uids),
            "gidMappings": id_map(mapping.gids),
            "namespaces": [{"type": kind} for kind in NAMESPACES],
        },
        "annotations": {
            ANNOTATION_NAME: name,
            # What `sdpod ps` shows in the image's column: what runs, from the host.
            ANNOTATION_IMAGE: str(pause),
            ANNOTATION_NETWORK: backend,
            **port_annotations(*ports),
        },
    }
