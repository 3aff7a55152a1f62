"""The media types of images we run: OCI image spec v1 and Docker image manifest v2 schema 2."""

from __future__ import annotations

import enum

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_FOREIGN_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_FOREIGN_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_FOREIGN_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

REF_NAME = "org.opencontainers.image.ref.name"

# BuildKit lists provenance and SBOM manifests in an image's index with this annotation
# and the platform unknown/unknown; they are never an image to run.
DOCKER_REFERENCE_TYPE = "vnd.docker.reference.type"


class Kind(enum.Enum):
    INDEX = "image index"
    MANIFEST = "image manifest"


_KINDS = {
    OCI_INDEX: Kind.INDEX,
    DOCKER_LIST: Kind.INDEX,
    OCI_MANIFEST: Kind.MANIFEST,
    DOCKER_MANIFEST: Kind.MANIFEST,
}

CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

# Compression is read from the first bytes of each layer, not from its type, because
# `docker save` and some converters label layers with the other kind.
LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_FOREIGN_LAYER,
        OCI_FOREIGN_LAYER_GZIP,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_FOREIGN_LAYER_ZSTD,
    }
)

# What each Docker type is called in an OCI manifest, for writing Docker images into OCI
# layouts (skopeo reads no Docker manifest from an `oci:` layout).
OCI_EQUIVALENTS = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_LIST: OCI_INDEX,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER: OCI_LAYER,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER_GZIP: OCI_FOREIGN_LAYER_GZIP,
}

# Manifests of the retired Docker schema 1, which carry no config: refused by name.
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

# What a registry is asked for: every kind of manifest and index we can read.
MANIFEST_ACCEPT = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)


def kind_of(media_type: str) -> Kind | None:
    """Whether `media_type` names an image index, an image manifest, or neither."""
    return _KINDS.get(media_type)
