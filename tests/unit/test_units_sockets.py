"""Published TCP ports as socket units and proxy services: which ports, which units, and
the unit files they give. Pure; tests/system/test_socket_ports.py runs them."""

from __future__ import annotations

from pathlib import Path

from sdpod.config.model import (
    SOCKET_PORTS_MAX,
    Container,
    LayoutImage,
    Network,
    NetworkMode,
    PortMapping,
    Protocol,
)
from sdpod.units import sockets, unitfile

WEB = Container(name="web", image=LayoutImage(Path("/images/web"), "latest"))
TCP_V4 = PortMapping("127.0.0.1", 8080, 80)
TCP_V6 = PortMapping("::1", 8080, 80)
TLS = PortMapping("0.0.0.0", 8443, 443)
UDP = PortMapping("127.0.0.1", 5353, 53, Protocol.UDP)


def on(mode: NetworkMode, *ports: PortMapping) -> Container:
    return Container(name=WEB.name, image=WEB.image, network=Network(mode), ports=ports)


def fake_argv(number: int) -> list[str]:
    return ["/usr/bin/nsenter", "--", "/proxy", f"127.0.0.1:{number}"]


def test_systemd_takes_tcp_on_slirp4netns_and_on_loopback_alone() -> None:
    for mode in (NetworkMode.SLIRP4NETNS, NetworkMode.NONE):
        container = on(mode, TCP_V4, UDP, TLS)
        assert container.socket_ports == (TCP_V4, TLS)
        assert container.helper_ports == (UDP,)


def test_pasta_and_the_unresolved_default_keep_their_ports() -> None:
    for mode in (NetworkMode.PASTA, NetworkMode.PRIVATE):
        container = on(mode, TCP_V4, UDP)
        assert container.socket_ports == ()
        assert container.helper_ports == (TCP_V4, UDP)


def test_a_range_longer_than_the_limit_stays_with_the_helper() -> None:
    wide = tuple(PortMapping("127.0.0.1", 9000 + n, 9000 + n) for n in range(SOCKET_PORTS_MAX + 1))
    container = on(NetworkMode.SLIRP4NETNS, *wide)
    assert container.socket_ports == ()
    assert container.helper_ports == wide
    assert on(NetworkMode.SLIRP4NETNS, *wide[:-1]).socket_ports == wide[:-1]


def test_one_socket_and_proxy_per_container_port_listening_on_each_address() -> None:
    units = sockets.socket_units(
        "web", "sdpod-web.service", (TCP_V4, TCP_V6, TLS), fake_argv, "sdpod-shop.slice"
    )
    names = [(name, kind) for name, kind, _ in units]
    assert names == [
        ("sdpod-web:80.service", "service"),
        ("sdpod-web:80.socket", "socket"),
        ("sdpod-web:443.service", "service"),
        ("sdpod-web:443.socket", "socket"),
    ]
    socket = dict(units[1][2])
    assert socket["Listen"] == ("a(ss)", [("Stream", "127.0.0.1:8080"), ("Stream", "[::1]:8080")])
    assert socket["PartOf"] == ("as", ["sdpod-web.service"])
    proxy = dict(units[2][2])
    assert proxy["ExecStart"][1][0][1] == fake_argv(443)
    assert proxy["Requires"] == proxy["After"] == ("as", ["sdpod-web.service"])
    assert proxy["Slice"] == ("s", "sdpod-shop.slice")


def test_the_container_requires_its_sockets_and_nothing_without_ports() -> None:
    assert sockets.owner_properties("web", (TCP_V4, TCP_V6, TLS)) == [
        ("Requires", ("as", ["sdpod-web:80.socket", "sdpod-web:443.socket"]))
    ]
    assert sockets.owner_properties("web", ()) == []


def test_the_socket_names_of_one_container_match_no_other() -> None:
    glob = sockets.units_glob("web")
    assert Path(sockets.socket_name("web", 80)).match(glob)
    assert not Path(sockets.socket_name("web-port", 80)).match(glob)
    assert not Path("sdpod-web.service").match(glob)


def test_the_proxy_enters_the_user_namespace_then_the_network() -> None:
    argv = sockets.proxy_argv("/usr/bin/nsenter", "/proxyd", "/run/web.userns", "/run/web.netns")
    assert argv(80) == [
        "/usr/bin/nsenter",
        "--user=/run/web.userns",
        "--net=/run/web.netns",
        "--preserve-credentials",
        "--",
        "/proxyd",
        f"--exit-idle-time={sockets.IDLE_EXIT_SECONDS}s",
        f"--connections-max={sockets.PROXY_CONNECTIONS}",
        "127.0.0.1:80",
    ]


def test_a_socket_unit_file_lists_its_addresses_and_installs_nowhere() -> None:
    units = sockets.socket_units("web", "sdpod-web.service", (TCP_V4, TCP_V6), fake_argv, "s.slice")
    text = unitfile.render("socket", units[1][2])
    assert "[Socket]\nListenStream=127.0.0.1:8080\nListenStream=[::1]:8080\n" in text
    assert "BindIPv6Only=ipv6-only\n" in text
    assert "[Unit]\n" in text and "PartOf=sdpod-web.service\n" in text
    # The container's unit pulls it in (Requires=): it is not enabled of its own.
    assert "[Install]" not in text
