"""What a registry image changes in a container's definition: pure, no privileges.

`sdpod up` replaces a running container when its definition digest changes; a newer
image pulled under the same tag must change it, and the same image must not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sdpod.config.model import Container, Project, PullPolicy, RegistryImage
from sdpod.errors import ImageError
from sdpod.images.pull import PullOptions
from sdpod.images.store import ImageStore
from sdpod.kernel.userns import IdMapping, IdRange
from sdpod.lifecycle import definition_digest, launcher_argv
from sdpod.network import files
from sdpod.runtime import spec as oci
from sdpod.units.translate import service_properties

REFERENCE = "127.0.0.1:5000/sdpod/busybox:1"
MAPPING = IdMapping(uids=(IdRange(0, 1000, 1),), gids=(IdRange(0, 1000, 1),))


@dataclass(frozen=True)
class Image:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("httpd", "-f")
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = "/"
    user: str = ""


def stored_rootfs(root: Path, image_id: str) -> Path:
    """A store's rootfs of an image, as `ImageStore` lays it out, with the files the
    spec reads."""
    rootfs = root / "images" / image_id / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\n")
    return rootfs


def digest_for(container: Container, rootfs: Path, bundle: Path) -> str:
    layout = oci.BundleLayout.under(bundle, (rootfs,), bundle / "volumes")
    spec = oci.build_spec(container, Image(), layout, MAPPING, Path("/usr/bin/tini-static"))
    project = Project(bundle / "web.toml", (container,), "web")
    properties = service_properties(container, project, launcher_argv(layout.bundle))
    return definition_digest(spec, properties, files.etc_files(container, container, None))


def test_a_newer_image_under_the_same_tag_changes_the_definition(tmp_path: Path) -> None:
    container = Container("web", RegistryImage(REFERENCE), pull=PullPolicy.ALWAYS)
    old = stored_rootfs(tmp_path, "a" * 64)
    new = stored_rootfs(tmp_path, "b" * 64)
    bundle = tmp_path / "containers/web"

    first = digest_for(container, old, bundle)
    assert digest_for(container, old, bundle) == first
    assert digest_for(container, new, bundle) != first


def test_a_changed_name_server_changes_the_definition(tmp_path: Path) -> None:
    # It shows in /etc/resolv.conf alone, not in config.json or the unit.
    container = Container("web", RegistryImage(REFERENCE))
    rootfs = stored_rootfs(tmp_path, "d" * 64)
    bundle = tmp_path / "containers/web"
    first = digest_for(container, rootfs, bundle)
    assert digest_for(Container("web", RegistryImage(REFERENCE)), rootfs, bundle) == first
    assert (
        digest_for(Container("web", RegistryImage(REFERENCE), dns=("::1",)), rootfs, bundle)
        != first
    )


def test_the_reference_is_what_the_container_shows_as_its_image(tmp_path: Path) -> None:
    container = Container("web", RegistryImage(REFERENCE))
    layout = oci.BundleLayout.under(
        tmp_path / "bundle", (stored_rootfs(tmp_path, "c" * 64),), tmp_path / "volumes"
    )
    spec = oci.build_spec(container, Image(), layout, MAPPING, Path("/usr/bin/tini-static"))
    assert spec["annotations"][oci.ANNOTATION_IMAGE] == REFERENCE


@pytest.mark.parametrize(("tls_verify", "flags"), [(True, ""), (False, "--tls-verify=false ")])
def test_pull_never_names_the_reference_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_verify: bool, flags: str
) -> None:
    # No registries.conf of the caller's may change the reference.
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ImageError) as raised:
        store.ensure(REFERENCE, PullPolicy.NEVER, options=PullOptions(tls_verify))
    assert REFERENCE in str(raised.value)
    assert raised.value.hint == f"pull it with `sdpod image pull {flags}{REFERENCE}`"
