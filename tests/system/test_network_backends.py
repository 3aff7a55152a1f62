"""The user-mode backends through `sdpod up`: pasta and slirp4netns, the default between
them by pasta's build, published TCP ports over IPv4 and IPv6 loopback, UDP echo.

Every test publishes free ports on the loopback addresses only. The expected default
follows the installed pasta (`backends.installed_pasta`, the same files the sandbox
sees): on Debian 12 it is too old, so slirp4netns is the default and pasta warns.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sandbox import SandboxHost
from support.mkimage import File
from support.udpecho import build_udp_echo

from sdpod.network.backends import installed_pasta
from system.helpers import (
    EXAMPLES,
    HTTPD,
    Project,
    build_image,
    fetch,
    free_port,
    refuses,
    wait_for,
)
from system.test_first_light import (
    assert_clean_failure,
    assert_nothing_left,
    down_cleanly,
    errors_of,
    ok,
    supervisor_pids,
    unique,
    wait_for_restart,
)

pytestmark = pytest.mark.system

# Debian's pasta execs its AVX2 build, which keeps that file's name.
PASTA_NAMES = {"pasta", "passt", "passt.avx2"}
HELPER_NAMES = {"pasta": PASTA_NAMES, "slirp4netns": {"slirp4netns"}}
UDP_TIMEOUT = 10.0

MakeProject = Callable[..., Project]


def web_toml(
    name: str,
    ports: Sequence[str],
    network: str | None = None,
    command: Sequence[str] = HTTPD,
) -> str:
    lines = [
        "[container]",
        f"name = {json.dumps(name)}",
        'image = "oci:image:latest"',
        f"command = {json.dumps(list(command))}",
        f"ports = {json.dumps(list(ports))}",
        'volumes = ["./www:/www:ro"]',
        'restart = "always"',
    ]
    if network is not None:
        lines.append(f"network = {json.dumps(network)}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_project(sandbox: SandboxHost, user_dir: Path) -> Iterator[MakeProject]:
    """Projects of the test user with a TOML of their own; each brought down at teardown."""
    made: list[Project] = []

    def make(stem: str, toml: Callable[[str, int], str], extra: Sequence[File] = ()) -> Project:
        name = unique(stem)
        directory = user_dir / name
        directory.mkdir()
        port = free_port()
        project = Project.create(sandbox, sandbox.user, directory, name, port, extra=extra)
        project.rewrite(toml(name, port))
        made.append(project)
        return project

    yield make
    for project in made:
        project.down()


def recorded_backend(project: Project) -> str:
    """The backend the container's config.json says its launcher starts."""
    spec = json.loads((project.container_dir / "config.json").read_text())
    backend: str = spec["annotations"]["io.sdpod.network"]
    return backend


def helper_names(project: Project) -> set[str]:
    """The command names in the unit's supervisor leaf."""
    state = project.show()
    leaf = project.cgroup_pids(state["ControlGroup"], "supervisor")
    return {project.comm(pid) for pid in leaf}


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING:")]


def refuses6(port: int) -> bool:
    """Whether a TCP connection to [::1]:`port` is refused."""
    with socket.socket(socket.AF_INET6) as client:
        client.settimeout(2)
        try:
            client.connect(("::1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def free_udp_port() -> int:
    """A UDP port free on both 127.0.0.1 and ::1 at the moment of asking."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as four:
            four.bind(("127.0.0.1", 0))
            port: int = four.getsockname()[1]
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as six:
                try:
                    six.bind(("::1", port))
                except OSError:
                    continue
                return port


def udp_echo(address: str, port: int, payload: bytes) -> bytes:
    """Send `payload` until a reply comes back; the reply, or fail after UDP_TIMEOUT."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.settimeout(0.2)

        def reply() -> bytes | None:
            client.sendto(payload, (address, port))
            try:
                data, _ = client.recvfrom(65536)
            except TimeoutError:
                return None
            return data

        return wait_for(reply, UDP_TIMEOUT, f"an echo from {address} port {port}/udp")


@pytest.fixture(scope="module")
def udp_echo_binary(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("udpecho") / "udpecho"
    reason = build_udp_echo(path)
    if reason is not None:
        # CI installs the compiler (scripts/install --test): a skip there would hide it.
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path.read_bytes()


# -- the default, and the version gate ------------------------------------------------


def test_the_default_follows_pastas_build_and_an_old_pasta_warns(
    make_project: MakeProject,
) -> None:
    pasta = installed_pasta()
    default = "pasta" if pasta.recent else "slirp4netns"
    project = make_project("backend", lambda name, port: web_toml(name, [f"127.0.0.1:{port}:80"]))

    up = project.up()
    assert up.returncode == 0, ok(up)
    assert warnings_of(up.stderr) == [], up.stderr
    assert recorded_backend(project) == default
    assert helper_names(project) & HELPER_NAMES[default], helper_names(project)
    assert fetch(project.url) == project.index_html

    # Asking for pasta changes the container's definition: `up` replaces it.
    project.rewrite(web_toml(project.name, [f"127.0.0.1:{project.port}:80"], "pasta"))
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert "replaced" in up.stdout, ok(up)
    if pasta.recent:
        assert warnings_of(up.stderr) == [], up.stderr
    else:
        (warning,) = warnings_of(up.stderr)
        assert project.name in warning and pasta.version in warning, warning
        assert "2023-12-04" in warning and "stalls" in warning, warning
    assert recorded_backend(project) == "pasta"
    assert helper_names(project) & PASTA_NAMES, helper_names(project)
    assert fetch(project.url) == project.index_html

    down_cleanly(project)


# -- pasta: a page over IPv4 and IPv6 ---------------------------------------------------


def free_ipv6_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_pasta_serves_a_page_over_ipv4_and_ipv6_loopback(make_project: MakeProject) -> None:
    # pasta publishes a port number on one address only: IPv6 gets a number of its own.
    six = free_ipv6_port()

    def toml(name: str, port: int) -> str:
        return web_toml(name, [f"127.0.0.1:{port}:80", f"[::1]:{six}:80"], "pasta")

    project = make_project("pasta6", toml)
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert f"[::1]:{six}->80/tcp" in up.stdout, up.stdout

    assert fetch(project.url) == project.index_html
    assert fetch(f"http://[::1]:{six}/") == project.index_html
    # Its name server is pasta's forwarder, as slirp4netns's is.
    resolv = ok(project.sdpod("exec", project.name, "cat", "/etc/resolv.conf"))
    assert "nameserver 10.0.2.3" in resolv.splitlines(), resolv
    assert any(comm in PASTA_NAMES for _, comm in project.processes())

    # No pasta, shell or anything else of the container's stays after `down`, and both
    # ports are free again.
    down_cleanly(project)
    assert refuses6(six), f"[::1]:{six} still accepts connections after down"


def test_a_killed_pasta_restarts_the_container(make_project: MakeProject) -> None:
    project = make_project(
        "pastakill", lambda name, port: web_toml(name, [f"127.0.0.1:{port}:80"], "pasta")
    )
    up = project.up()
    assert up.returncode == 0, ok(up)
    before = project.show()
    helpers = [pid for name in PASTA_NAMES for pid in supervisor_pids(project, before, name)]
    assert helpers, f"no pasta in the supervisor leaf: {helper_names(project)}"

    kill = project.run(["kill", "-9", str(helpers[0])])
    assert kill.returncode == 0, ok(kill)

    wait_for_restart(project, before)
    assert fetch(project.url) == project.index_html
    down_cleanly(project)


# -- UDP ----------------------------------------------------------------------------------


def test_udp_echo_through_a_port_pasta_publishes(
    make_project: MakeProject, udp_echo_binary: bytes
) -> None:
    # An older pasta drops the replies where the two numbers differ (refused, tested
    # below): there each published port is the container's own number. IPv6 gets a
    # number of its own, as pasta publishes a number on one address only.
    same_numbers = not installed_pasta().recent
    published = {"127.0.0.1": free_udp_port(), "::1": free_udp_port()}
    inside = {ip: port if same_numbers else 7 for ip, port in published.items()}
    ports = [
        f"{f'[{ip}]' if ':' in ip else ip}:{port}:{inside[ip]}/udp"
        for ip, port in published.items()
    ]
    listen = sorted(set(inside.values()))
    command = ["sh", "-c", 'for p; do udpecho "$p" & done; wait', "echo", *map(str, listen)]

    def toml(name: str, port: int) -> str:
        return web_toml(name, ports, "pasta", command=command)

    echo = File("bin/udpecho", udp_echo_binary, mode=0o755)
    project = make_project("udp", toml, extra=[echo])
    up = project.up()
    assert up.returncode == 0, ok(up)
    assert recorded_backend(project) == "pasta"

    for ip, port in published.items():
        payload = f"ping {ip} {port}".encode()
        assert udp_echo(ip, port, payload) == payload

    down_cleanly(project)


def test_old_pasta_refuses_udp_on_another_port_number(make_project: MakeProject) -> None:
    if installed_pasta().recent:
        pytest.skip("the installed pasta is recent: it publishes UDP on another number")
    udp = free_udp_port()
    project = make_project(
        "udpmap", lambda name, port: web_toml(name, [f"127.0.0.1:{udp}:53/udp"], "pasta")
    )
    units_before = project.sdpod_units()
    stderr = assert_clean_failure(project.up(), project, units_before)
    error = errors_of(stderr)
    assert f"127.0.0.1:{udp}/udp" in error and "pasta older than" in error, stderr


# -- what a backend cannot publish, and ports that are taken -------------------------------


@pytest.mark.parametrize(
    ("network", "port", "refusal"),
    [
        # slirp4netns 1.2 takes no IPv6 host address (systemd publishes TCP ones).
        ("slirp4netns", "[::1]:{port}:53/udp", "[::1]:{port}/udp: slirp4netns publishes on IPv4"),
        # It drops UDP replies to the host's loopback, with its host loopback closed.
        ("private", "127.0.0.1:{port}:53/udp", "127.0.0.1:{port}/udp: slirp4netns drops"),
    ],
)
def test_what_slirp4netns_cannot_publish_is_refused_naming_it(
    make_project: MakeProject, network: str, port: str, refusal: str
) -> None:
    if network == "private" and installed_pasta().recent:
        pytest.skip("the default here is pasta, which publishes UDP on loopback")
    project = make_project(
        "slirpno", lambda name, host_port: web_toml(name, [port.format(port=host_port)], network)
    )
    units_before = project.sdpod_units()
    stderr = assert_clean_failure(project.up(), project, units_before)
    assert refusal.format(port=project.port) in errors_of(stderr), stderr


@pytest.mark.parametrize(
    ("family", "address"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_a_taken_port_is_refused_by_name_with_pasta(
    make_project: MakeProject, family: socket.AddressFamily, address: str
) -> None:
    with socket.socket(family) as holder:
        holder.bind((address, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        shown = f"[{address}]" if ":" in address else address

        def toml(name: str, port: int) -> str:
            return web_toml(name, [f"{shown}:{taken}:80"], "pasta")

        project = make_project("pastataken", toml)
        units_before = project.sdpod_units()
        stderr = assert_clean_failure(project.up(), project, units_before)
        assert f"{shown}:{taken}/tcp" in errors_of(stderr), stderr
        assert_nothing_left(project, port_free=False)


def test_as_root_pasta_serves_a_page(sandbox: SandboxHost, user_dir: Path) -> None:
    # As root pasta would switch to nobody, who may not enter the container's namespaces:
    # sdpod keeps it root (--runas=0).
    name = unique("rootpasta")
    shutil.copytree(EXAMPLES / "www", user_dir / "www")
    build_image(user_dir / "image")
    port = free_port()
    toml = user_dir / "root.toml"
    toml.write_text(web_toml(name, [f"127.0.0.1:{port}:80"], "pasta"))
    try:
        up = sandbox.run_as_root(["sdpod", "up", str(toml)], check=False, timeout=90)
        assert up.returncode == 0, ok(up)
        assert fetch(f"http://127.0.0.1:{port}/") == (EXAMPLES / "www/index.html").read_text()
    finally:
        down = sandbox.run_as_root(["sdpod", "down", str(toml)], check=False, timeout=90)
    assert down.returncode == 0, ok(down)
    assert refuses(port), f"127.0.0.1:{port} still accepts connections after down"
