"""`sdpod up` of a TOML whose image comes from a registry on loopback.

A registry of this test's own (`support.registry`) runs on 127.0.0.1 of the host, which
the sandbox host shares; skopeo pushes the busybox test image into it. The installed
`sdpod` runs as the sandbox's test user, pulls over plain HTTP (`tls_verify = false`)
into that user's store, rootless, and starts the container. Each test pushes to a
repository of its own, so none sees another's pushes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost
from support.mkimage import File
from support.registry import Instance, skopeo_push, start_registry, stop_registry

from system.helpers import (
    EXAMPLES,
    Project,
    build_image,
    container_toml,
    fetch,
    free_port,
    refuses,
)
from system.test_first_light import (
    assert_clean_failure,
    assert_nothing_left,
    assert_running,
    errors_of,
    ok,
)

pytestmark = pytest.mark.system

TOOLS = ("docker-registry", "skopeo")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """One registry without authentication, stopped by its process at the end."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            message = f"{tool} is not installed (scripts/install --test installs it)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    directory = tmp_path_factory.mktemp("registry")
    instance = start_registry(directory, "images", directory / "storage")
    try:
        yield instance
    finally:
        stop_registry(instance)


@pytest.fixture
def project(sandbox: SandboxHost, user_dir: Path) -> Iterator[Project]:
    """A busybox web project of the test user, brought down at teardown: that only keeps
    a failed test from leaking a running container; each test checks its own `down`."""
    name = f"pulled-{secrets.token_hex(3)}"
    made = Project.create(sandbox, sandbox.user, user_dir / name, name, free_port())
    yield made
    made.down()


def push(registry: Instance, build_dir: Path, repository: str, version: str) -> str:
    """Build the busybox image with `/version` naming `repository` and `version`, push it
    as REPOSITORY:1, and return that reference. No two repositories share an image."""
    layout = build_dir / f"{repository.replace('/', '-')}-{version}"
    build_image(layout, [File("version", f"{repository} {version}\n".encode())])
    reference = f"{registry.host}/{repository}:1"
    skopeo_push(f"oci:{layout}:latest", reference)
    return reference


def use_image(project: Project, reference: str, pull: str) -> None:
    """Point the project's TOML at `reference`, over plain HTTP, with pull policy `pull`."""
    text = container_toml(project.name, project.port, image=reference)
    project.rewrite(text + f"pull = {json.dumps(pull)}\ntls_verify = false\n")


def listed_id(project: Project, reference: str) -> str | None:
    """The id `sdpod image ls` shows for `reference` (REPOSITORY TAG ID ...), if listed."""
    listing = project.sdpod("image", "ls")
    assert listing.returncode == 0, ok(listing)
    name, _, tag = reference.rpartition(":")
    for row in (line.split() for line in listing.stdout.splitlines()):
        if row[:2] == [name, tag]:
            return row[2]
    return None


def image_of(project: Project) -> str:
    """The id of the stored image the container was made from, from its config.json."""
    config = json.loads((project.container_dir / "config.json").read_text())
    return str(config["annotations"]["io.sdpod.image.id"])


def remove_image(project: Project, reference: str) -> None:
    removed = project.sdpod("image", "rm", reference)
    assert removed.returncode == 0, ok(removed)


def test_up_pulls_the_image_and_runs_it(
    project: Project, registry: Instance, tmp_path: Path
) -> None:
    reference = push(registry, tmp_path, f"sdpod/busybox-{project.name}", "1")
    use_image(project, reference, "missing")
    assert listed_id(project, reference) is None

    up = project.up()
    assert up.returncode == 0, ok(up)
    # Not a terminal: the pull's progress comes as plain lines on stderr.
    assert re.search(rf"{re.escape(reference)}: fetching \d+ layer", up.stderr), ok(up)
    assert f"unpacking {reference}" in up.stderr, ok(up)
    assert_running(project)
    image_id = listed_id(project, reference)
    assert image_id is not None
    assert image_id in image_of(project)

    down = project.down()
    assert down.returncode == 0, ok(down)
    assert_nothing_left(project)
    remove_image(project, reference)


def test_pull_never_without_the_image_fails_clearly(
    project: Project, registry: Instance, tmp_path: Path
) -> None:
    reference = push(registry, tmp_path, f"sdpod/never-{project.name}", "1")
    use_image(project, reference, "never")
    assert listed_id(project, reference) is None
    units_before = project.sdpod_units()

    stderr = assert_clean_failure(project.up(), project, units_before)
    assert reference in stderr, stderr
    assert "'never'" in stderr, stderr
    assert f"sdpod image pull --tls-verify=false {reference}" in stderr, stderr
    assert listed_id(project, reference) is None


def test_pull_always_replaces_the_container_once_the_tag_moves(
    project: Project, registry: Instance, tmp_path: Path
) -> None:
    repository = f"sdpod/moving-{project.name}"
    reference = push(registry, tmp_path, repository, "1")
    use_image(project, reference, "always")

    first = project.up()
    assert first.returncode == 0, ok(first)
    before = assert_running(project)
    first_id = listed_id(project, reference)
    assert first_id is not None and first_id in image_of(project)

    # Asking the registry again for the same image changes nothing.
    again = project.up()
    assert again.returncode == 0, ok(again)
    assert "already running" in again.stdout, ok(again)
    assert project.show()["MainPID"] == before["MainPID"]

    assert push(registry, tmp_path, repository, "2") == reference
    moved = project.up()
    assert moved.returncode == 0, ok(moved)
    assert "replaced, running" in moved.stdout, ok(moved)
    after = assert_running(project)
    assert after["MainPID"] != before["MainPID"]
    second_id = listed_id(project, reference)
    assert second_id is not None and second_id != first_id
    assert second_id in image_of(project)

    down = project.down()
    assert down.returncode == 0, ok(down)
    assert_nothing_left(project)
    remove_image(project, reference)
    # The first image lost its name to the second: it is removed by its id.
    remove_image(project, first_id)


def test_a_failed_pull_starts_no_container_of_the_file(
    project: Project, registry: Instance, tmp_path: Path
) -> None:
    # The first container's image is there; the second's repository was never pushed.
    reference = push(registry, tmp_path, f"sdpod/first-{project.name}", "1")
    missing = f"{registry.host}/sdpod/absent-{project.name}:1"
    project.rewrite(
        f"[containers.{project.name}]\n"
        f"image = {json.dumps(reference)}\n"
        'command = ["httpd", "-f", "-p", "80"]\n'
        f'ports = ["127.0.0.1:{project.port}:80"]\n'
        "tls_verify = false\n\n"
        f"[containers.{project.name}-2]\n"
        f"image = {json.dumps(missing)}\n"
        "tls_verify = false\n"
    )
    units_before = project.sdpod_units()

    up = project.up()
    assert up.returncode == 1, ok(up)
    assert missing.rpartition(":")[0] in errors_of(up.stderr), ok(up)
    assert project.sdpod_units() == units_before
    assert not project.container_dir.exists()
    assert listed_id(project, reference) is not None
    remove_image(project, reference)


def test_root_pulls_into_the_system_store(
    sandbox: SandboxHost, registry: Instance, user_dir: Path, tmp_path: Path
) -> None:
    # As root the layers are applied in sdpod's own process, owners kept, into
    # /var/lib/sdpod; the container is a system service.
    name = f"rootpull-{secrets.token_hex(3)}"
    reference = push(registry, tmp_path, f"sdpod/{name}", "1")
    port = free_port()
    shutil.copytree(EXAMPLES / "www", user_dir / "www")
    toml = user_dir / "root.toml"
    text = container_toml(name, port, image=reference)
    toml.write_text(text + 'pull = "always"\ntls_verify = false\n')

    def as_root(*argv: str) -> subprocess.CompletedProcess[str]:
        return sandbox.run_as_root(list(argv), check=False, timeout=90)

    try:
        up = as_root("sdpod", "up", str(toml))
        assert up.returncode == 0, up.stderr
        assert fetch(f"http://127.0.0.1:{port}/") == (EXAMPLES / "www/index.html").read_text()
        state = as_root("systemctl", "show", "-p", "ActiveState", f"sdpod-{name}.service")
        assert state.stdout.strip() == "ActiveState=active", state.stdout
        listing = as_root("sdpod", "image", "ls")
        repository = reference.rpartition(":")[0]
        assert any(line.split()[:2] == [repository, "1"] for line in listing.stdout.splitlines())
    finally:
        down = as_root("sdpod", "down", str(toml))
    assert down.returncode == 0, down.stderr
    assert refuses(port)
    removed = as_root("sdpod", "image", "rm", reference)
    assert removed.returncode == 0, removed.stderr
