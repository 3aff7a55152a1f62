"""The OCI configuration built from the model: pure, no privileges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from sdpod.config.model import (
    BindVolume,
    Container,
    LayoutImage,
    PortMapping,
    Protocol,
    RestartPolicy,
)
from sdpod.errors import RuntimeSetupError
from sdpod.kernel.userns import IdMapping, IdRange
from sdpod.runtime import spec as oci
from sdpod.runtime.launch import mapping_of, ports_of


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
    layout = oci.BundleLayout.under(rootfs.parent / "bundle", rootfs)
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
    assert oci.resolve_user("www", rootfs) == (33, 33, [44])
    assert oci.resolve_user("", rootfs) == (0, 0, [44])
    assert oci.resolve_user("1234:44", rootfs) == (1234, 44, [])
    with pytest.raises(RuntimeSetupError, match="nobody"):
        oci.resolve_user("nobody", rootfs)


def test_mappings_and_ports_survive_the_round_trip(rootfs: Path) -> None:
    ports = (PortMapping("127.0.0.1", 8080, 80), PortMapping("::1", 5353, 53, Protocol.UDP))
    spec = build(rootfs, make_container(ports=ports))
    assert mapping_of(spec) == MAPPING
    assert ports_of(spec) == list(ports)


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
