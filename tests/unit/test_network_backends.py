"""The choice of a user-mode backend by pasta's build, what each publishes, and pasta's
command line. Pure: the installed pasta is only asked in the last test."""

from __future__ import annotations

import itertools
import shutil
from datetime import date
from pathlib import Path

import pytest

from sdpod.config.model import Container, LayoutImage, Network, NetworkMode, PortMapping, Protocol
from sdpod.errors import NetworkError
from sdpod.network import backends, pasta
from sdpod.network.backends import Pasta

OLD = Pasta(
    "/usr/bin/pasta", "pasta unknown version (Debian's passt 0.0~git20230309)", date(2023, 3, 9)
)
UNKNOWN = Pasta("/usr/bin/pasta", "pasta unknown version", None)
RECENT = Pasta("/usr/bin/pasta", "pasta 2023_12_04.b86afe3", date(2023, 12, 4))
ABSENT = Pasta(None)
UDP = Protocol.UDP


def web(mode: NetworkMode, *ports: PortMapping) -> Container:
    image = LayoutImage(Path("/images/web"), "latest")
    return Container("web", image, ports=ports, network=Network(mode))


@pytest.mark.parametrize(
    ("said", "built"),
    [
        ("pasta 2024_06_24.1ee2eca\n", date(2024, 6, 24)),
        ("pasta 0^20240821.g1d6142f-1.fc40.x86_64", date(2024, 8, 21)),
        ("0.0~git20230309.7c7625d-1", date(2023, 3, 9)),
        ("pasta unknown version", None),
        ("pasta 2023_13_45.x", None),
        ("pasta 120230309", None),
    ],
)
def test_build_dates_are_read_from_what_pasta_or_its_package_says(
    said: str, built: date | None
) -> None:
    assert backends.pasta_build(said) == built


def test_only_a_known_build_from_december_2023_on_is_recent() -> None:
    assert RECENT.recent
    assert not OLD.recent
    assert not UNKNOWN.recent
    assert not Pasta("/usr/bin/pasta", "pasta 2023_12_03.x", date(2023, 12, 3)).recent


@pytest.mark.parametrize(
    ("installed", "default"),
    [
        (RECENT, NetworkMode.PASTA),
        (OLD, NetworkMode.SLIRP4NETNS),
        (UNKNOWN, NetworkMode.SLIRP4NETNS),
        (ABSENT, NetworkMode.SLIRP4NETNS),
    ],
)
def test_private_means_pasta_only_where_it_is_recent(
    installed: Pasta, default: NetworkMode
) -> None:
    assert backends.choose(NetworkMode.PRIVATE, installed) == (default, None)


def test_an_explicit_backend_is_kept_and_an_old_pasta_named_in_a_warning() -> None:
    for installed in (RECENT, OLD, ABSENT):
        chosen = backends.choose(NetworkMode.SLIRP4NETNS, installed)
        assert chosen == (NetworkMode.SLIRP4NETNS, None)
    assert backends.choose(NetworkMode.PASTA, RECENT) == (NetworkMode.PASTA, None)

    mode, warning = backends.choose(NetworkMode.PASTA, OLD)
    assert mode is NetworkMode.PASTA
    assert warning is not None
    assert OLD.version in warning
    assert "2023-12-04" in warning
    assert "stalls" in warning and "30 MiB" in warning


def test_pasta_asked_for_but_missing_is_an_error() -> None:
    with pytest.raises(NetworkError, match="pasta is not installed"):
        backends.choose(NetworkMode.PASTA, ABSENT)


def test_resolving_records_the_backend_and_leaves_other_modes_alone() -> None:
    resolved, warnings = backends.resolve(web(NetworkMode.PRIVATE), OLD)
    assert resolved.network == Network(NetworkMode.SLIRP4NETNS)
    assert warnings == []
    resolved, _ = backends.resolve(web(NetworkMode.PRIVATE), RECENT)
    assert resolved.network == Network(NetworkMode.PASTA)
    resolved, warnings = backends.resolve(web(NetworkMode.PASTA), OLD)
    assert resolved.network == Network(NetworkMode.PASTA)
    assert len(warnings) == 1 and OLD.version in warnings[0]
    for mode in (NetworkMode.NONE, NetworkMode.HOST):
        assert backends.resolve(web(mode), RECENT) == (web(mode), [])


def test_ipv6_udp_is_refused_on_slirp4netns_by_name_while_tcp_goes_to_systemd() -> None:
    ipv6_udp = PortMapping("::1", 5353, 53, UDP)
    with pytest.raises(NetworkError, match=r"\[::1\]:5353/udp: slirp4netns publishes on IPv4"):
        backends.resolve(web(NetworkMode.PRIVATE, ipv6_udp), OLD)
    with pytest.raises(NetworkError, match="slirp4netns"):
        backends.resolve(web(NetworkMode.SLIRP4NETNS, ipv6_udp), RECENT)
    resolved, _ = backends.resolve(web(NetworkMode.PRIVATE, ipv6_udp), RECENT)
    assert resolved.ports == (ipv6_udp,)

    ipv6_tcp = PortMapping("::1", 8080, 80)
    resolved, _ = backends.resolve(web(NetworkMode.SLIRP4NETNS, ipv6_tcp), RECENT)
    assert resolved.socket_ports == (ipv6_tcp,) and resolved.helper_ports == ()


def test_an_old_pasta_refuses_udp_on_another_port_number() -> None:
    remapped = PortMapping("127.0.0.1", 5353, 53, UDP)
    with pytest.raises(NetworkError, match=r"127\.0\.0\.1:5353/udp: pasta older than"):
        backends.resolve(web(NetworkMode.PASTA, remapped), OLD)
    same = PortMapping("127.0.0.1", 53, 53, UDP)
    tcp = PortMapping("127.0.0.1", 5353, 53)
    assert backends.resolve(web(NetworkMode.PASTA, same, tcp), OLD)[0].ports == (same, tcp)
    assert backends.resolve(web(NetworkMode.PASTA, remapped), RECENT)[0].ports == (remapped,)


def test_slirp4netns_refuses_udp_on_loopback_and_warns_about_it_on_every_address() -> None:
    for address in ("127.0.0.1", "127.0.0.2"):
        loopback = PortMapping(address, 5353, 53, UDP)
        with pytest.raises(NetworkError, match=f"{address}:5353/udp: slirp4netns drops"):
            backends.resolve(web(NetworkMode.SLIRP4NETNS, loopback), RECENT)
    everywhere = PortMapping("0.0.0.0", 5353, 53, UDP)
    _, warnings = backends.resolve(web(NetworkMode.PRIVATE, everywhere), OLD)
    assert len(warnings) == 1 and "0.0.0.0:5353/udp" in warnings[0], warnings
    tcp = PortMapping("127.0.0.1", 5353, 53)
    assert backends.resolve(web(NetworkMode.SLIRP4NETNS, tcp), OLD)[1] == []
    # pasta answers loopback clients.
    same = PortMapping("127.0.0.1", 53, 53, UDP)
    assert backends.resolve(web(NetworkMode.PASTA, same), RECENT)[1] == []


def test_pasta_publishes_a_port_number_on_one_address_only() -> None:
    four, six = PortMapping("127.0.0.1", 8080, 80), PortMapping("::1", 8080, 80)
    with pytest.raises(NetworkError, match=r"\[::1\]:8080/tcp: pasta publishes a port number"):
        backends.resolve(web(NetworkMode.PASTA, four, six), RECENT)
    other = PortMapping("::1", 8081, 80)
    udp = PortMapping("::1", 8080, 8080, UDP)
    assert backends.resolve(web(NetworkMode.PASTA, four, other, udp), OLD)[0].ports == (
        four,
        other,
        udp,
    )


def test_pasta_port_specs_join_consecutive_ports_into_ranges() -> None:
    ports = [
        PortMapping("0.0.0.0", 9001, 91),
        PortMapping("0.0.0.0", 9000, 90),
        PortMapping("0.0.0.0", 9002, 92),
        PortMapping("0.0.0.0", 9004, 94),
        PortMapping("127.0.0.1", 8080, 80),
        PortMapping("::1", 8080, 80),
    ]
    assert pasta.port_specs(ports) == [
        "0.0.0.0/9000-9002:90-92",
        "0.0.0.0/9004:94",
        "127.0.0.1/8080:80",
        "::1/8080:80",
    ]
    assert pasta.port_specs([]) == ["none"]


def test_pasta_forwards_only_the_published_ports_in_one_direction() -> None:
    tcp = PortMapping("127.0.0.1", 8080, 80)
    udp = PortMapping("::1", 5353, 5353, UDP)
    argv = pasta.argv("/usr/bin/pasta", 42, [tcp], "/dev/fd/7")
    assert argv[0] == "/usr/bin/pasta" and argv[-1] == "42"
    pairs = list(itertools.pairwise(argv))
    assert ("--tcp-ports", "127.0.0.1/8080:80") in pairs
    assert ("--udp-ports", "none") in pairs
    assert {"--tcp-ns=none", "--udp-ns=none", "--foreground", "--config-net"} <= set(argv)
    assert "--pid=/dev/fd/7" in argv
    assert "--dns-forward=10.0.2.3" in argv

    argv = pasta.argv("/usr/bin/pasta", 42, [udp], "/dev/fd/7")
    pairs = list(itertools.pairwise(argv))
    assert ("--tcp-ports", "none") in pairs
    assert ("--udp-ports", "::1/5353:5353") in pairs


@pytest.mark.skipif(shutil.which("pasta") is None, reason="pasta is not installed")
def test_the_installed_pasta_is_found_with_a_version() -> None:
    found = backends.installed_pasta()
    assert found.path == shutil.which("pasta")
    assert found.version
