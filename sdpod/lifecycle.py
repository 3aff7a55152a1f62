"""Bring the containers of a TOML file up and down, and list what runs.

This is where the layers meet, in the order data flows: the TOML's model, the image,
the OCI bundle, the unit's properties, systemd. Each step that can fail on the user's
input runs before anything is started or written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdpod import paths, pods, projects, publishing
from sdpod.config.load import load_project
from sdpod.config.model import (
    Container,
    LayoutImage,
    NamedVolume,
    NetworkMode,
    PortMapping,
    Project,
)
from sdpod.errors import ImageError, RuntimeSetupError, SdpodError
from sdpod.health import readiness
from sdpod.health import service as checks
from sdpod.images.store import ImageStore, StoredImage, Unpack
from sdpod.kernel.userns import IdMapping, rootless_mapping, run_in_userns
from sdpod.network import addresses, backends, files, ports
from sdpod.runtime import bundle, idmaps, shared
from sdpod.runtime.idpool import IdPool
from sdpod.runtime.launch import published_of
from sdpod.runtime.spec import (
    ANNOTATION_OVERLAY,
    BundleLayout,
    build_spec,
)
from sdpod.units import health as health_units
from sdpod.units import unitfile
from sdpod.units.manager import UNIT_INTERFACE, Manager
from sdpod.units.translate import Property, service_properties, slice_name

if TYPE_CHECKING:
    from sdpod.observe import ContainerRow

log = logging.getLogger(__name__)

Say = Callable[[str], None]

INIT_BINARY = "tini-static"
# What a container on the host's network starts its own name resolution from.
HOST_HOSTS = Path("/etc/hosts")
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
# In a container's directory: the digest of what defines it (see `definition_digest`).
DIGEST_FILE = "desired.sha256"
# The TOML file the container belongs to: container names are one namespace per user.
OWNER_FILE = "source"
RUNNING_STATES = ("active", "activating", "reloading", "deactivating")


def is_root() -> bool:
    return os.geteuid() == 0


def own_mapping() -> IdMapping | None:
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


def _etc_files(container: Container, project: Project) -> dict[str, str]:
    """The container's /etc/hosts, hostname and resolv.conf. A container that shares
    another's network resolves names as that one does; on the host's network they start
    from copies of the host's files, made at each `up` as podman makes them."""
    owner_name = container.network.container
    owner = next((c for c in project.containers if c.name == owner_name), container)
    host = None
    if owner.network.mode is NetworkMode.HOST:
        host = files.HostFiles(_read_or_empty(HOST_HOSTS), _read_or_empty(HOST_RESOLV_CONF))
    neighbours = pods.neighbours(owner, project)
    return files.etc_files(container, owner, host, neighbours, addresses.host_address())


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def remove_container_files(name: str, rootless: IdMapping | None) -> None:
    """Delete a container's directory, whose files belong to its subordinate ids.

    Rootless, only a process in a user namespace mapping those ids may delete them: the
    user's default mapping `rootless` maps every id that any container of theirs has.
    """
    directory = paths.container_dir(name)
    if not directory.exists():
        return
    if rootless is None:
        shutil.rmtree(directory)
    else:
        run_in_userns(rootless, functools.partial(shutil.rmtree, directory))


def remove_runtime_files(name: str) -> None:
    socket = paths.network_socket(name)
    socket.unlink(missing_ok=True)
    socket.with_suffix(".log").unlink(missing_ok=True)
    shared.remove(name)
    checks.remove_files(name)


@dataclass
class _Context:
    manager: Manager
    store: ImageStore
    rootless: IdMapping | None
    init: Path
    debug: bool
    project: Project


# Its public name, for the verbs of sdpod.persist.
Context = _Context


@contextlib.contextmanager
def session(project: Project, debug: bool = False) -> Iterator[Context]:
    """What preparing and starting containers takes: ids, the init, the store, systemd."""
    rootless = own_mapping()
    init = find_init()
    store = ImageStore(paths.data_dir())
    with Manager.connect() as manager:
        yield _Context(manager, store, rootless, init, debug, project)


def up(file: Path, say: Say, debug: bool = False) -> None:
    """Start every container of `file` that is not running as the file says."""
    project = projects.load(file)
    with session(project, debug) as context:
        # Every image is imported or pulled before any container starts: a pull that
        # fails leaves the project as it was, rather than half started.
        holder = pods.desired_holder(context)
        wants = [desired(container, context) for container in readiness.start_order(project)]
        if holder is not None:
            pods.bring_up(holder, context, say)
        else:
            pods.stop_unused(context)
        for want in wants:
            bring_up(want, context, say)
        # After the containers that left the file's network: their new units no longer
        # require the holder, whose files can then go.
        if holder is None:
            pods.remove_unused(context, say)


def is_running(manager: Manager, unit: str) -> bool:
    state = manager.unit_property(unit, UNIT_INTERFACE, "ActiveState")
    return state in RUNNING_STATES


@dataclass(frozen=True)
class Desired:
    """A container as its TOML defines it now: its bundle's files and its unit."""

    container: Container
    mapping: IdMapping
    layout: BundleLayout
    spec: dict[str, Any]
    properties: list[Property]
    digest: str
    source: Path
    """The TOML file that defines the container."""
    etc: dict[str, str]
    """The files of the bundle's etc directory, by name."""
    ports: publishing.Publishing
    """The units that publish its TCP ports, if any."""

    @property
    def unchanged(self) -> bool:
        """Whether the container's files on disk were made from this same definition."""
        return made_from(self.layout.bundle, self.digest)


def made_from(directory: Path, digest: str) -> bool:
    """Whether the bundle in `directory` was made from the definition of `digest`."""
    try:
        recorded = (directory / DIGEST_FILE).read_text().strip()
    except OSError:
        return False
    return recorded == digest


def record_definition(directory: Path, digest: str, source: Path) -> None:
    """Write beside a bundle the digest of its definition, and the TOML file it is from."""
    bundle.write_atomically(directory / DIGEST_FILE, digest + "\n")
    bundle.write_atomically(directory / OWNER_FILE, f"{source}\n")


def desired(container: Container, context: _Context) -> Desired:
    """Import the image and build the container's config.json and unit; write nothing."""
    container = with_backend(pods.member_view(container, context.project))
    mapping = idmaps.mapping_for(container, context.rootless, IdPool(paths.data_dir()))
    image = _image_for(container, mapping, context)
    layout = BundleLayout.under(
        paths.container_dir(container.name), image.lowers, paths.volumes_dir()
    )
    user_set = idmaps.with_default_user(container)
    owner = container.network.container
    joined = shared.namespace_paths(owner) if owner is not None else None
    spec = build_spec(
        user_set,
        image.config,
        layout,
        mapping,
        context.init,
        idmap_lower=is_root(),
        shared=joined,
        image_id=image.id,
    )
    argv = launcher_argv(layout.bundle, context.debug)
    publish = publishing.units_for(
        container.name, container.unit_name, container.socket_ports, context.project
    )
    properties = service_properties(container, context.project, argv) + publish.requires
    # --debug changes what the launcher logs, not the container: it does not count.
    plain = service_properties(container, context.project, launcher_argv(layout.bundle))
    etc = _etc_files(container, context.project)
    digest = definition_digest(spec, plain + publish.counted, etc)
    source = context.project.source
    return Desired(container, mapping, layout, spec, properties, digest, source, etc, publish)


def with_backend(container: Container) -> Container:
    """`container` with the backend of its user-mode network chosen on this machine,
    warning where that is a pasta too old to be the default or a port half answered;
    refused where the backend cannot publish one of its ports. Other network modes stay
    as they are."""
    if not container.network.mode.user_mode:
        return container
    resolved, warnings = backends.resolve(container, backends.installed_pasta())
    for warning in warnings:
        log.warning("%s: %s", container.name, warning)
    return resolved


def definition_digest(spec: dict[str, Any], properties: list[Property], etc: dict[str, str]) -> str:
    """SHA-256 of a container's config.json, unit properties and /etc files, which hold
    no volatile part (no time, no process id): the same TOML and image give the same
    digest (and, on the host's network, the same host files)."""
    text = json.dumps([spec, properties, etc], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def owner_of(name: str) -> Path | None:
    """The TOML file whose `up` made the container `name`, None where it has no files."""
    try:
        return Path((paths.container_dir(name) / OWNER_FILE).read_text().strip())
    except OSError:
        return None


def _check_owner(want: Desired, source: Path, running: bool) -> None:
    """Refuse to take over a container, or a unit, that another file or the user made.

    Container names are one namespace per user, as their units are.
    """
    name, unit = want.container.name, want.container.unit_name
    owner = owner_of(name)
    if owner is not None and owner != source:
        raise SdpodError(
            f"failed to start container {name}: {owner} already has a container of that name",
            hint=f"rename it in {source}, or take the other one down: `sdpod down {owner}`",
        )
    if owner is None and running:
        raise SdpodError(
            f"failed to start container {name}: a unit {unit} runs that sdpod did not make",
            hint=f"rename the container in {source}",
        )


def bring_up(want: Desired, context: _Context, say: Say) -> None:
    """Start the container unless it runs as `want` says; replace it if it differs."""
    container, unit = want.container, want.container.unit_name
    running = is_running(context.manager, unit)
    _check_owner(want, context.project.source, running)
    if running and want.unchanged:
        say(f"{container.name}: already running as {unit}")
        return
    if not running:
        publishing.stop_left_over(context.manager, container.name)
    # Ports the running container does not hold are checked before it is replaced: an
    # edit that cannot start must not take the working container down with it.
    held = held_ports(container.name)
    ports.check_free([port for port in container.ports if port not in held])
    replaced = remove_if_changed(want, context, running)
    ports.check_free(container.ports)

    created = not want.layout.bundle.exists()
    prepare(want)
    try:
        _start(want, context)
    except SdpodError:
        context.manager.stop(unit)
        remove_runtime_files(container.name)
        if created:
            remove_container_files(container.name, context.rootless)
        raise
    how = "replaced, running" if replaced else "running"
    say(f"{container.name}: {how} as {unit}{published(container.ports)}")


def held_ports(name: str) -> list[PortMapping]:
    """The ports the existing bundle of container `name` publishes, none without one."""
    spec = bundle.read_spec(paths.container_dir(name))
    return published_of(spec) if spec else []


def remove_if_changed(want: Desired, context: _Context, running: bool) -> bool:
    """Stop and delete a container made from another definition; whether there was one.

    Its overlay's upper layer goes with it, as a changed container is recreated by
    `docker compose up`: what it wrote belongs in volumes.
    """
    if not (running or want.layout.bundle.exists()) or want.unchanged:
        return False
    context.manager.stop(want.container.unit_name)
    remove_runtime_files(want.container.name)
    remove_container_files(want.container.name, context.rootless)
    return True


def prepare(want: Desired) -> None:
    """Write the container's bundle, and the digest of the definition it was made from."""
    root_owner = want.mapping.host_root
    make_volume_sources(want.container, want.layout, root_owner)
    # Rootless, chown(2) gives files only to the user; a container whose root is one of
    # the subordinate ids takes its overlay's directories itself, in its own namespace.
    owner = root_owner if is_root() else (os.getuid(), os.getgid())
    bundle.prepare(want.layout, want.spec, want.etc, owner)
    if owner != root_owner:
        run_in_userns(want.mapping, functools.partial(_chown_to_root, want.layout))
    record_definition(want.layout.bundle, want.digest, want.source)


def make_volume_sources(container: Container, layout: BundleLayout, owner: tuple[int, int]) -> None:
    """Make the named volumes that do not exist yet, and missing sources marked `create`.

    Each new directory belongs to the container's root, as docker makes them.
    """
    for volume in container.volumes:
        if isinstance(volume, NamedVolume):
            path = layout.volume(volume.name)
        elif volume.create:
            path = volume.source
        else:
            continue
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o755)
        if is_root():
            os.chown(path, *owner)


def _chown_to_root(layout: BundleLayout) -> None:
    for directory in (layout.upper, layout.work):
        os.chown(directory, 0, 0)


def _start(want: Desired, context: _Context) -> None:
    """An enabled container starts from its unit file, rewritten if the TOML changed:
    systemd refuses a transient unit of a name that has one."""
    unit, manager = want.container.unit_name, context.manager
    if not enabled_after_stop(manager, want.container):
        aux = want.ports.aux
        checks.start(manager, want.container, want.properties, want.layout.bundle, aux)
        return
    if publishing.write_unit_files(manager, want.container.name, unit_files(want)):
        manager.reload()
    manager.start_unit(unit)


def unit_files(want: Desired) -> list[unitfile.UnitSpec]:
    """An enabled container's units: its service, and its health check's timer and
    service, which the service pulls in as it does when `up` creates them transient."""
    container = want.container
    slice_unit = next((value for key, (_, value) in want.properties if key == "Slice"), None)
    checker = checks.checker_argv(want.layout.bundle)
    aux = health_units.health_units(container, checker, slice_unit)
    own = [*want.properties, *health_units.main_unit_properties(container)]
    return [
        (container.unit_name, "service", own),
        *((name, name.rpartition(".")[2], properties) for name, properties in aux),
        *want.ports.units,
    ]


def remove_unit_files(container: Container) -> None:
    """Delete the files `unit_files` writes, those of the health check and the ports as
    well."""
    names = (health_units.timer_name(container), health_units.service_name(container))
    for name in (container.unit_name, *names, *publishing.unit_files(container.name)):
        unitfile.remove_unit(name)


def enabled_after_stop(manager: Manager, container: Container) -> bool:
    """Whether a stopped container's unit is enabled, and so starts from its file.

    `sdpod disable` keeps the files of a running container, so that systemd keeps its
    settings while it runs; once the container is stopped, such files go here.
    """
    unit = container.unit_name
    if not unitfile.unit_path(unit).exists():
        return False
    if manager.unit_file_state(unit) == "enabled":
        return True
    remove_unit_files(container)
    manager.reload()
    return False


def remove_container(container: Container, context: _Context) -> None:
    """Delete a stopped container's files and, as root, free its id range."""
    remove_container_files(container.name, context.rootless)
    remove_runtime_files(container.name)
    if context.rootless is None:
        IdPool(paths.data_dir()).release(container.name)


def remove(names: list[str], say: Say, force: bool = False) -> None:
    """Delete stopped containers by name: those whose TOML file is gone, or was never
    taken down. A running container is refused, unless `force` stops it first."""
    from sdpod import observe

    for name in names:
        observe.require_known(name, "remove")
    rootless = own_mapping()
    lowers: list[Path] = []
    with Manager.connect() as manager:
        for name in names:
            # Its service, or the scope of `sdpod run`.
            units = (f"sdpod-{name}.service", f"sdpod-{name}.scope")
            running = [unit for unit in units if is_running(manager, unit)]
            if running and not force:
                if running[0] == units[1]:
                    stop = "end its `sdpod run`"
                else:
                    stop = f"`sdpod down {owner_of(name) or 'FILE'}`"
                raise SdpodError(
                    f"failed to remove container {name}: it is running as {running[0]}",
                    hint=f"{stop}, or `sdpod rm --force {name}`",
                )
            for unit in units:
                manager.stop(unit)
            _forget_unit_files(manager, name)
            lowers += _lowers_of(name)
            remove_container_files(name, rootless)
            remove_runtime_files(name)
            if rootless is None:
                IdPool(paths.data_dir()).release(name)
            say(f"{name}: removed")
    _drop_mapped_copies(lowers, rootless)


def _forget_unit_files(manager: Manager, name: str) -> None:
    """Disable and delete what `sdpod enable` wrote for container `name`: a unit left
    enabled without its bundle would fail at every boot."""
    units = [f"sdpod-{name}.service", f"sdpod-{name}-health.timer", f"sdpod-{name}-health.service"]
    written = [unit for unit in units if unitfile.unit_path(unit).exists()]
    written += publishing.unit_files(name)
    if not written:
        return
    for unit in written[1:]:
        manager.stop(unit)
    manager.disable_unit_files(written)
    for unit in written:
        unitfile.remove_unit(unit)
    manager.reload()


def _lowers_of(name: str) -> list[Path]:
    """The image trees a container's overlay stacks, none if its bundle does not say."""
    from sdpod.images.usage import lowers_of

    spec = bundle.read_spec(paths.container_dir(name)) or {}
    try:
        return list(lowers_of(json.loads(spec["annotations"][ANNOTATION_OVERLAY])))
    except (KeyError, TypeError, ValueError):
        return []


def _drop_mapped_copies(lowers: list[Path], rootless: IdMapping | None) -> None:
    """Delete the image trees written through the mappings of removed containers that no
    other one uses."""
    from sdpod.images import removal

    unpack = None if rootless is None else functools.partial(run_in_userns, rootless)
    try:
        removal.drop_mapped_copies(ImageStore(paths.data_dir()), lowers, unpack)
    except ImageError as exc:
        # The containers are gone; a tree left behind goes at the next image prune.
        log.warning("kept the image trees the removed containers used: %s", exc)


def _image_for(container: Container, mapping: IdMapping, context: _Context) -> StoredImage:
    """The container's image; rootless, under another mapping than the user's default, its
    layer trees written again through that mapping (`ImageStore.mapped`)."""
    image = _import_image(container, context)
    if context.rootless is None or mapping == context.rootless:
        return image
    unpack = functools.partial(run_in_userns, mapping)
    return context.store.mapped(image, mapping.fingerprint, unpack)


def _import_image(container: Container, context: _Context) -> StoredImage:
    """Import the container's layout, or pull its registry image as its `pull` says.

    Rootless, the image's ids are shifted into the user's subordinate ids as it is
    unpacked; as root it keeps its own ids, and each container sees it idmapped. A pull
    shows its progress on stderr as `sdpod image pull` does, and ends before the unit is
    started.
    """
    unpack: Unpack | None = None
    if context.rootless is not None:
        unpack = functools.partial(run_in_userns, context.rootless)
    image = container.image
    if isinstance(image, LayoutImage):
        return context.store.import_layout(image, unpack=unpack)
    # Only a registry's image needs the HTTP client: `down`, `ps` and layouts never load it.
    from sdpod.images import progress
    from sdpod.images.pull import PullOptions

    options = PullOptions(container.tls_verify, progress=progress.for_stream(quiet=False))
    return context.store.ensure(image.reference, container.pull, unpack, options)


def published(mappings: Sequence[PortMapping]) -> str:
    """`, publishing 127.0.0.1:8080->80/tcp, …` for a line of `up`; nothing without ports."""
    if not mappings:
        return ""
    listed = ", ".join(
        f"{ports.host_address(p)}->{p.container_port}/{p.protocol.value}" for p in mappings
    )
    return f", publishing {listed}"


def down(file: Path, say: Say) -> None:
    """Stop every container of `file` and remove its files; the images stay.

    The image layouts and volumes the file names need not exist any more.
    """
    project = load_project(file, check_paths=False)
    rootless = own_mapping()
    with Manager.connect() as manager:
        for container in readiness.stop_order(project):
            owner = owner_of(container.name)
            if owner != project.source:
                if owner is None and rootless is None:
                    # A range that an `up` which failed early took for it.
                    IdPool(paths.data_dir()).release(container.name)
                say(_not_ours(container.name, owner))
                continue
            manager.stop(container.unit_name)
            checks.stop_checks(manager, container)
            if enabled_after_stop(manager, container):
                remove_runtime_files(container.name)
                say(_still_enabled(container.name, file))
                continue
            remove_container_files(container.name, rootless)
            remove_runtime_files(container.name)
            if rootless is None:
                IdPool(paths.data_dir()).release(container.name)
            say(f"{container.name}: stopped and removed")
        pods.take_down(project, manager, say)
        stop_empty_slice(manager, project)


def stop_empty_slice(manager: Manager, project: Project) -> None:
    """Stop the project's slice once no unit in it runs: systemd keeps a slice that a
    transient unit made until it is stopped, as `systemctl --user list-units` shows."""
    name = slice_name(project)
    members = manager.unit_property(name, UNIT_INTERFACE, "RequiredBy")
    if members is None:
        return
    if any(is_running(manager, member) for member in members):
        return
    manager.stop(name)


def _not_ours(name: str, owner: Path | None) -> str:
    if owner is None:
        return f"{name}: not running, nothing to remove"
    return f"{name}: left alone, it belongs to {owner}"


def _still_enabled(name: str, file: Path) -> str:
    return (
        f"{name}: stopped; still enabled, so it starts at boot (`sdpod disable {file}` removes it)"
    )


def ps() -> list[ContainerRow]:
    """Every container with its unit's state; `sdpod.observe` reads them."""
    from sdpod import observe

    return observe.ps()
