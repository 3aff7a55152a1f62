"""Published TCP ports through systemd's socket activation, through `up` as the test user.

On slirp4netns (the default backend here) and on `network = "none"`, the user's manager
listens on each published TCP port, and the first connection starts
systemd-socket-proxyd in the container's namespaces (`sdpod.units.sockets`). Before it,
no process of ours runs for the port.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost

from system.helpers import HTTPD, Project, fetch, free_port, refuses, wait_for

pytestmark = pytest.mark.system

# The proxy's command name, as /proc/PID/comm cuts it to 15 characters.
PROXY_COMM = "systemd-socket-"


def ok(project: Project, *args: str) -> str:
    result = project.sdpod(*args)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def toml(name: str, port: int, network: str) -> str:
    return (
        "[container]\n"
        f"name = {json.dumps(name)}\n"
        'image = "oci:image:latest"\n'
        f"command = {json.dumps(list(HTTPD))}\n"
        f'ports = ["127.0.0.1:{port}:80", "[::1]:{port}:80"]\n'
        'volumes = ["./www:/www:ro"]\n'
        f"network = {json.dumps(network)}\n"
    )


@pytest.fixture(params=["private", "none"])
def project(
    sandbox: SandboxHost, user_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Project]:
    network: str = request.param
    name = f"sock-{network}"
    made = Project.create(sandbox, sandbox.user, user_dir, name, free_port())
    made.rewrite(toml(name, made.port, network))
    yield made
    made.down()


def running(project: Project, comm: str) -> list[int]:
    return [pid for pid, name in project.processes() if name == comm]


def active(project: Project, unit: str) -> str:
    return project.run(["systemctl", "--user", "is-active", unit]).stdout.strip()


def fetch_v6(port: int) -> str:
    """GET / from [::1]:`port`, by hand: urllib's retries would hide the first reply."""
    with socket.create_connection(("::1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1."), head
    return body


def test_no_proxy_runs_until_the_first_connection(project: Project) -> None:
    out = ok(project, "up", project.toml)
    assert f"publishing 127.0.0.1:{project.port}->80/tcp, [::1]:{project.port}->80/tcp" in out
    socket_unit = f"sdpod-{project.name}:80.socket"
    assert active(project, socket_unit) == "active"
    assert running(project, PROXY_COMM) == []

    assert fetch(project.url) == project.index_html
    assert fetch_v6(project.port) == project.index_html
    assert len(running(project, PROXY_COMM)) == 1
    assert active(project, f"sdpod-{project.name}:80.service") == "active"

    # `ps` lists the ports that systemd publishes as the container's.
    row = next(line for line in ok(project, "ps").splitlines() if project.name in line)
    assert f"127.0.0.1:{project.port}:80/tcp, [::1]:{project.port}:80/tcp" in row, row


def test_loopback_alone_has_no_helper_at_all(project: Project) -> None:
    ok(project, "up", project.toml)
    assert fetch(project.url) == project.index_html

    # The default network keeps slirp4netns for the way out; loopback alone needs none.
    helpers = running(project, "slirp4netns") + running(project, "pasta")
    assert len(helpers) == (0 if project.name.endswith("none") else 1), helpers


def test_the_proxy_follows_the_container_through_a_restart(project: Project) -> None:
    ok(project, "up", project.toml)
    assert fetch(project.url) == project.index_html
    before = running(project, PROXY_COMM)

    # The proxy in the old network goes with the container; the next connection starts
    # one in the new network.
    restart = ["systemctl", "--user", "restart", project.unit]
    assert project.run(restart).returncode == 0
    assert fetch(project.url) == project.index_html
    after = wait_for(lambda: running(project, PROXY_COMM) or None, 10, "a new proxy")
    assert set(after).isdisjoint(before)


def test_down_leaves_no_socket_and_no_proxy(project: Project) -> None:
    ok(project, "up", project.toml)
    assert fetch(project.url) == project.index_html

    ok(project, "down", project.toml)
    assert refuses(project.port)
    assert running(project, PROXY_COMM) == []
    units = project.sdpod_units()
    assert not [unit for unit in units if unit.startswith(f"sdpod-{project.name}")], units


def test_a_crash_loop_leaves_nothing_that_blocks_the_next_up(project: Project) -> None:
    crashing = toml(project.name, project.port, "private").replace(
        json.dumps(list(HTTPD)), json.dumps(["sh", "-c", "sleep 0.2; exit 3"])
    )
    project.rewrite(crashing + 'restart = "always"\nrestart_delay = "100ms"\n')
    ok(project, "up", project.toml)

    # The container hits its start limit; its sockets, restarted with it, must not.
    def given_up() -> str | None:
        state = active(project, project.unit)
        return state if state == "failed" else None

    wait_for(given_up, 30, "the crash loop to end in failure")
    # Its sockets, which outlive a failure, do not keep the same file from starting.
    again = ok(project, "up", project.toml)
    assert "running" in again, again

    project.rewrite(toml(project.name, project.port, "private"))
    out = ok(project, "up", project.toml)
    assert "running" in out, out
    assert fetch(project.url) == project.index_html


def test_a_proxy_killed_again_and_again_comes_back(project: Project) -> None:
    ok(project, "up", project.toml)
    proxy = f"sdpod-{project.name}:80.service"
    kill = ["systemctl", "--user", "kill", "--signal=KILL", proxy]
    # More often than systemd's default start-rate limit (5 in 10 s) allows.
    for _ in range(7):
        assert fetch(project.url) == project.index_html
        assert project.run(kill).returncode == 0
        wait_for(lambda: active(project, proxy) != "active" or None, 10, "the proxy's end")
    assert fetch(project.url) == project.index_html


def test_the_proxy_carries_hundreds_of_connections_at_once(project: Project) -> None:
    ok(project, "up", project.toml)
    assert fetch(project.url) == project.index_html

    # Far more than the 1024 descriptors a unit gets by default would allow.
    held = [socket.create_connection(("127.0.0.1", project.port), timeout=10) for _ in range(400)]
    try:
        assert fetch(project.url) == project.index_html
    finally:
        for conn in held:
            conn.close()


def test_a_port_nothing_listens_on_is_explained_in_the_proxy_s_journal(project: Project) -> None:
    silent = toml(project.name, project.port, "private").replace(
        json.dumps(list(HTTPD)), json.dumps(["sleep", "600"])
    )
    project.rewrite(silent)
    ok(project, "up", project.toml)

    with socket.create_connection(("127.0.0.1", project.port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        # Closed or reset: nothing in the container to hand it to.
        with contextlib.suppress(ConnectionResetError):
            assert conn.recv(1) == b""

    # Where the README sends the user: the proxy's unit, its lines tagged NAME-proxy.
    proxy = f"sdpod-{project.name}:80.service"
    argv = ["journalctl", "--user", "-u", proxy, "-o", "cat", "--no-pager"]

    def explained() -> str | None:
        journal = project.run(argv).stdout
        return journal if "Connection refused" in journal else None

    wait_for(explained, 10, f"the proxy's complaint in the journal of {proxy}")


def half_closed_get(port: int) -> bytes:
    """GET / as HTTP/1.0 clients such as `nc -N` send it: the request, then the end of
    the client's side of the connection (shutdown(2) SHUT_WR), then the reply read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                reply += chunk
    return reply


def test_the_helper_forwards_for_clients_that_half_close(project: Project) -> None:
    # On IPv4 alone: slirp4netns publishes no IPv6 address.
    v4_only = Path(project.toml).read_text().replace(f', "[::1]:{project.port}:80"', "")
    project.rewrite(v4_only + 'port_proxy = "helper"\n')
    if project.name.endswith("none"):
        refused = project.sdpod("up", project.toml)
        assert refused.returncode == 1 and "port_proxy" in refused.stderr, refused.stderr
        return

    ok(project, "up", project.toml)
    assert fetch(project.url) == project.index_html
    # slirp4netns forwards the port itself: no socket unit, no proxy.
    assert not [unit for unit in project.sdpod_units() if unit.startswith(f"sdpod-{project.name}:")]
    reply = wait_for(lambda: half_closed_get(project.port) or None, 10, "a reply")
    assert reply.startswith(b"HTTP/1.") and project.index_html.encode() in reply
