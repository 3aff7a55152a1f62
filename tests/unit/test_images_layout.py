"""Reading OCI image layouts: tags, verification, media types, platforms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.imagetest import make_image, view
from support.mkimage import (
    Descriptor,
    File,
    Layout,
    build_layout,
    gzip_bytes,
    layer_tar,
    machine_platform,
    sha256,
)

from sdpod.config.model import LayoutImage
from sdpod.errors import ImageError
from sdpod.images import mediatypes as mt
from sdpod.images.layout import ImageLayout
from sdpod.images.platforms import HostPlatform, Platform, host_platform
from sdpod.images.store import ImageStore

CONFIG = {
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["echo hi"],
    "Env": ["PATH=/bin", "A=b=c"],
    "WorkingDir": "/srv",
    "User": "www:www",
}


def foreign_platform() -> dict[str, str]:
    """A platform this machine does not run."""
    arch = "s390x" if host_platform().architecture != "s390x" else "riscv64"
    return {"os": "linux", "architecture": arch}


def test_resolve_reads_the_tagged_image_and_its_config(tmp_path: Path) -> None:
    manifest = build_layout(tmp_path, "v1", [[File("a", b"x")], [File("b", b"y")]], CONFIG)

    resolved = ImageLayout(tmp_path).resolve("v1")

    assert str(resolved.manifest.digest) == manifest.digest
    assert len(resolved.layers) == 2
    assert all(layer.diff_id is not None for layer in resolved.layers)
    config = resolved.config
    assert config.entrypoint == ("/bin/sh", "-c")
    assert config.cmd == ("echo hi",)
    assert config.argv == ("/bin/sh", "-c", "echo hi")
    assert config.env == (("PATH", "/bin"), ("A", "b=c"))
    assert (config.working_dir, config.user) == ("/srv", "www:www")
    assert config.architecture == host_platform().architecture


def test_unknown_tag_names_the_tags_there(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    manifest = layout.add_image([[File("a")]], {})
    for name in ("beta", "alpha"):
        layout.tag(manifest, name)
    layout.save()

    with pytest.raises(ImageError) as caught:
        ImageLayout(tmp_path).resolve("gamma")

    message = str(caught.value)
    assert "no image tagged 'gamma'" in message
    assert "alpha, beta" in message
    assert str(tmp_path / "index.json") in message


def test_a_directory_without_oci_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="oci-layout does not exist"):
        ImageLayout(tmp_path)


def test_tampered_config_is_refused_naming_the_blob(tmp_path: Path) -> None:
    build_layout(tmp_path, "v1", [[File("a")]], CONFIG)
    config = Path(ImageLayout(tmp_path).resolve("v1").config_descriptor.digest.hex)
    path = tmp_path / "blobs/sha256" / config
    data = bytearray(path.read_bytes())
    data[-2] ^= 1  # same size, other content
    path.write_bytes(bytes(data))

    with pytest.raises(ImageError) as caught:
        ImageLayout(tmp_path).resolve("v1")

    assert str(path) in str(caught.value)
    assert f"expected digest sha256:{config}" in str(caught.value)


def test_truncated_manifest_is_refused_by_its_size(tmp_path: Path) -> None:
    manifest = build_layout(tmp_path, "v1", [[File("a")]], CONFIG)
    path = tmp_path / "blobs/sha256" / manifest.blob_name
    path.write_bytes(path.read_bytes()[:-1])

    with pytest.raises(ImageError, match=f"expected {manifest.size} bytes, found"):
        ImageLayout(tmp_path).resolve("v1")


def test_tampered_layer_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("a", b"payload")]])
    layer = ImageLayout(image.path).resolve(image.tag).layers[0].descriptor
    path = image.path / "blobs/sha256" / layer.digest.hex
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    store = ImageStore(tmp_path / "store")

    with pytest.raises(ImageError) as caught:
        store.import_layout(image)

    assert str(path) in str(caught.value)
    assert f"expected digest {layer.digest}" in str(caught.value)
    assert not (store.blobs / layer.digest.hex).exists()
    assert [p.name for p in store.blobs.iterdir() if p.name.startswith(".tmp")] == []
    assert store.lookup(image) is None


def test_missing_layer_blob_is_named(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("a")]])
    layer = ImageLayout(image.path).resolve(image.tag).layers[0].descriptor
    path = image.path / "blobs/sha256" / layer.digest.hex
    path.unlink()

    with pytest.raises(ImageError, match=f"{path} does not exist"):
        ImageStore(tmp_path / "store").import_layout(image)


def test_digest_that_is_not_a_hash_never_becomes_a_path(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    bad = Descriptor(mt.OCI_MANIFEST, "sha256:../../../../etc/passwd", 10)
    layout.tag(bad, "v1")
    layout.save()

    with pytest.raises(ImageError, match="failed to parse digest"):
        ImageLayout(tmp_path).resolve("v1")


def test_index_picks_this_machines_image(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    foreign = foreign_platform()
    there = layout.add_image([[File("arch", b"foreign")]], {}, platform=foreign)
    here = layout.add_image([[File("arch", b"native")]], {})
    attestation = Descriptor(
        there.media_type,
        there.digest,
        there.size,
        {"os": "unknown", "architecture": "unknown"},
        {mt.DOCKER_REFERENCE_TYPE: "attestation-manifest"},
    )
    entries = [
        attestation,
        Descriptor(there.media_type, there.digest, there.size, foreign),
        Descriptor(here.media_type, here.digest, here.size, machine_platform()),
    ]
    layout.tag(layout.add_index(entries), "multi")
    layout.save()

    resolved = ImageLayout(tmp_path).resolve("multi")

    assert str(resolved.manifest.digest) == here.digest
    stored = ImageStore(tmp_path / "store").import_layout(LayoutImage(tmp_path, "multi"))
    assert (view(stored, tmp_path) / "arch").read_bytes() == b"native"


def test_index_without_this_machines_image_is_refused(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    foreign = foreign_platform()
    there = layout.add_image([[File("a")]], {}, platform=foreign)
    index = layout.add_index([Descriptor(there.media_type, there.digest, there.size, foreign)])
    layout.tag(index, "multi")
    layout.save()

    with pytest.raises(ImageError) as caught:
        ImageLayout(tmp_path).resolve("multi")

    message = str(caught.value)
    assert f"has no image for {host_platform()}" in message
    assert f"it offers linux/{foreign['architecture']}" in message


def test_single_image_for_another_machine_is_refused(tmp_path: Path) -> None:
    foreign = foreign_platform()
    build_layout(tmp_path, "v1", [[File("a")]], {}, platform=foreign)

    with pytest.raises(ImageError) as caught:
        ImageLayout(tmp_path).resolve("v1")

    assert f"built for linux/{foreign['architecture']}" in str(caught.value)
    assert caught.value.hint is not None


def test_arm_variants_rank_best_first() -> None:
    armv7 = HostPlatform("arm", ("v7", "", "v6", "v5"))

    assert armv7.rank(Platform("linux", "arm", "v7")) == 0
    assert armv7.rank(Platform("linux", "arm", "v6")) == 2
    assert armv7.rank(Platform("linux", "arm", "v8")) is None
    assert armv7.rank(Platform("windows", "arm", "v7")) is None
    assert str(armv7) == "linux/arm/v7"


def docker_layout(tmp_path: Path) -> str:
    """A layout holding a Docker schema 2 manifest list, manifest, config and layer."""
    layout = Layout(tmp_path)
    tar = layer_tar([File("hello", b"docker")])
    layer = layout.add_blob(gzip_bytes(tar), mt.DOCKER_LAYER_GZIP)
    config = {
        "architecture": machine_platform()["architecture"],
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }
    config_desc = layout.add_json(config, mt.DOCKER_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [layer.to_json()],
    }
    manifest_desc = layout.add_json(manifest, mt.DOCKER_MANIFEST)
    entry = Descriptor(mt.DOCKER_MANIFEST, manifest_desc.digest, manifest_desc.size)
    entry = Descriptor(entry.media_type, entry.digest, entry.size, machine_platform())
    listing = {"schemaVersion": 2, "mediaType": mt.DOCKER_LIST, "manifests": [entry.to_json()]}
    layout.tag(layout.add_json(listing, mt.DOCKER_LIST), "docker")
    layout.save()
    return manifest_desc.digest


def test_docker_schema2_media_types_are_read(tmp_path: Path) -> None:
    manifest = docker_layout(tmp_path / "layout")

    resolved = ImageLayout(tmp_path / "layout").resolve("docker")
    stored = ImageStore(tmp_path / "store").import_layout(
        LayoutImage(tmp_path / "layout", "docker")
    )

    assert str(resolved.manifest.digest) == manifest
    assert stored.config.cmd == ("/hello",)
    assert (view(stored, tmp_path) / "hello").read_bytes() == b"docker"


def test_uncompressed_layers_are_read(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("plain", b"tar")]], compress=False)

    stored = ImageStore(tmp_path / "store").import_layout(image)

    resolved = ImageLayout(image.path).resolve(image.tag)
    assert resolved.layers[0].descriptor.media_type == mt.OCI_LAYER
    assert (view(stored, tmp_path) / "plain").read_bytes() == b"tar"


def rewrite_manifest(layout_dir: Path, change: dict[str, object]) -> None:
    """Replace the `test` tag's manifest by a copy with `change` merged in."""
    layout = Layout(layout_dir)
    old = json.loads((layout_dir / "index.json").read_bytes())["manifests"][0]
    blob = layout_dir / "blobs/sha256" / old["digest"].split(":")[1]
    manifest = {**json.loads(blob.read_bytes()), **change}
    layout.tag(layout.add_json(manifest, mt.OCI_MANIFEST), "test")
    layout.save()


def test_artifact_is_refused_as_not_an_image(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("a")]])
    rewrite_manifest(image.path, {"artifactType": "application/example.sbom"})

    with pytest.raises(ImageError, match=r"artifact of type 'application/example\.sbom'"):
        ImageLayout(image.path).resolve(image.tag)


def test_zstd_layers_are_accepted_by_type(tmp_path: Path) -> None:
    image = make_image(tmp_path, [[File("a")]])
    manifest = json.loads(
        (image.path / "blobs/sha256" / ImageLayout(image.path).find("test").digest.hex).read_text()
    )
    manifest["layers"][0]["mediaType"] = mt.OCI_LAYER_ZSTD
    rewrite_manifest(image.path, {"layers": manifest["layers"]})

    resolved = ImageLayout(image.path).resolve(image.tag)

    assert [layer.descriptor.media_type for layer in resolved.layers] == [mt.OCI_LAYER_ZSTD]


def test_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    tar = layer_tar([File("a", b"1")])
    layer = layout.add_blob(gzip_bytes(tar), mt.OCI_LAYER_GZIP)
    other = sha256(layer_tar([File("a", b"2")]))
    config = {
        "architecture": machine_platform()["architecture"],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [other]},
    }
    manifest = {
        "schemaVersion": 2,
        "config": layout.add_json(config, mt.OCI_CONFIG).to_json(),
        "layers": [layer.to_json()],
    }
    layout.tag(layout.add_json(manifest, mt.OCI_MANIFEST), "test")
    layout.save()
    store = ImageStore(tmp_path / "store")

    with pytest.raises(ImageError, match=f"the image config expects {other}"):
        store.import_layout(LayoutImage(tmp_path / "layout", "test"))

    assert store.lookup(LayoutImage(tmp_path / "layout", "test")) is None
