"""The network modes in config.json, and how a launcher finds the namespaces it joins.

Pure, or reading only /proc: no privileges.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sdpod.config.model import Container, LayoutImage, Network, NetworkMode, PortMapping
from sdpod.errors import RuntimeSetupError
from sdpod.kernel import syscalls
from sdpod.kernel.userns import IdMapping, IdRange
from sdpod.runtime import idmaps, namespaces, shared
from sdpod.runtime import spec as oci
from sdpod.runtime.idpool import IdPool

MAPPING = IdMapping(uids=(IdRange(0, 1000, 1),), gids=(IdRange(0, 1000, 1),))
SHARED_PATHS = {
    "user": "/run/user/1000/sdpod/db.userns",
    "network": "/run/user/1000/sdpod/db.netns",
}


class Image:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("httpd",)
    env: tuple[tuple[str, str], ...] = ()
    working_dir = "/"
    user = ""


def build(tmp_path: Path, network: Network, **changes: Any) -> dict[str, Any]:
    image = LayoutImage(Path("/images/web"), "latest")
    container = Container(name="web", image=image, network=network, **changes)
    layout = oci.BundleLayout.under(tmp_path / "bundle", (tmp_path / "lower",), tmp_path / "vol")
    shared_paths = SHARED_PATHS if network.mode is NetworkMode.CONTAINER else None
    return oci.build_spec(container, Image(), layout, MAPPING, shared=shared_paths)


def test_a_private_network_is_a_new_namespace_with_slirp4netns(tmp_path: Path) -> None:
    spec = build(tmp_path, Network(), ports=(PortMapping("127.0.0.1", 8080, 80),))
    assert {"type": "network"} in spec["linux"]["namespaces"]
    assert spec["annotations"]["io.sdpod.network"] == "slirp4netns"
    assert namespaces.creates(spec, "network")


def test_no_network_is_a_new_namespace_and_no_helper(tmp_path: Path) -> None:
    spec = build(tmp_path, Network(NetworkMode.NONE))
    assert {"type": "network"} in spec["linux"]["namespaces"]
    assert spec["annotations"]["io.sdpod.network"] == "none"
    assert namespaces.new_flags(spec) & syscalls.CLONE_NEWNET
    assert namespaces.creates(spec, "network")


def test_the_host_network_is_no_namespace_at_all(tmp_path: Path) -> None:
    spec = build(tmp_path, Network(NetworkMode.HOST))
    kinds = [entry["type"] for entry in spec["linux"]["namespaces"]]
    assert "network" not in kinds
    assert sorted(kinds) == sorted(set(oci.NAMESPACES) - {"network"})
    assert spec["annotations"]["io.sdpod.network"] == "host"
    assert not namespaces.new_flags(spec) & syscalls.CLONE_NEWNET
    assert not namespaces.creates(spec, "network")


def test_a_shared_network_joins_the_owners_user_and_network_namespaces(tmp_path: Path) -> None:
    spec = build(tmp_path, Network(NetworkMode.CONTAINER, "db"))
    entries = spec["linux"]["namespaces"]
    assert {"type": "network", "path": SHARED_PATHS["network"]} in entries
    assert {"type": "user", "path": SHARED_PATHS["user"]} in entries
    for kind in ("pid", "ipc", "uts", "mount", "cgroup"):
        assert {"type": kind} in entries
    assert spec["annotations"]["io.sdpod.network"] == "container:db"
    assert shared.network_owner(spec["annotations"]["io.sdpod.network"]) == "db"
    # Neither a new network nor a new user namespace is created; mount and the rest are.
    flags = namespaces.new_flags(spec)
    assert not flags & (syscalls.CLONE_NEWNET | syscalls.CLONE_NEWUSER)
    assert flags & syscalls.CLONE_NEWNS and flags & syscalls.CLONE_NEWPID
    assert not namespaces.creates(spec, "network")


def test_a_shared_network_without_the_owners_paths_is_a_bug(tmp_path: Path) -> None:
    image = LayoutImage(Path("/images/web"), "latest")
    container = Container("web", image, network=Network(NetworkMode.CONTAINER, "db"))
    with pytest.raises(ValueError, match="db"):
        oci.namespaces(container, None)


def test_other_annotations_name_no_owner() -> None:
    for annotation in ("slirp4netns", "none", "host"):
        assert shared.network_owner(annotation) is None


def test_namespace_paths_are_links_in_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert shared.namespace_paths("db") == {
        "user": f"{tmp_path}/sdpod/db.userns",
        "network": f"{tmp_path}/sdpod/db.netns",
    }


def joined_spec(link: Path) -> dict[str, Any]:
    return {"linux": {"namespaces": [{"type": "network", "path": str(link)}, {"type": "pid"}]}}


def test_joining_a_container_that_never_ran_says_it_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(RuntimeSetupError) as caught:
        shared.open_joined(joined_spec(tmp_path / "db.netns"), "db")
    assert str(caught.value) == "failed to join the network of container db: it is not running"
    assert caught.value.hint is not None and "sdpod status db" in caught.value.hint


def test_a_link_to_a_process_outside_the_owners_unit_is_not_trusted(tmp_path: Path) -> None:
    # Our own process stands for a PID that another process has taken over since.
    link = tmp_path / "db.netns"
    link.symlink_to(f"/proc/{os.getpid()}/ns/net")
    with pytest.raises(RuntimeSetupError, match="db: it is not running"):
        shared.open_joined(joined_spec(link), "db")


def test_record_points_the_links_at_the_inits_namespaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "sdpod").mkdir()
    shared.record("db", 4242)
    shared.record("db", 4343)
    assert os.readlink(tmp_path / "sdpod/db.netns") == "/proc/4343/ns/net"
    assert os.readlink(tmp_path / "sdpod/db.userns") == "/proc/4343/ns/user"
    shared.remove("db")
    assert list((tmp_path / "sdpod").iterdir()) == []


def test_as_root_a_joiner_takes_the_block_of_the_network_it_joins(tmp_path: Path) -> None:
    pool = IdPool(tmp_path)
    image = LayoutImage(Path("/images/web"), "latest")
    owner = Container("db", image)
    joiner = Container("app", image, network=Network(NetworkMode.CONTAINER, "db"))
    # Whichever is asked first, both get one block.
    shared_block = idmaps.mapping_for(joiner, None, pool)
    assert idmaps.mapping_for(owner, None, pool) == shared_block
    # The block stays taken while either holds it.
    pool.release("db")
    other = pool.mapping_for("other")
    assert other != shared_block
    pool.release("app")
    pool.release("other")
    assert pool.mapping_for("last") == shared_block
