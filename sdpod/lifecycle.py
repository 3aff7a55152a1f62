"""Bring the containers of a TOML file up and down, and list what runs.

This is where the layers meet, in the order data flows: the TOML's model, the image,
the OCI bundle, the unit's properties, systemd. Each step that can fail on the user's
input runs before anything is started or written.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdpod import paths
from sdpod.config.load import load_project
from sdpod.config.model import Container, Project
from sdpod.errors import RuntimeSetupError, SdpodError
from sdpod.images.store import ImageStore, StoredImage
from sdpod.kernel.userns import IdMapping, rootless_mapping, run_in_userns
from sdpod.network import files, ports
from sdpod.runtime import bundle
from sdpod.runtime.idpool import IdPool
from sdpod.runtime.spec import (
    BundleLayout,
    build_spec,
)
from sdpod.units.manager import UNIT_INTERFACE, Manager
from sdpod.units.translate import service_properties

if TYPE_CHECKING:
    from sdpod.observe import ContainerRow

Say = Callable[[str], None]

INIT_BINARY = "tini-static"
RUNNING_STATES = ("active", "activating", "reloading", "deactivating")


def is_root() -> bool:
    return os.geteuid() == 0


def _mapping_for(name: str, rootless: IdMapping | None) -> IdMapping:
    """Rootless, every container shares the user's ids; as root each has its own range."""
    if rootless is not None:
        return rootless
    return IdPool(paths.data_dir()).mapping_for(name)


def _own_mapping() -> IdMapping | None:
    return None if is_root() else rootless_mapping()


def find_init() -> Path:
    found = shutil.which(INIT_BINARY)
    if found is None:
        raise RuntimeSetupError(
            f"failed to find {INIT_BINARY}, the init that runs as each container's PID 1",
            hint="install Debian's package `tini`",
        )
    return Path(found)


def launcher_argv(bundle_dir: Path, debug: bool = False) -> list[str]:
    """The unit's command: this Python, running only the runtime's launcher."""
    argv = [sys.executable, "-m", "sdpod.runtime", "launch", str(bundle_dir)]
    return [*argv, "--debug"] if debug else argv


def _etc_files(name: str) -> dict[str, str]:
    return {
        "hosts": files.hosts(name),
        "hostname": files.hostname(name),
        "resolv.conf": files.resolv_conf(),
    }


def remove_container_files(name: str, mapping: IdMapping) -> None:
    """Delete a container's directory, whose files belong to its subordinate ids.

    Rootless, only a process in a user namespace mapping those ids may delete them.
    """
    directory = paths.container_dir(name)
    if not directory.exists():
        return
    if is_root():
        shutil.rmtree(directory)
    else:
        run_in_userns(mapping, functools.partial(shutil.rmtree, directory))


def _remove_runtime_files(name: str) -> None:
    socket = paths.network_socket(name)
    socket.unlink(missing_ok=True)
    socket.with_suffix(".log").unlink(missing_ok=True)


@dataclass
class _Context:
    manager: Manager
    store: ImageStore
    rootless: IdMapping | None
    init: Path
    debug: bool
    project: Project


def up(file: Path, say: Say, debug: bool = False) -> None:
    """Start every container of `file` that is not running yet."""
    project = load_project(file)
    rootless = _own_mapping()
    init = find_init()
    store = ImageStore(paths.data_dir())
    with Manager.connect() as manager:
        context = _Context(manager, store, rootless, init, debug, project)
        for container in project.containers:
            _up_one(container, context, say)


def _is_running(manager: Manager, unit: str) -> bool:
    state = manager.unit_property(unit, UNIT_INTERFACE, "ActiveState")
    return state in RUNNING_STATES


def _up_one(container: Container, context: _Context, say: Say) -> None:
    unit = container.unit_name
    if _is_running(context.manager, unit):
        say(f"{container.name}: already running as {unit}")
        return
    ports.check_free(container.ports)

    mapping = _mapping_for(container.name, context.rootless)
    image = _import_image(container, context)
    layout = BundleLayout.under(paths.container_dir(container.name), image.rootfs)
    spec = build_spec(container, image.config, layout, mapping, context.init, idmap_lower=is_root())
    created = not layout.bundle.exists()
    root_owner = (mapping.uids[0].host_id, mapping.gids[0].host_id)
    bundle.prepare(layout, spec, _etc_files(container.name), root_owner)

    argv = launcher_argv(layout.bundle, context.debug)
    properties = service_properties(container, context.project, argv)
    try:
        context.manager.start_transient(unit, properties)
    except SdpodError:
        context.manager.stop(unit)
        _remove_runtime_files(container.name)
        if created:
            remove_container_files(container.name, mapping)
        raise
    say(f"{container.name}: running as {unit}{_published(container)}")


def _import_image(container: Container, context: _Context) -> StoredImage:
    """Rootless, the image's ids are shifted into the user's subordinate ids as it is
    unpacked; as root it keeps its own ids, and each container sees it idmapped."""
    if context.rootless is None:
        return context.store.import_layout(container.image)
    unpack = functools.partial(run_in_userns, context.rootless)
    return context.store.import_layout(container.image, unpack=unpack)


def _published(container: Container) -> str:
    if not container.ports:
        return ""
    listed = ", ".join(
        f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol.value}" for p in container.ports
    )
    return f", publishing {listed}"


def down(file: Path, say: Say) -> None:
    """Stop every container of `file` and remove its files; the images stay."""
    project = load_project(file)
    rootless = _own_mapping()
    with Manager.connect() as manager:
        for container in project.containers:
            manager.stop(container.unit_name)
            remove_container_files(container.name, _mapping_for(container.name, rootless))
            _remove_runtime_files(container.name)
            if rootless is None:
                IdPool(paths.data_dir()).release(container.name)
            say(f"{container.name}: stopped and removed")


def ps() -> list[ContainerRow]:
    """Every container with its unit's state; `sdpod.observe` reads them."""
    from sdpod import observe

    return observe.ps()
