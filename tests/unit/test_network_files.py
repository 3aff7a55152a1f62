"""/etc/hosts, /etc/hostname and /etc/resolv.conf of a container, for each network mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpod.config.model import Container, LayoutImage, Network, NetworkMode
from sdpod.network import files

HOST = files.HostFiles(
    hosts="127.0.0.1\tlocalhost\n192.168.1.5\tbox.home.arpa box\n",
    resolv_conf="# made by the host\ndomain home.arpa\nnameserver 192.168.1.1\noptions edns0\n",
)


def make(name: str = "web", **changes: object) -> Container:
    image = LayoutImage(Path("/images/web"), "latest")
    return Container(name=name, image=image, **changes)  # type: ignore[arg-type]


def test_private_network_names_the_slirp_address_and_forwarder() -> None:
    web = make()
    etc = files.etc_files(web, web, None)
    assert etc["hosts"] == (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.2.100\tweb\n"
    )
    assert etc["resolv.conf"] == "nameserver 10.0.2.3\n"
    assert etc["hostname"] == "web\n"


def test_dns_settings_replace_the_forwarder_and_add_search_and_options() -> None:
    web = make(
        dns=("192.168.1.1", "2001:db8::53"),
        dns_search=("home.arpa", "lan"),
        dns_options=("ndots:2", "edns0"),
    )
    assert files.etc_files(web, web, None)["resolv.conf"] == (
        "nameserver 192.168.1.1\n"
        "nameserver 2001:db8::53\n"
        "search home.arpa lan\n"
        "options ndots:2 edns0\n"
    )


def test_search_and_options_alone_keep_the_forwarder() -> None:
    web = make(dns_search=("home.arpa",))
    assert files.etc_files(web, web, None)["resolv.conf"] == (
        "nameserver 10.0.2.3\nsearch home.arpa\n"
    )


def test_extra_hosts_follow_the_containers_own_line() -> None:
    web = make(extra_hosts=(("nas.home.arpa", "192.168.1.10"), ("v6", "2001:db8::1")))
    hosts = files.etc_files(web, web, None)["hosts"].splitlines()
    assert hosts[-3:] == ["10.0.2.100\tweb", "192.168.1.10\tnas.home.arpa", "2001:db8::1\tv6"]


def test_a_host_name_is_listed_before_the_container_name() -> None:
    web = make(hostname="www.home.arpa")
    etc = files.etc_files(web, web, None)
    assert "10.0.2.100\twww.home.arpa web\n" in etc["hosts"]
    assert etc["hostname"] == "www.home.arpa\n"


def test_no_network_has_loopback_and_no_name_server() -> None:
    box = make("box", network=Network(NetworkMode.NONE))
    etc = files.etc_files(box, box, None)
    assert "10.0.2.100" not in etc["hosts"]
    assert etc["hosts"].endswith("127.0.0.1\tbox\n")
    assert etc["resolv.conf"] == ""


def test_no_network_still_takes_what_the_toml_asks() -> None:
    box = make("box", network=Network(NetworkMode.NONE), dns=("127.0.0.1",), dns_search=("x",))
    assert files.etc_files(box, box, None)["resolv.conf"] == "nameserver 127.0.0.1\nsearch x\n"


def test_host_network_copies_the_hosts_files_and_adds_the_name() -> None:
    web = make(network=Network(NetworkMode.HOST), extra_hosts=(("nas", "192.168.1.10"),))
    etc = files.etc_files(web, web, HOST)
    assert etc["hosts"] == HOST.hosts + "127.0.0.1\tweb\n192.168.1.10\tnas\n"
    assert etc["resolv.conf"] == HOST.resolv_conf


def test_host_network_dns_settings_replace_only_their_own_lines() -> None:
    web = make(network=Network(NetworkMode.HOST), dns=("9.9.9.9",), dns_search=("lan",))
    assert files.etc_files(web, web, HOST)["resolv.conf"] == (
        "# made by the host\noptions edns0\nnameserver 9.9.9.9\nsearch lan\n"
    )


def test_host_network_needs_the_hosts_files() -> None:
    web = make(network=Network(NetworkMode.HOST))
    with pytest.raises(ValueError):
        files.etc_files(web, web, None)


def test_a_host_file_without_final_newline_is_not_glued_to_the_next_line() -> None:
    assert files.render_hosts(["web"], "127.0.0.1", base="127.0.0.1 localhost") == (
        "127.0.0.1 localhost\n127.0.0.1\tweb\n"
    )
    assert files.render_resolv_conf((), base="nameserver 10.0.0.1") == "nameserver 10.0.0.1\n"


@pytest.mark.parametrize("mode", [NetworkMode.PRIVATE, NetworkMode.NONE, NetworkMode.HOST])
def test_a_container_sharing_a_network_gets_its_owners_files_and_its_own_name(
    mode: NetworkMode,
) -> None:
    owner = make("db", network=Network(mode), dns=("192.168.1.1",), dns_search=("lan",))
    joiner = make("app", network=Network(NetworkMode.CONTAINER, "db"), hostname="app.lan")
    theirs = files.etc_files(owner, owner, HOST)
    ours = files.etc_files(joiner, owner, HOST)
    assert ours["resolv.conf"] == theirs["resolv.conf"]
    own_line = theirs["hosts"].splitlines()[-1]
    assert ours["hosts"] == theirs["hosts"].replace(own_line, f"{own_line} app.lan app")
    assert ours["hostname"] == "app.lan\n"


def test_a_pod_member_lists_its_neighbours_on_its_own_address_after_its_names() -> None:
    web = make("web", hostname="www", extra_hosts=(("nas", "192.0.2.10"),))
    etc = files.etc_files(web, web, None, neighbours=["web", "db", "cache"])
    assert etc["hosts"].splitlines()[-2:] == ["10.0.2.100\twww web db cache", "192.0.2.10\tnas"]


def test_the_host_has_its_names_on_its_address_unless_the_toml_gives_them() -> None:
    web = make(extra_hosts=(("host.docker.internal", "192.0.2.99"),))
    hosts = files.etc_files(web, web, None, host_address="192.0.2.2")["hosts"]
    assert hosts.splitlines()[-2:] == [
        "192.0.2.2\thost.containers.internal",
        "192.0.2.99\thost.docker.internal",
    ]
    # Without a default route there is no address to give.
    assert "host.containers" not in files.etc_files(web, web, None)["hosts"]
    # On loopback alone the host cannot be reached at all.
    alone = make(network=Network(NetworkMode.NONE))
    assert (
        "host.containers"
        not in files.etc_files(alone, alone, None, host_address="1.2.3.4")["hosts"]
    )
