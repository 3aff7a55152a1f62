"""The OCI configuration built from the model: pure, no privileges."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from sdpod.config.model import (
    BindVolume,
    Container,
    Device,
    LayoutImage,
    NamedVolume,
    Network,
    NetworkMode,
    PortMapping,
    Protocol,
    RestartPolicy,
    Secret,
    Tmpfs,
)
from sdpod.errors import RuntimeSetupError
from sdpod.kernel.overlay import MAX_LOWER_LAYERS
from sdpod.kernel.userns import IdMapping, IdRange
from sdpod.runtime import pod
from sdpod.runtime import spec as oci
from sdpod.runtime.creation import mapping_of
from sdpod.runtime.launch import ports_of, published_of


@dataclass(frozen=True)
class Image:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("httpd", "-f")
    env: tuple[tuple[str, str], ...] = (("PATH", "/bin"), ("LANG", "C"))
    working_dir: str = "/srv"
    user: str = ""


MAPPING = IdMapping(
    uids=(IdRange(0, 1000, 1), IdRange(1, 100000, 65536)),
    gids=(IdRange(0, 1000, 1), IdRange(1, 100000, 65536)),
)


def make_container(**changes: object) -> Container:
    fields: dict[str, object] = {
        "name": "web",
        "image": LayoutImage(Path("/images/web"), "latest"),
        "ports": (PortMapping("127.0.0.1", 8080, 80),),
        "volumes": (BindVolume(Path("/srv/www"), PurePosixPath("/www"), read_only=True),),
        "restart": RestartPolicy.ALWAYS,
    }
    fields.update(changes)
    return Container(**fields)  # type: ignore[arg-type]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "lower/etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\nwww:x:33:33::/www:/bin/false\n")
    (etc / "group").write_text("root:x:0:\nwww:x:33:\nmedia:x:44:www,root\n")
    return tmp_path / "lower"


def build(rootfs: Path, container: Container, image: Image = Image()) -> dict[str, object]:
    layout = oci.BundleLayout.under(rootfs.parent / "bundle", (rootfs,), Path("/volumes"))
    return oci.build_spec(container, image, layout, MAPPING, Path("/usr/bin/tini-static"))


def test_command_runs_behind_the_init(rootfs: Path) -> None:
    spec = build(rootfs, make_container(command=("sh", "-c", "echo hi")))
    assert spec["process"]["args"] == ["/dev/init", "--", "sh", "-c", "echo hi"]  # type: ignore[index]
    init_mounts = [m for m in spec["mounts"] if m["destination"] == "/dev/init"]  # type: ignore[attr-defined]
    assert init_mounts[0]["source"] == "/usr/bin/tini-static"


def test_image_command_follows_its_entrypoint(rootfs: Path) -> None:
    image = Image(entrypoint=("/entry",), cmd=("serve",))
    assert oci.process_args(make_container(), image) == ["/entry", "serve"]
    assert oci.process_args(make_container(command=("x",)), image) == ["/entry", "x"]


def test_no_command_at_all_is_refused() -> None:
    with pytest.raises(RuntimeSetupError, match="no entrypoint or command"):
        oci.process_args(make_container(), Image(cmd=()))


def test_environment_merges_image_then_toml(rootfs: Path) -> None:
    env = oci.process_env(make_container(env=(("LANG", "C.UTF-8"), ("A", "1"))), Image())
    assert "LANG=C.UTF-8" in env and "A=1" in env and "PATH=/bin" in env
    assert "HOSTNAME=web" in env


def test_user_names_resolve_in_the_image(rootfs: Path) -> None:
    assert oci.resolve_user("www", (rootfs,)) == (33, 33, [44])
    assert oci.resolve_user("", (rootfs,)) == (0, 0, [44])
    assert oci.resolve_user("1234:44", (rootfs,)) == (1234, 44, [])
    with pytest.raises(RuntimeSetupError, match="nobody"):
        oci.resolve_user("nobody", (rootfs,))


def test_mappings_and_ports_survive_the_round_trip(rootfs: Path) -> None:
    ports = (PortMapping("127.0.0.1", 8080, 80), PortMapping("::1", 5353, 53, Protocol.UDP))
    spec = build(rootfs, make_container(ports=ports))
    assert mapping_of(spec) == MAPPING
    assert ports_of(spec) == list(ports)


def test_systemd_publishes_the_tcp_ports_of_slirp4netns_and_the_helper_the_rest(
    rootfs: Path,
) -> None:
    tcp, udp = PortMapping("::1", 8080, 80), PortMapping("127.0.0.1", 5353, 53, Protocol.UDP)
    container = make_container(ports=(tcp, udp), network=Network(NetworkMode.SLIRP4NETNS))
    spec = build(rootfs, container)
    assert ports_of(spec) == [udp]
    assert published_of(spec) == [udp, tcp]


def test_volumes_are_bind_mounts_with_their_mode(rootfs: Path) -> None:
    spec = build(rootfs, make_container())
    volume = next(m for m in spec["mounts"] if m["destination"] == "/www")  # type: ignore[attr-defined]
    assert volume == {
        "destination": "/www",
        "type": "bind",
        "source": "/srv/www",
        "options": ["rbind", "ro"],
    }


def test_a_toml_entrypoint_drops_the_images_command() -> None:
    image = Image(entrypoint=("/entry",), cmd=("serve",))
    assert oci.process_args(make_container(entrypoint=("/other",)), image) == ["/other"]
    both = make_container(entrypoint=("/other",), command=("run",))
    assert oci.process_args(both, image) == ["/other", "run"]


def test_toml_user_directory_host_name_and_read_only_root(rootfs: Path) -> None:
    container = make_container(
        user="www", working_dir="/srv/app", hostname="web.home.arpa", read_only=True
    )
    spec = build(rootfs, container)
    process = spec["process"]
    assert process["user"] == {"uid": 33, "gid": 33, "additionalGids": [44]}  # type: ignore[index]
    assert process["cwd"] == "/srv/app"  # type: ignore[index]
    assert spec["hostname"] == "web.home.arpa"
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    scratch = [m["destination"] for m in spec["mounts"] if m["type"] == "tmpfs"]  # type: ignore[attr-defined]
    assert {"/tmp", "/var/tmp", "/run"} <= set(scratch)


def test_capabilities_are_the_default_less_drops_plus_adds(rootfs: Path) -> None:
    container = make_container(cap_add=("CAP_NET_ADMIN",), cap_drop=("CAP_CHOWN", "CAP_KILL"))
    bounding = build(rootfs, container)["process"]["capabilities"]["bounding"]  # type: ignore[index]
    assert "CAP_NET_ADMIN" in bounding
    assert "CAP_CHOWN" not in bounding and "CAP_KILL" not in bounding
    assert "CAP_SETUID" in bounding


def test_dropping_all_keeps_only_what_is_added(rootfs: Path) -> None:
    container = make_container(cap_add=("CAP_NET_BIND_SERVICE",), cap_drop=("ALL",))
    bounding = build(rootfs, container)["process"]["capabilities"]["bounding"]  # type: ignore[index]
    assert bounding == ["CAP_NET_BIND_SERVICE"]


def test_labels_and_sysctls_reach_the_config(rootfs: Path) -> None:
    container = make_container(
        labels=(("org.example.team", "web"),),
        sysctls=(("net.ipv4.ip_unprivileged_port_start", "80"),),
    )
    config = build(rootfs, container)
    assert config["annotations"]["org.example.team"] == "web"  # type: ignore[index]
    assert config["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "80"}  # type: ignore[index]


def test_tmpfs_devices_secrets_and_named_volumes_are_mounts(rootfs: Path) -> None:
    container = make_container(
        volumes=(NamedVolume("pgdata", PurePosixPath("/data")),),
        tmpfs=(Tmpfs(PurePosixPath("/scratch"), 1 << 20, 0o700),),
        devices=(Device(PurePosixPath("/dev/fuse"), PurePosixPath("/dev/fuse"), read_only=True),),
        secrets=(Secret(Path("/srv/pw"), PurePosixPath("/run/secrets/pw"), 0o440, 33, 33),),
    )
    config = build(rootfs, container)
    by_target = {m["destination"]: m for m in config["mounts"]}  # type: ignore[attr-defined]

    assert by_target["/data"]["source"] == "/volumes/pgdata"
    assert by_target["/scratch"]["type"] == "tmpfs"
    assert {"size=1048576", "mode=0700"} <= set(by_target["/scratch"]["options"])
    assert by_target["/dev/fuse"]["source"] == "/dev/fuse"
    assert "ro" in by_target["/dev/fuse"]["options"]
    assert by_target["/run/secrets"]["type"] == "tmpfs"
    secrets = json.loads(config["annotations"][oci.ANNOTATION_SECRETS])  # type: ignore[index]
    assert secrets == [
        {"source": "/srv/pw", "target": "/run/secrets/pw", "mode": 0o440, "uid": 33, "gid": 33}
    ]


def test_a_user_the_mapping_cannot_hold_is_refused_by_name(rootfs: Path) -> None:
    single = IdMapping(uids=(IdRange(0, 1000, 1),), gids=(IdRange(0, 1000, 1),))
    layout = oci.BundleLayout.under(rootfs.parent / "bundle", (rootfs,), Path("/volumes"))
    with pytest.raises(RuntimeSetupError, match=r"its user www \(uid 33, gid 33\) has no host id"):
        oci.build_spec(make_container(user="www"), Image(), layout, single)


def test_hostname_is_the_environment_s_too(rootfs: Path) -> None:
    config = build(rootfs, make_container(hostname="web.home.arpa"))
    assert "HOSTNAME=web.home.arpa" in config["process"]["env"]  # type: ignore[index]


def test_the_overlay_stacks_the_layer_trees_top_first(rootfs: Path, tmp_path: Path) -> None:
    lowers = (tmp_path / "top", rootfs)
    layout = oci.BundleLayout.under(tmp_path / "bundle", lowers, Path("/volumes"))
    spec = oci.build_spec(
        make_container(), Image(), layout, MAPPING, idmap_lower=True, image_id="sha256:" + "a" * 64
    )

    annotations = spec["annotations"]
    overlay = json.loads(annotations[oci.ANNOTATION_OVERLAY])
    assert overlay == {
        "lowers": [str(tmp_path / "top"), str(rootfs)],
        "attach": str(tmp_path / "bundle/lower"),
        "upper": str(tmp_path / "bundle/upper"),
        "work": str(tmp_path / "bundle/work"),
        "idmap": True,
    }
    assert annotations[oci.ANNOTATION_IMAGE_ID] == "sha256:" + "a" * 64
    assert layout.lower_attach(1) == tmp_path / "bundle/lower/1"


def test_overlay_options_name_layers_by_index_from_where_they_are_mounted() -> None:
    dirs = {
        "lowers": ["/a/very/long/path/" + "x" * 200 + f"/{i}" for i in range(3)],
        "attach": "/home/user/.local/share/sdpod/containers/web/lower",
        "upper": "/home/user/.local/share/sdpod/containers/web/upper",
        "work": "/home/user/.local/share/sdpod/containers/web/work",
    }

    where, data = oci.overlay_mount(dirs)

    assert where == dirs["attach"]
    assert data == "lowerdir=0:1:2,upperdir=../upper,workdir=../work,userxattr"


def test_as_many_layers_as_overlayfs_stacks_fit_in_one_page(tmp_path: Path) -> None:
    lowers = [tmp_path / ("layer" * 40) / str(i) for i in range(MAX_LOWER_LAYERS)]
    layout = oci.BundleLayout.under(tmp_path / ("bundle" * 30), lowers, Path("/volumes"))

    dirs = json.loads(oci.overlay_annotation(layout, idmap=False))
    _, data = oci.overlay_mount(dirs)

    assert len(data) <= oci.MOUNT_DATA_MAX
    assert data.startswith("lowerdir=0:1:2:") and ":499," in data


@pytest.mark.parametrize("count", [0, MAX_LOWER_LAYERS + 1])
def test_more_layers_than_overlayfs_stacks_are_refused(tmp_path: Path, count: int) -> None:
    layout = oci.BundleLayout.under(
        tmp_path / "bundle", [tmp_path / str(i) for i in range(count)], Path("/volumes")
    )

    with pytest.raises(RuntimeSetupError, match=f"{count} layer trees: overlayfs stacks 1 to 500"):
        oci.overlay_annotation(layout, idmap=False)


def test_a_pod_holder_only_pauses_in_the_network_it_publishes_ports_from() -> None:
    port = PortMapping("127.0.0.1", 8080, 80)
    udp = PortMapping("127.0.0.1", 5353, 53, Protocol.UDP)
    pause = Path("/usr/bin/catatonit")
    spec = pod.holder_spec("shop-pod", MAPPING, "slirp4netns", ([udp], [port]), pause)

    assert spec["process"]["args"] == ["/catatonit", "-P"]
    assert spec["process"]["capabilities"] == {"bounding": []}
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    bound = next(m for m in spec["mounts"] if m["destination"] == "/catatonit")
    assert bound["source"] == "/usr/bin/catatonit" and "ro" in bound["options"]
    assert {n["type"] for n in spec["linux"]["namespaces"]} == set(oci.NAMESPACES)
    assert mapping_of(spec) == MAPPING
    # What the launcher reads to start the helper and publish the members' UDP port; the
    # TCP port is systemd's to publish, and only listed.
    assert ports_of(spec) == [udp]
    assert published_of(spec) == [udp, port]
    assert spec["annotations"][oci.ANNOTATION_NETWORK] == "slirp4netns"
    assert spec["annotations"][oci.ANNOTATION_NAME] == "shop-pod"
    assert spec["annotations"][oci.ANNOTATION_IMAGE] == "/usr/bin/catatonit"
