"""Containers of one file reach each other by name: the pod's shared network, through `up`.

One file holds two web servers on the default network, which share one network
namespace held by `sdpod-STEM-pod.service`, and a third with a network apart. What each
sees is read through `sdpod exec`; the processes through `ps` as the test user.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost

from system.helpers import Project, fetch, free_port, refuses, wait_for

pytestmark = pytest.mark.system

Completed = subprocess.CompletedProcess[str]
SECOND_PORT = 8081
HELPERS = {"slirp4netns", "catatonit"}


def ok(result: Completed) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def pod_toml(stem: str, port: int) -> str:
    def httpd(listen: str) -> str:
        return json.dumps(["httpd", "-f", "-p", listen, "-h", "/www"])

    return f"""\
[project]
name = "{stem}"

[containers.{stem}-web]
image = "oci:image:latest"
command = {httpd("80")}
volumes = ["./www:/www:ro"]
ports = ["127.0.0.1:{port}:80"]

[containers.{stem}-db]
image = "oci:image:latest"
command = {httpd(str(SECOND_PORT))}
volumes = ["./www:/www:ro"]

[containers.{stem}-apart]
image = "oci:image:latest"
command = {json.dumps(["sleep", "600"])}
network = "slirp4netns"
"""


@pytest.fixture
def project(sandbox: SandboxHost, user_dir: Path) -> Iterator[Project]:
    stem = f"pod{secrets.token_hex(3)}"
    port = free_port()
    made = Project.create(sandbox, sandbox.user, user_dir, f"{stem}-web", port)
    made.rewrite(pod_toml(stem, port))
    yield made
    made.down()


def stem_of(project: Project) -> str:
    return project.name.removesuffix("-web")


def page_from(project: Project, container: str, host: str, port: int) -> str | None:
    """The page at http://HOST:PORT/ as `container` fetches it, None if it cannot.

    Through nc: the image's static busybox resolves names from /etc/hosts in nc and
    ping, but its wget crashes in glibc's resolver (a static glibc cannot load its NSS
    modules), whatever the name."""
    # nc stops reading once its input ends: the input stays open until the page is in.
    request = '(printf \'GET / HTTP/1.0\\r\\n\\r\\n\'; sleep 1) | nc -w 2 "$0" "$1"'
    result = project.sdpod("exec", container, "sh", "-c", request, host, str(port))
    # Read as text, the reply's CRLF line ends are plain newlines.
    head, _, body = result.stdout.partition("\n\n")
    return body if result.returncode == 0 and head.startswith("HTTP/1.") else None


def helpers_of(project: Project) -> list[str]:
    return sorted(comm for _, comm in project.processes() if comm in HELPERS)


def test_containers_of_a_file_reach_each_other_by_name(project: Project) -> None:
    stem = stem_of(project)
    web, db, apart = f"{stem}-web", f"{stem}-db", f"{stem}-apart"
    out = ok(project.up())
    assert f"{stem}-pod: running as sdpod-{stem}-pod.service, the network of {web}, {db}" in out

    # Each by the other's name, on the ports they listen on; the published port as well.
    from_web = wait_for(lambda: page_from(project, web, db, SECOND_PORT), 10, "db from web")
    assert from_web == project.index_html
    assert page_from(project, db, web, 80) == project.index_html
    assert fetch(project.url) == project.index_html

    # The one with a network apart knows neither name, and reaches neither.
    assert page_from(project, apart, db, SECOND_PORT) is None
    hosts = ok(project.sdpod("exec", apart, "cat", "/etc/hosts"))
    assert db not in hosts and web not in hosts

    # One helper for the pod, with the pause process that holds it; one for the other.
    assert helpers_of(project) == ["catatonit", "slirp4netns", "slirp4netns"]
    ns = {
        c: ok(project.sdpod("exec", c, "sh", "-c", "readlink /proc/self/ns/net")) for c in (web, db)
    }
    assert ns[web] == ns[db]

    # `ps` lists the holder, with the ports it publishes for its members.
    holder_row = next(
        line for line in ok(project.sdpod("ps")).splitlines() if f"{stem}-pod" in line
    )
    assert "running" in holder_row and f"{project.port}:80/tcp" in holder_row, holder_row


def test_a_member_restarts_into_the_shared_network(project: Project) -> None:
    stem = stem_of(project)
    web, db = f"{stem}-web", f"{stem}-db"
    ok(project.up())
    wait_for(lambda: page_from(project, web, db, SECOND_PORT), 10, "db from web")

    # A restarted member joins the network it left; the others keep theirs.
    ok(project.run(["systemctl", "--user", "restart", f"sdpod-{db}.service"]))
    again = wait_for(lambda: page_from(project, web, db, SECOND_PORT), 10, "db after restart")
    assert again == project.index_html
    assert fetch(project.url) == project.index_html


def test_down_leaves_no_holder_and_no_helper(project: Project) -> None:
    stem = stem_of(project)
    ok(project.up())
    assert fetch(project.url) == project.index_html

    out = ok(project.down())
    assert f"{stem}-pod: stopped and removed" in out, out
    assert helpers_of(project) == []
    assert refuses(project.port)
    units = project.sdpod_units()
    assert not [unit for unit in units if unit.startswith(f"sdpod-{stem}")], units
    runtime = project.sandbox.home(project.user) / ".local/share/sdpod/containers"
    assert not (runtime / f"{stem}-pod").exists()


def test_a_stopped_holder_takes_its_members_down_and_up_brings_all_back(
    project: Project,
) -> None:
    stem = stem_of(project)
    web, db = f"{stem}-web", f"{stem}-db"
    ok(project.up())
    ok(project.run(["systemctl", "--user", "stop", f"sdpod-{stem}-pod.service"]))

    def state(container: str) -> str:
        argv = ["systemctl", "--user", "is-active", f"sdpod-{container}.service"]
        return project.run(argv).stdout.strip()

    assert (state(web), state(db)) == ("inactive", "inactive")
    assert refuses(project.port)

    out = ok(project.up())
    assert f"{web}: running" in out and f"{db}: running" in out, out
    assert wait_for(lambda: page_from(project, web, db, SECOND_PORT), 10, "db")
    assert fetch(project.url) == project.index_html


def test_an_edited_member_is_replaced_alone_but_a_new_port_replaces_the_pod(
    project: Project,
) -> None:
    stem = stem_of(project)
    web, db = f"{stem}-web", f"{stem}-db"
    ok(project.up())
    wait_for(lambda: page_from(project, web, db, SECOND_PORT), 10, "db from web")
    pids = {c: main_pid(project, c) for c in (web, db, f"{stem}-pod")}

    # A new command for db: db alone is replaced, into the network the others keep.
    project.rewrite(pod_toml(stem, project.port).replace('"-h", "/www"]', '"-h", "/www", "-v"]', 1))
    out = ok(project.up())
    assert f"{stem}-pod: already running" in out and f"{web}: replaced" in out, out
    assert (
        main_pid(project, db) == pids[db]
        and main_pid(project, f"{stem}-pod") == pids[f"{stem}-pod"]
    )
    assert wait_for(lambda: page_from(project, db, web, 80), 10, "web after its edit")

    # A new published port is the holder's: it is replaced, and every member with it.
    new_port = free_port()
    project.rewrite(pod_toml(stem, new_port))
    out = ok(project.up())
    assert f"{stem}-pod: replaced, running" in out, out
    assert main_pid(project, db) != pids[db]
    project.port = new_port
    assert wait_for(lambda: page_from(project, web, db, SECOND_PORT), 10, "db after the new port")
    assert fetch(project.url) == project.index_html


def main_pid(project: Project, container: str) -> str:
    argv = ["systemctl", "--user", "show", "-p", "MainPID", "--value", f"sdpod-{container}.service"]
    return project.run(argv).stdout.strip()


def test_a_killed_holder_comes_back_with_its_members(project: Project) -> None:
    stem = stem_of(project)
    web, db = f"{stem}-web", f"{stem}-db"
    ok(project.up())
    before = main_pid(project, db)

    holder = main_pid(project, f"{stem}-pod")
    ok(project.run(["kill", "-KILL", holder]))

    # The holder restarts, and its members, which require it, follow it into its network.
    wait_for(lambda: main_pid(project, db) not in ("0", before) or None, 20, "db restarted")
    assert wait_for(lambda: page_from(project, web, db, SECOND_PORT), 20, "db after the kill")
    assert wait_for(lambda: fetch_or_none(project.url), 20, "the published port")


def test_a_single_container_moves_into_the_pod_a_second_one_makes(project: Project) -> None:
    stem = stem_of(project)
    web, db = f"{stem}-web", f"{stem}-db"
    whole = pod_toml(stem, project.port)
    alone = whole[: whole.index(f"[containers.{db}]")]
    project.rewrite(alone)
    ok(project.up())
    assert fetch(project.url) == project.index_html

    # web's own network holds the port until the holder takes it over.
    project.rewrite(whole)
    out = ok(project.up())
    assert f"{web}: replaced, running" in out, out
    assert wait_for(lambda: page_from(project, web, db, SECOND_PORT), 10, "db from web")
    assert fetch(project.url) == project.index_html


def fetch_or_none(url: str) -> str | None:
    try:
        return fetch(url, timeout=2)
    except OSError:
        return None
