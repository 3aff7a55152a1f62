"""`userns`: keep-id and explicit maps, rootless and as root, through the real CLI.

Each container writes what it sees into a bind volume and sleeps; the test reads those
files, and their owners, from the host. The image carries files of several owners, which
must show inside as the image has them whatever the mapping.
"""

from __future__ import annotations

import json
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost
from support.mkimage import Dir, File

from system.helpers import START_TIMEOUT, Project, build_image, free_port, report, wait_for

pytestmark = pytest.mark.system

# What the container reports, into /data: its ids, the image's owners, a file it made.
REPORT = (
    "id -u > /data/uid; id -g > /data/gid; ls -ln /srv > /data/srv; touch /data/made; "
    "echo done > /data/done; exec sleep 600"
)
IMAGE_FILES = (
    Dir("srv"),
    File("srv/www", b"www\n", uid=33, gid=33),
    File("srv/setuid", b"x\n", mode=0o4755),
)


def subordinate_start(user: str, path: str = "/etc/subuid") -> int:
    for line in Path(path).read_text().splitlines():
        name, start, _ = line.split(":")
        if name == user:
            return int(start)
    raise AssertionError(f"{user} has no range in {path}")


def toml(name: str, userns: str) -> str:
    return (
        "[container]\n"
        f"name = {json.dumps(name)}\n"
        'image = "oci:image:latest"\n'
        f"command = {json.dumps(['sh', '-c', REPORT])}\n"
        'volumes = ["./data:/data"]\n'
        f"userns = {userns}\n"
    )


@pytest.fixture
def project(sandbox: SandboxHost, user_dir: Path) -> Iterator[Project]:
    """A container of the test user whose TOML each test writes; down and rm afterwards."""
    name = f"userns-{secrets.token_hex(3)}"
    directory = user_dir / name
    (directory / "data").mkdir(parents=True)
    made = Project.create(sandbox, sandbox.user, directory, name, free_port(), extra=IMAGE_FILES)
    yield made
    made.down()
    made.sdpod("rm", "--force", name)


def image_owners(listing: str) -> dict[str, tuple[str, str, str]]:
    """Name to (mode, uid, gid) from `ls -ln`."""
    rows = [line.split() for line in listing.splitlines() if not line.startswith("total")]
    return {row[-1]: (row[0], row[2], row[3]) for row in rows}


def lowers_of(project: Project) -> list[Path]:
    spec = json.loads((project.container_dir / "config.json").read_text())
    lowers = json.loads(spec["annotations"]["io.sdpod.rootfs.overlay"])["lowers"]
    return [Path(lower) for lower in lowers]


def test_keep_id_keeps_the_users_id_inside_and_on_volume_files(project: Project) -> None:
    entry = pwd.getpwnam(project.user)
    project.rewrite(toml(project.name, '"keep-id"'))

    up = project.up()
    assert up.returncode == 0, up.stderr
    seen = report(project)

    assert seen["uid"].strip() == str(entry.pw_uid)
    assert seen["gid"].strip() == str(entry.pw_gid)
    made = (Path(project.directory) / "data/made").stat()
    assert (made.st_uid, made.st_gid) == (entry.pw_uid, entry.pw_gid)
    assert image_owners(seen["srv"]) == {
        "www": ("-rw-r--r--", "33", "33"),
        "setuid": ("-rwsr-xr-x", "0", "0"),
    }

    # The image's layers were unpacked again for the mapping, into trees named by it;
    # `rm` takes those with it, and the store's own trees stay.
    lowers = lowers_of(project)
    own = [lower.parent.with_name(lower.parent.name.partition("-")[0]) / "tree" for lower in lowers]
    assert all("-" in lower.parent.name for lower in lowers), lowers
    assert all(tree.is_dir() for tree in own)
    removed = project.sdpod("rm", "--force", project.name)
    assert removed.returncode == 0, removed.stderr
    assert not any(lower.exists() for lower in lowers)
    assert all(tree.is_dir() for tree in own)


def test_an_explicit_map_within_the_grants_runs_with_those_ids(project: Project) -> None:
    entry = pwd.getpwnam(project.user)
    uid_start = subordinate_start(project.user)
    gid_start = subordinate_start(project.user, "/etc/subgid")
    # Root is the first subordinate id, the user's own id is container id 1.
    uids = [f"0:{uid_start}:1", f"1:{entry.pw_uid}:1", f"2:{uid_start + 1}:65534"]
    gids = [f"0:{gid_start}:1", f"1:{entry.pw_gid}:1", f"2:{gid_start + 1}:65534"]
    maps = f"{{ uid_map = {json.dumps(uids)}, gid_map = {json.dumps(gids)} }}"
    project.rewrite(toml(project.name, maps))

    up = project.up()
    assert up.returncode == 0, up.stderr
    seen = report(project)

    assert seen["uid"].strip() == "0"
    made = (Path(project.directory) / "data/made").stat()
    assert (made.st_uid, made.st_gid) == (uid_start, gid_start)
    assert image_owners(seen["srv"])["www"] == ("-rw-r--r--", "33", "33")


def test_an_explicit_map_outside_the_grants_is_refused_by_name(project: Project) -> None:
    entry = pwd.getpwnam(project.user)
    uid_start = subordinate_start(project.user)
    outside = "1:50000:1000"
    maps = f'{{ uid_map = ["0:{entry.pw_uid}:1", "{outside}"] }}'
    project.rewrite(toml(project.name, maps))

    up = project.up()

    assert up.returncode != 0
    assert f'userns.uid_map entry "{outside}"' in up.stderr, up.stderr
    assert f"user {project.user} may not map" in up.stderr, up.stderr
    assert f"{uid_start}-{uid_start + 65535}" in up.stderr, up.stderr
    assert project.show()["LoadState"] == "not-found"
    assert not project.container_dir.exists()


# -- as root ------------------------------------------------------------------------------


def as_root(sandbox: SandboxHost, *argv: str) -> subprocess.CompletedProcess[str]:
    return sandbox.run_as_root(list(argv), check=False, timeout=90)


@pytest.fixture
def root_file(sandbox: SandboxHost, user_dir: Path) -> Iterator[tuple[Path, str]]:
    """A directory with the image and a data volume, for a container root runs."""
    name = f"rootns-{secrets.token_hex(3)}"
    build_image(user_dir / "image", IMAGE_FILES)
    # The container's root is a host id of its own, which owns nothing here.
    (user_dir / "data").mkdir(mode=0o777)
    (user_dir / "data").chmod(0o777)
    yield user_dir / "root.toml", name
    as_root(sandbox, "sdpod", "down", str(user_dir / "root.toml"))


def test_root_refuses_keep_id(sandbox: SandboxHost, root_file: tuple[Path, str]) -> None:
    path, name = root_file
    path.write_text(toml(name, '"keep-id"'))

    up = as_root(sandbox, "sdpod", "up", str(path))

    assert up.returncode != 0
    assert "would give the container the host's root" in up.stderr, up.stderr
    assert not (Path("/var/lib/sdpod/containers") / name).exists()


def test_root_runs_an_explicit_map_through_the_idmapped_image(
    sandbox: SandboxHost, root_file: tuple[Path, str]
) -> None:
    path, name = root_file
    first = 1 << 29  # below root's pool, and far above every /etc/subuid range here
    path.write_text(toml(name, f'{{ uid_map = ["0:{first}:65536"] }}'))

    up = as_root(sandbox, "sdpod", "up", str(path))
    assert up.returncode == 0, up.stderr

    data = path.parent / "data"
    wait_for(lambda: (data / "done").exists() or None, START_TIMEOUT, f"{name}'s report")
    assert (data / "uid").read_text().strip() == "0"
    assert (data / "made").stat().st_uid == first
    assert image_owners((data / "srv").read_text()) == {
        "www": ("-rw-r--r--", "33", "33"),
        "setuid": ("-rwsr-xr-x", "0", "0"),
    }
    ranges = Path("/var/lib/sdpod/idranges.json")
    assert name not in (json.loads(ranges.read_text()) if ranges.exists() else {})
