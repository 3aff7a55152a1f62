"""The typed, frozen model that every layer after `config` trusts.

Nothing here is validated again downstream: `sdpod.config.load` only builds these
objects from values it has already checked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class RestartPolicy(enum.Enum):
    """When systemd restarts the container; the values are systemd's `Restart=` words."""

    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class PortMapping:
    """A container port published on an address of the host."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True)
class BindVolume:
    """A host directory or file mounted into the container."""

    source: Path
    target: PurePosixPath
    read_only: bool = False


@dataclass(frozen=True)
class LayoutImage:
    """An image read from an OCI image layout on disk (`skopeo copy ... oci:DIR:TAG`)."""

    path: Path
    tag: str

    def __str__(self) -> str:
        return f"oci:{self.path}:{self.tag}"


@dataclass(frozen=True)
class Container:
    """One container. `command` is None when the image's own command should run."""

    name: str
    image: LayoutImage
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortMapping, ...] = ()
    volumes: tuple[BindVolume, ...] = ()
    restart: RestartPolicy = RestartPolicy.ON_FAILURE

    @property
    def unit_name(self) -> str:
        return f"sdpod-{self.name}.service"


@dataclass(frozen=True)
class Project:
    """Everything one TOML file describes."""

    source: Path
    containers: tuple[Container, ...]
