"""The unit's first main process: start a container from its bundle, hand it to systemd, exit.

No Python stays behind (DESIGN.md): once the container's init has exec'd its command,
the launcher tells systemd that the init is the unit's main process (`MAINPID=`, with a
barrier) and leaves. The network helper it started (slirp4netns or pasta) stays in the
unit's cgroup and is killed with it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sdpod import paths
from sdpod.config.model import PortMapping, Protocol
from sdpod.errors import NetworkError, RuntimeSetupError
from sdpod.kernel.idmap import idmapped_trees
from sdpod.network import pasta, slirp
from sdpod.runtime import cgroup, journal, notify, readiness, shared
from sdpod.runtime.bundle import write_atomically
from sdpod.runtime.container import Trees
from sdpod.runtime.creation import Creation, mapping_of
from sdpod.runtime.spec import (
    ANNOTATION_IDMAP,
    ANNOTATION_NAME,
    ANNOTATION_NETWORK,
    ANNOTATION_OVERLAY,
    ANNOTATION_PORTS,
    ANNOTATION_SOCKET_PORTS,
)

log = logging.getLogger(__name__)


def load_spec(bundle: Path) -> dict[str, Any]:
    try:
        spec: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise RuntimeSetupError(f"failed to read {bundle / 'config.json'}: {error}") from None
    return spec


def ports_of(spec: dict[str, Any], annotation: str = ANNOTATION_PORTS) -> list[PortMapping]:
    """The ports that the spec's annotation lists as `ip:host:container/proto`: by
    default those that the network helper publishes."""
    text = spec.get("annotations", {}).get(annotation, "")
    ports = []
    for item in filter(None, text.split(",")):
        address, _, protocol = item.rpartition("/")
        host_ip, host_port, container_port = address.rsplit(":", 2)
        ports.append(PortMapping(host_ip, int(host_port), int(container_port), Protocol(protocol)))
    return ports


def published_of(spec: dict[str, Any]) -> list[PortMapping]:
    """Every port the container publishes, by its network helper or by systemd."""
    return ports_of(spec) + ports_of(spec, ANNOTATION_SOCKET_PORTS)


# How long a failed network start waits for the init's own report of what went wrong.
INIT_FAILURE_GRACE = 0.5


def launch(bundle: Path, console: int = -1) -> int:
    """Start the container of `bundle`; return the PID of its init once it runs.

    `console` is a connected unix socket, inherited by the init, which sends it the
    master of its terminal where the spec's `process.terminal` asks for one
    (`sdpod.runtime.terminal`). The caller closes it once this returns.
    """
    spec = load_spec(bundle)
    readiness.give_notify_socket(spec, dict(os.environ))
    rootfs = str(bundle / spec["root"]["path"])
    leaves = cgroup.find_unit_cgroup()
    if leaves:
        cgroup.move(os.getpid(), leaves.supervisor)
    if journal.writes_to_journal():
        journal.relay_output()

    network = spec.get("annotations", {}).get(ANNOTATION_NETWORK, "slirp4netns")
    joined = shared.open_joined(spec, shared.network_owner(network))
    trees = _idmapped_trees(spec)
    creation = Creation(spec, rootfs, trees=trees, joined=joined, console=console)
    try:
        init = creation.prepare(leaves.container if leaves else None)
        try:
            _start_network(init, spec, bundle)
        except NetworkError:
            # A container whose set-up failed (a sysctl, a mount) takes its network
            # namespace with it, and the network helper's complaint would hide the cause.
            creation.raise_if_failed(INIT_FAILURE_GRACE)
            raise
        creation.release()
    except BaseException:
        creation.kill()
        raise
    finally:
        creation.close()
    return init


def _idmapped_trees(spec: dict[str, Any]) -> Trees:
    """As root, the image's layer trees and the volumes marked idmap seen with the
    container's ids, each with the path to attach it at; none rootless, where the kernel
    forbids it.

    The trees are close-on-exec, yet inherited across fork by the container's process.
    """
    annotations = spec.get("annotations", {})
    overlay = json.loads(annotations.get(ANNOTATION_OVERLAY, "{}"))
    views = _lower_views(overlay) + json.loads(annotations.get(ANNOTATION_IDMAP) or "[]")
    if not views:
        return ()
    for view in views:
        os.makedirs(view["attach"], exist_ok=True)
    fds = idmapped_trees([view["source"] for view in views], mapping_of(spec))
    return tuple(zip(fds, (view["attach"] for view in views), strict=True))


def _lower_views(overlay: dict[str, Any]) -> list[dict[str, str]]:
    """The image's trees to idmap, each with where the overlay expects it."""
    if overlay.get("idmap"):
        attach = Path(overlay["attach"])
        return [
            {"source": lower, "attach": str(attach / str(index))}
            for index, lower in enumerate(overlay["lowers"])
        ]
    if overlay.get("idmap_lower"):  # a bundle of an sdpod before shared layers
        return [{"source": overlay["lower"], "attach": overlay["idmap_lower"]}]
    return []


def _start_network(init: int, spec: dict[str, Any], bundle: Path) -> None:
    """Start the network helper that config.json names, which `up` chose."""
    mode = spec.get("annotations", {}).get(ANNOTATION_NETWORK, "slirp4netns")
    # Loopback alone, which the init has brought up; the host's network; or another
    # container's, which that one's launcher has set up: nothing to start here.
    if mode in ("none", "host") or shared.network_owner(mode):
        return
    if mode not in ("slirp4netns", "pasta"):
        raise NetworkError(f"failed to start the container's network: unknown mode {mode!r}")
    name = spec.get("annotations", {}).get(ANNOTATION_NAME, bundle.name)
    socket_path = paths.network_socket(name)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "pasta":
        # pasta has no API socket; its log goes where slirp4netns's would.
        pasta.start(init, ports_of(spec), socket_path.with_suffix(".log"))
        return
    slirp.start(init, socket_path)
    slirp.publish(socket_path, ports_of(spec))


def main(bundle: Path) -> int:
    """Launch, tell systemd who the main process is, and return the exit status."""
    init = launch(bundle)
    spec = load_spec(bundle)
    name = spec.get("annotations", {}).get(ANNOTATION_NAME, bundle.name)
    record_start(name, init)
    notify.notify(readiness.ready_message(spec, init, name))
    return 0


def record_start(name: str, init: int) -> None:
    """Write the init's PID for `sdpod exec` and the health checks, and links to its
    namespaces for containers that share its network; forget the last start's health:
    this start is checked afresh."""
    pid_file = paths.pid_file(name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(pid_file, f"{init}\n")
    shared.record(name, init)
    paths.health_file(name).unlink(missing_ok=True)
