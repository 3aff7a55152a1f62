"""Translation of a container into its unit's properties: pure, tested by fixture files.

Every `NAME.toml` under tests/fixtures/units has beside it `NAME.properties.json`: for
each container of the file, by name, the list of `[property, signature, value]` that
`service_properties` must give, in order. The unit's command is the fixed `EXEC_START`,
and the fixture directory's absolute path, which image paths show, reads `FIXTURES`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdpod.config.load import load_project
from sdpod.config.model import (
    Container,
    Dependency,
    DependencyCondition,
    HealthCheck,
    LayoutImage,
    Network,
    NetworkMode,
    Project,
    ReadyWhen,
    Resources,
    RestartPolicy,
)
from sdpod.units.translate import (
    START_TIMEOUT_SECONDS,
    pod_properties,
    scope_name,
    scope_properties,
    service_properties,
    slice_name,
    start_timeout,
)

FIXTURES = (Path(__file__).parent.parent / "fixtures" / "units").resolve()
EXEC_START = ["/launcher", "launch", "BUNDLE"]
IMAGE = LayoutImage(Path("/img"), "v1")


def expected_properties(toml: Path) -> dict[str, list[object]]:
    """What the fixture `toml` translates to now, in the form of its expected file."""
    project = load_project(toml, {})
    translated = {
        container.name: [
            [name, signature, value]
            for name, (signature, value) in service_properties(container, project, EXEC_START)
        ]
        for container in project.containers
    }
    text = json.dumps(translated).replace(json.dumps(str(FIXTURES))[1:-1], "FIXTURES")
    loaded: dict[str, list[object]] = json.loads(text)
    return loaded


@pytest.mark.parametrize("toml", sorted(FIXTURES.glob("*.toml")), ids=lambda path: path.stem)
def test_fixture(toml: Path) -> None:
    expected = json.loads(toml.with_suffix(".properties.json").read_text())
    assert expected_properties(toml) == expected


def test_every_expected_result_has_its_toml() -> None:
    orphans = [
        path.name
        for path in FIXTURES.glob("*.properties.json")
        if not path.with_name(path.name.removesuffix(".properties.json") + ".toml").exists()
    ]
    assert orphans == []


def one(container: Container, name: str = "shop") -> Project:
    return Project(Path("/p/shop.toml"), (container,), name)


def test_every_policy_has_a_systemd_word() -> None:
    for policy in RestartPolicy:
        container = Container("x", IMAGE, restart=policy)
        properties = dict(service_properties(container, one(container), ["/py"]))
        assert properties["Restart"] == ("s", policy.value)


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ("shop", "sdpod-shop.slice"),
        ("my-shop", "sdpod-my\\x2dshop.slice"),
        ("a.b_c-1-", "sdpod-a.b_c\\x2d1\\x2d.slice"),
        ("", "sdpod.slice"),
    ],
)
def test_slice_is_a_child_of_sdpod_slice(project: str, expected: str) -> None:
    assert slice_name(Project(Path("/p.toml"), (), project)) == expected


def test_a_container_waited_for_as_healthy_is_health_gated() -> None:
    health = HealthCheck(("true",), interval=60, timeout=10, retries=2, start_period=15)
    db = Container("db", IMAGE, health=health)
    web = Container("web", IMAGE, depends_on=(Dependency("db", DependencyCondition.HEALTHY),))
    project = Project(Path("/p/shop.toml"), (db, web), "shop")

    assert project.ready_of(db) is ReadyWhen.HEALTHY
    assert start_timeout(db, project) == 15 + 3 * 70
    assert dict(service_properties(db, project, ["/py"]))["NotifyAccess"] == ("s", "all")
    assert start_timeout(db, one(db)) == START_TIMEOUT_SECONDS


def test_a_started_dependency_does_not_gate() -> None:
    db = Container("db", IMAGE)
    web = Container("web", IMAGE, depends_on=(Dependency("db"),))
    project = Project(Path("/p/shop.toml"), (db, web), "shop")

    assert project.ready_of(db) is ReadyWhen.STARTED
    assert dict(service_properties(db, project, ["/py"]))["NotifyAccess"] == ("s", "main")
    web_properties = dict(service_properties(web, project, ["/py"]))
    # Both on the default network: they share the one that sdpod-shop-pod.service holds.
    both = ("as", ["sdpod-shop-pod.service", "sdpod-db.service"])
    assert web_properties["Requires"] == web_properties["After"] == both


def test_containers_on_the_default_network_are_bound_to_the_holder_of_theirs() -> None:
    db = Container("db", IMAGE)
    web = Container("web", IMAGE)
    apart = Container("apart", IMAGE, network=Network(NetworkMode.SLIRP4NETNS))
    project = Project(Path("/p/shop.toml"), (db, web, apart), "shop")

    assert project.pod_members == (db, web)
    for member in (db, web):
        properties = dict(service_properties(member, project, ["/py"]))
        assert properties["Requires"] == ("as", ["sdpod-shop-pod.service"])
        assert properties["After"] == ("as", ["sdpod-shop-pod.service"])
    assert "Requires" not in dict(service_properties(apart, project, ["/py"]))

    holder = dict(pod_properties(project, ["/py", "launch", "B"]))
    assert holder["Description"] == ("s", "sdpod network shared by db, web")
    assert holder["Slice"] == ("s", "sdpod-shop.slice")
    assert holder["SyslogIdentifier"] == ("s", "shop-pod")
    assert holder["ExecStart"] == ("a(sasb)", [("/py", ["/py", "launch", "B"], False)])
    # Restarted when killed; its members, requiring it, follow it into its new network.
    assert holder["Restart"] == ("s", "always")


def test_a_single_container_keeps_its_network_to_itself() -> None:
    web = Container("web", IMAGE)
    project = Project(Path("/p/web.toml"), (web,), "web")

    assert project.pod_members == ()
    assert "Requires" not in dict(service_properties(web, project, ["/py"]))


def test_a_foreground_container_gets_a_delegated_scope_of_its_processes() -> None:
    container = Container(
        "shell",
        IMAGE,
        stop_signal=2,
        stop_timeout=3.5,
        resources=Resources(memory_max=1 << 20, pids_max=64),
    )
    properties = scope_properties(container, one(container, ""), [4242])

    assert scope_name(container) == "sdpod-shell.scope"
    assert properties == [
        ("Description", ("s", "sdpod container shell (oci:/img:v1)")),
        ("PIDs", ("au", [4242])),
        ("Slice", ("s", "sdpod.slice")),
        ("Delegate", ("b", True)),
        ("KillSignal", ("i", 2)),
        ("TimeoutStopUSec", ("t", 3_500_000)),
        ("CollectMode", ("s", "inactive-or-failed")),
        ("MemoryMax", ("t", 1 << 20)),
        ("TasksMax", ("t", 64)),
    ]
