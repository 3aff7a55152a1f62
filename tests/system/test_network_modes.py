"""Network modes and name resolution through `sdpod up`, as the containers see them.

One file holds a server with its own network, a client sharing that network, a
container with loopback alone and one on the host's network. What each sees is read
through `sdpod exec`: its interfaces, its namespaces and its /etc files.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost

from system.helpers import Project, build_image, fetch, free_port, wait_for

pytestmark = pytest.mark.system

Completed = subprocess.CompletedProcess[str]
LOOPBACK_PORT = 8080
DEVICES = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '"


def ok(result: Completed) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def network_toml(stem: str, port: int) -> str:
    loopback_only = ["httpd", "-f", "-p", f"127.0.0.1:{LOOPBACK_PORT}", "-h", "/www"]
    sleep = json.dumps(["sleep", "600"])
    return f"""\
[containers.{stem}-server]
image = "oci:image:latest"
command = {json.dumps(loopback_only)}
volumes = ["./www:/www:ro"]
dns = ["192.0.2.53", "2001:db8::53"]
dns_search = ["home.arpa"]
dns_options = ["ndots:2"]
extra_hosts = {{ "nas.home.arpa" = "192.0.2.10" }}

[containers.{stem}-client]
image = "oci:image:latest"
command = {sleep}
network = "container:{stem}-server"

[containers.{stem}-alone]
image = "oci:image:latest"
command = {sleep}
network = "none"

[containers.{stem}-onhost]
image = "oci:image:latest"
command = {json.dumps(["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"])}
volumes = ["./www:/www:ro"]
network = "host"
"""


@pytest.fixture
def project(sandbox: SandboxHost, user_dir: Path) -> Iterator[Project]:
    stem = f"net-{secrets.token_hex(3)}"
    port = free_port()
    made = Project.create(sandbox, sandbox.user, user_dir, f"{stem}-server", port)
    made.rewrite(network_toml(stem, port))
    yield made
    made.down()


def stem_of(project: Project) -> str:
    return project.name.removesuffix("-server")


def exec_in(project: Project, container: str, script: str) -> str:
    return ok(project.sdpod("exec", container, "sh", "-c", script))


def output_if_ok(result: Completed) -> str | None:
    return result.stdout if result.returncode == 0 else None


def test_a_shared_network_reaches_the_servers_loopback(project: Project) -> None:
    stem = stem_of(project)
    server, client = f"{stem}-server", f"{stem}-client"
    ok(project.up())

    url = f"http://127.0.0.1:{LOOPBACK_PORT}/"
    page = wait_for(
        lambda: output_if_ok(project.sdpod("exec", client, "wget", "-qO-", url)),
        10,
        "the server's page through the client's loopback",
    )
    assert page == project.index_html

    # One network namespace, and one user namespace that owns it; the rest their own.
    for kind, same in (("net", True), ("user", True), ("mnt", False), ("uts", False)):
        ours, theirs = (
            exec_in(project, c, f"readlink /proc/self/ns/{kind}") for c in (client, server)
        )
        assert (ours == theirs) is same, (kind, ours, theirs)
    assert exec_in(project, client, "hostname").strip() == client

    # The links to the server's namespaces go with it.
    ok(project.down())
    assert project.runtime_files() == []


def test_a_joiner_follows_its_networks_owner_through_a_restart(project: Project) -> None:
    # The server restarts on its own in a new network namespace; the client, left in the
    # old one, would not reach it. systemd restarts it too: a restart job propagates to
    # the units that require the restarted one (systemd.unit(5), Requires=).
    stem = stem_of(project)
    server, client = f"{stem}-server", f"{stem}-client"
    ok(project.up())
    url = f"http://127.0.0.1:{LOOPBACK_PORT}/"

    def page() -> str | None:
        return output_if_ok(project.sdpod("exec", client, "wget", "-qO-", url))

    assert wait_for(page, 10, "the server's page through the client") == project.index_html
    before = project.show()
    ok(project.run(["kill", "-9", before["MainPID"]]))

    def restarted() -> dict[str, str] | None:
        state = project.show()
        running = (state["ActiveState"], state["SubState"]) == ("active", "running")
        return state if running and state["MainPID"] not in ("0", before["MainPID"]) else None

    wait_for(restarted, 20, f"{project.unit} to run again")
    assert wait_for(page, 20, "the new server's page through the client") == project.index_html
    netns = [exec_in(project, c, "readlink /proc/self/ns/net") for c in (server, client)]
    assert netns[0] == netns[1], netns


def test_dns_settings_and_extra_hosts_reach_the_etc_files(project: Project) -> None:
    stem = stem_of(project)
    server, client = f"{stem}-server", f"{stem}-client"
    ok(project.up())

    resolv = exec_in(project, server, "cat /etc/resolv.conf")
    assert resolv == (
        "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch home.arpa\noptions ndots:2\n"
    )
    hosts = exec_in(project, server, "cat /etc/hosts").splitlines()
    assert "192.0.2.10\tnas.home.arpa" in hosts
    assert f"10.0.2.100\t{server}" in hosts

    # The client shares the server's network, and so its name resolution.
    assert exec_in(project, client, "cat /etc/resolv.conf") == resolv
    assert f"10.0.2.100\t{server} {client}" in exec_in(project, client, "cat /etc/hosts")


def test_no_network_and_the_host_network(project: Project) -> None:
    stem = stem_of(project)
    alone, onhost = f"{stem}-alone", f"{stem}-onhost"
    ok(project.up())

    assert exec_in(project, alone, DEVICES).split() == ["lo"]
    assert int(exec_in(project, alone, "cat /sys/class/net/lo/flags"), 16) & 0x1  # IFF_UP
    assert "nameserver" not in exec_in(project, alone, "cat /etc/resolv.conf")

    # The host's interfaces and resolver; its server answers on the host's loopback.
    host_devices = ok(project.run(["sh", "-c", DEVICES]))
    assert sorted(exec_in(project, onhost, DEVICES).split()) == sorted(host_devices.split())
    host_resolv = Path("/etc/resolv.conf").read_text()
    assert exec_in(project, onhost, "cat /etc/resolv.conf").splitlines() == (
        host_resolv.splitlines()
    )
    assert f"127.0.0.1\t{onhost}" in exec_in(project, onhost, "cat /etc/hosts").splitlines()
    assert fetch(project.url) == project.index_html


def root_status_uid(sandbox: SandboxHost, unit: str) -> int:
    """The host uid of a system unit's main process."""
    show = sandbox.run_as_root(["systemctl", "show", "-p", "MainPID", "--value", unit])
    status = sandbox.run_as_root(["cat", f"/proc/{show.stdout.strip()}/status"]).stdout
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


def test_as_root_a_joiner_runs_with_the_ids_of_the_network_it_joins(
    sandbox: SandboxHost, user_dir: Path
) -> None:
    # As root each container has its own block of ids; one that joins another's user
    # namespace (to enter its network namespace) has that one's ids instead.
    stem = f"rootnet-{secrets.token_hex(3)}"
    build_image(user_dir / "image")
    (user_dir / "www").mkdir()
    (user_dir / "www/index.html").write_text("served on loopback\n")
    loopback_only = ["httpd", "-f", "-p", f"127.0.0.1:{LOOPBACK_PORT}", "-h", "/www"]
    toml = user_dir / "root.toml"
    toml.write_text(
        f'[containers.{stem}-server]\nimage = "oci:image:latest"\n'
        f'command = {json.dumps(loopback_only)}\nvolumes = ["./www:/www:ro"]\n\n'
        f'[containers.{stem}-client]\nimage = "oci:image:latest"\n'
        f'command = ["sleep", "600"]\nnetwork = "container:{stem}-server"\n'
    )
    server, client = f"{stem}-server", f"{stem}-client"
    try:
        ok(sandbox.run_as_root(["sdpod", "up", str(toml)], check=False, timeout=90))
        url = f"http://127.0.0.1:{LOOPBACK_PORT}/"
        page = wait_for(
            lambda: output_if_ok(
                sandbox.run_as_root(["sdpod", "exec", client, "wget", "-qO-", url], check=False)
            ),
            10,
            "the server's page through the client's loopback, as root",
        )
        assert page == "served on loopback\n"
        uids = [root_status_uid(sandbox, f"sdpod-{name}.service") for name in (server, client)]
        assert uids[0] == uids[1] >= 1 << 30, uids
    finally:
        down = sandbox.run_as_root(["sdpod", "down", str(toml)], check=False, timeout=90)
    ok(down)
    idranges = json.loads(Path("/var/lib/sdpod/idranges.json").read_text())
    assert not {server, client} & set(idranges), idranges
