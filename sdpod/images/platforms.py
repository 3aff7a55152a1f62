"""Which image platforms this machine runs, named as image indexes name them (GOOS/GOARCH)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sdpod.errors import ImageError

# uname machine -> (architecture, variants this machine runs, best first). "" stands for
# an entry that names no variant, which for these architectures means the baseline.
_MACHINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "x86_64": ("amd64", ("", "v1")),
    "aarch64": ("arm64", ("", "v8")),
    "armv8l": ("arm", ("v8", "v7", "", "v6", "v5")),
    "armv7l": ("arm", ("v7", "", "v6", "v5")),
    "armv6l": ("arm", ("v6", "", "v5")),
    "i686": ("386", ("",)),
    "i386": ("386", ("",)),
    "ppc64le": ("ppc64le", ("",)),
    "s390x": ("s390x", ("",)),
    "riscv64": ("riscv64", ("",)),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os or "?", self.architecture or "?"]
        return "/".join([*parts, self.variant] if self.variant else parts)

    @classmethod
    def from_json(cls, value: object) -> Platform | None:
        """The `platform` object of a descriptor, or None where it is absent or malformed."""
        if not isinstance(value, dict):
            return None
        return cls(_text(value, "os"), _text(value, "architecture"), _text(value, "variant"))


@dataclass(frozen=True)
class HostPlatform:
    """The platform this process runs on, and the variants it accepts in preference order."""

    architecture: str
    variants: tuple[str, ...]

    @property
    def os(self) -> str:
        return "linux"

    def __str__(self) -> str:
        return str(Platform(self.os, self.architecture, self.variants[0]))

    def rank(self, platform: Platform) -> int | None:
        """How well `platform` suits this machine: 0 is best, None is not runnable."""
        if platform.os != self.os or platform.architecture != self.architecture:
            return None
        if platform.variant not in self.variants:
            return None
        return self.variants.index(platform.variant)


def host_platform() -> HostPlatform:
    machine = os.uname().machine
    architecture, variants = _MACHINES.get(machine, (machine, ("",)))
    return HostPlatform(architecture, variants)


def _text(value: dict[str, Any], key: str) -> str:
    item = value.get(key, "")
    return item if isinstance(item, str) else ""


def parse_platform(text: str) -> HostPlatform:
    """The platform `--platform os/arch[/variant]` asks for, ranked like this machine's.

    Without a variant, the architecture's variants are accepted in the order a machine
    of that architecture prefers them.
    """
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(
            f"failed to parse platform {text!r}: expected OS/ARCHITECTURE[/VARIANT], "
            "for example linux/arm64 or linux/arm/v7"
        )
    if parts[0] != "linux":
        raise ImageError(f"failed to parse platform {text!r}: sdpod runs only linux images")
    architecture = parts[1]
    if len(parts) == 3:
        return HostPlatform(architecture, (parts[2],))
    known = [variants for arch, variants in _MACHINES.values() if arch == architecture]
    return HostPlatform(architecture, known[0] if known else ("",))
