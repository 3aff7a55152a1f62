"""The settings beyond first light, as a running container sees them.

One container uses them all: environment files, a port range, a named volume given to
its user, a volume made on `up`, tmpfs, secrets, a device, labels, capabilities and
sysctls. Each test reads what the kernel shows inside (through `sdpod exec`) or what
the host holds, never what sdpod says it did.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost
from support.mkimage import Dir, File

from system.helpers import Project, chown_tree, fetch, free_port

pytestmark = pytest.mark.system

Completed = subprocess.CompletedProcess[str]

# Two web servers, on ports 80 and 81, as the unprivileged user www (33), which owns
# the shifted volume. The capabilities below are root's: www's process has none.
COMMAND = "httpd -p 80 -h /www && exec httpd -f -p 81 -h /www"

SETTINGS = """\
env_file = "web.env"
env = {{ FROM_TOML = "toml" }}
ports = ["127.0.0.1:{first}-{second}:80-81"]
volumes = [
    "./www:/www:ro",
    "{volume}:/data:shift",
    {{ source = "./made-on-up", target = "/cache", create = true }},
]
user = "www"
hostname = "settings.home.arpa"
working_dir = "/srv/made/here"
tmpfs = ["/scratch:size=1M,mode=0700"]
secrets = [
    "./db-password",
    {{ source = "./db-password", target = "api_key", mode = "0440", uid = 33, gid = 33 }},
]
devices = ["/dev/null:/dev/sink"]
labels = {{ "org.example.team" = "web" }}
cap_add = ["NET_ADMIN"]
cap_drop = ["CHOWN"]
sysctls = {{ "net.ipv4.ip_unprivileged_port_start" = 80 }}
"""


# What the image holds where the named volume goes: a new volume starts with it.
IMAGE_EXTRA = [
    Dir("data", mode=0o750, uid=33, gid=33),
    File("data/seed", b"from the image\n", uid=44, gid=44),
]


def ok(result: Completed) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def project(sandbox: SandboxHost, user_dir: Path) -> Iterator[Project]:
    name = f"settings-{secrets.token_hex(3)}"
    first, second = _two_free_ports()
    volume = f"vol-{name}"
    made = Project.create(sandbox, sandbox.user, user_dir, name, first, extra=IMAGE_EXTRA)
    head = (
        Path(made.toml)
        .read_text()
        .split("ports =")[0]
        .replace(
            'command = ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]',
            f"command = {json.dumps(['sh', '-c', COMMAND])}",
        )
    )
    text = head + SETTINGS.format(first=first, second=second, volume=volume)
    made.rewrite(text)
    (user_dir / "web.env").write_text("FROM_FILE=file\nFROM_TOML=file\n")
    (user_dir / "db-password").write_text("s3cret\n")
    chown_tree(user_dir, sandbox.user)

    ok(made.up())
    try:
        yield made
    finally:
        made.down()
        # Named volumes outlive their containers; this one's files belong to subordinate
        # ids, which only root (this test) or the user's namespace may remove.
        volumes = sandbox.home(sandbox.user) / ".local/share/sdpod/volumes"
        shutil.rmtree(volumes / volume, ignore_errors=True)


def _two_free_ports() -> tuple[int, int]:
    """Two consecutive ports on 127.0.0.1 that nothing listens on, for a range."""
    while True:
        first = free_port()
        if first < 65535 and _is_free(first + 1):
            return first, first + 1


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def inside(project: Project, script: str) -> str:
    return ok(project.sdpod("exec", project.name, "sh", "-c", script))


def owners(project: Project, path: str) -> str:
    """`UID:GID` of `path` as the container sees it, from `ls -ln` (busybox has no stat)."""
    fields = inside(project, f"ls -lnd {path}").split()
    return f"{fields[2]}:{fields[3]}"


def test_environment_files_and_the_toml_merge(project: Project) -> None:
    env = inside(project, "echo $FROM_FILE $FROM_TOML")
    assert env.split() == ["file", "toml"]


def test_a_port_range_publishes_each_port(project: Project) -> None:
    assert fetch(f"http://127.0.0.1:{project.port}/") == project.index_html
    assert fetch(f"http://127.0.0.1:{project.port + 1}/") == project.index_html


def test_a_named_volume_is_made_and_given_to_the_user(project: Project) -> None:
    assert owners(project, "/data") == "33:33"
    inside(project, "echo kept > /data/note")

    project.down()
    ok(project.up())
    assert inside(project, "cat /data/note") == "kept\n"


def test_a_new_named_volume_starts_with_the_image_files(project: Project) -> None:
    assert inside(project, "cat /data/seed") == "from the image\n"
    assert owners(project, "/data/seed") == "44:44"
    assert inside(project, "ls -lnd /data").startswith("drwxr-x---")

    # Once it holds files of its own, the image no longer fills it, as with docker (an
    # emptied volume is filled again).
    inside(project, "rm /data/seed; echo mine > /data/note")
    project.down()
    ok(project.up())
    assert "seed" not in inside(project, "ls /data")


def test_a_missing_source_marked_create_is_made(project: Project) -> None:
    made = Path(project.directory) / "made-on-up"
    assert made.is_dir()
    assert owners(project, "/cache") == "0:0"


def test_tmpfs_has_its_size_and_mode(project: Project) -> None:
    mounts = inside(project, "cat /proc/mounts")
    line = next(line for line in mounts.splitlines() if line.split()[1] == "/scratch")
    assert line.split()[2] == "tmpfs"
    assert "size=1024k" in line and "mode=700" in line


def test_secrets_are_read_only_files_with_their_mode_and_owner(project: Project) -> None:
    listing = inside(project, "ls -ln /run/secrets").splitlines()[1:]
    seen = sorted(" ".join([f[0], f[2], f[3], f[-1]]) for f in map(str.split, listing))
    assert seen == ["-r-------- 0 0 db-password", "-r--r----- 33 33 api_key"]
    assert inside(project, "cat /run/secrets/api_key") == "s3cret\n"
    mounts = inside(project, "cat /proc/mounts")
    line = next(line for line in mounts.splitlines() if line.split()[1] == "/run/secrets")
    assert line.split()[3].startswith("ro,")


def test_a_device_is_bound_into_dev(project: Project) -> None:
    listing = inside(project, "ls -l /dev/sink; echo dropped > /dev/sink && echo written")
    assert listing.startswith("c")
    assert listing.rstrip().endswith("written")


def test_labels_are_annotations_of_the_config(project: Project) -> None:
    config = json.loads((project.container_dir / "config.json").read_text())
    assert config["annotations"]["org.example.team"] == "web"


def test_capabilities_and_sysctls_reach_the_kernel(project: Project) -> None:
    status = inside(project, "cat /proc/1/status")
    line = next(line for line in status.splitlines() if line.startswith("CapBnd"))
    bounding = int(line.split()[1], 16)
    net_admin, chown = 1 << 12, 1 << 0
    assert bounding & net_admin
    assert not bounding & chown

    assert inside(project, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start") == "80\n"
    # Every container runs under the default seccomp filter (SECCOMP_MODE_FILTER).
    assert "Seccomp:\t2" in status


def test_a_volume_in_use_stays_and_an_unused_one_goes(project: Project) -> None:
    inside(project, "echo kept > /data/note")
    volume = f"vol-{project.name}"
    listed = json.loads(ok(project.sdpod("volume", "ls", "--json")))
    assert {"name": volume, "used_by": [project.name]}.items() <= next(
        row for row in listed if row["name"] == volume
    ).items()

    refused = project.sdpod("volume", "rm", volume)
    assert refused.returncode != 0
    assert f"container {project.name} uses it" in refused.stderr

    ok(project.down())
    # Its files belong to the container's user, a subordinate id: the user could not
    # delete them alone.
    ok(project.sdpod("volume", "rm", volume))
    names = [row["name"] for row in json.loads(ok(project.sdpod("volume", "ls", "--json")))]
    assert volume not in names
    assert not (project.sandbox.home(project.user) / ".local/share/sdpod/volumes" / volume).exists()


def test_a_user_other_than_root_reads_the_name_files(project: Project) -> None:
    # The container runs as www: /etc/hosts and resolv.conf must be world-readable.
    assert "settings.home.arpa" in inside(project, "cat /etc/hostname /etc/hosts")
    assert "nameserver" in inside(project, "cat /etc/resolv.conf")


def test_the_environment_names_the_host_and_a_missing_directory_is_made(
    project: Project,
) -> None:
    assert inside(project, "echo $HOSTNAME; pwd").split() == [
        "settings.home.arpa",
        "/srv/made/here",
    ]


def test_down_stops_the_project_slice_once_empty(project: Project) -> None:
    ok(project.down())
    units = ok(project.run(["systemctl", "--user", "list-units", "--plain", "--no-legend"]))
    assert "sdpod-web.slice" not in units
