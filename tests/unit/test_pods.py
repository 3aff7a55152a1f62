"""Which containers share a file's network, and the names each finds there."""

from __future__ import annotations

from pathlib import Path

from sdpod import pods
from sdpod.config.model import Container, LayoutImage, Network, NetworkMode, Project

IMAGE = LayoutImage(Path("/img"), "v1")


def shop() -> Project:
    web = Container("web", IMAGE, hostname="www")
    db = Container("db", IMAGE)
    sidecar = Container("sidecar", IMAGE, network=Network(NetworkMode.CONTAINER, "db"))
    apart = Container("apart", IMAGE, network=Network(NetworkMode.SLIRP4NETNS))
    return Project(Path("/p/shop.toml"), (web, db, sidecar, apart), "shop")


def test_members_and_their_joiners_find_every_members_names() -> None:
    project = shop()
    web, db, sidecar, apart = project.containers

    assert project.pod_members == (web, db)
    # The joiner of a member is in the pod's network too: every one finds its name.
    everyone = ["www", "web", "db", "sidecar"]
    assert pods.neighbours(web, project) == everyone
    assert pods.neighbours(db, project) == everyone
    # A joiner of db resolves names as db, the owner of the network it joins, does.
    owner = next(c for c in project.containers if c.name == sidecar.network.container)
    assert pods.neighbours(owner, project) == everyone
    assert pods.neighbours(apart, project) == []


def test_a_member_joins_the_holder_and_leaves_its_ports_to_it() -> None:
    project = shop()
    web = project.containers[0]

    view = pods.member_view(web, project)
    assert view.network == Network(NetworkMode.CONTAINER, "shop-pod")
    assert view.ports == ()
    apart = project.containers[3]
    assert pods.member_view(apart, project) is apart
