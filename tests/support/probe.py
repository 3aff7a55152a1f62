"""The static probe (probe.c) that reports what a container sees, and test bundles with it.

The probe is compiled once per test session with gcc and glibc's static library
(Debian's `gcc` and `libc6-dev`, in scripts/install's test packages), so that it runs in
the busybox image with no library of its own.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from support.mkimage import busybox_entries, layer_tar

SOURCE = Path(__file__).with_name("probe.c")
# Where the probe lives in a test bundle's root.
PROBE_PATH = "/probe"


class ProbeUnavailable(Exception):
    """The probe cannot be built here: the reason, for a skip."""


def build(directory: Path) -> Path:
    """Compile the probe into `directory`; its path."""
    compiler = shutil.which("gcc")
    if compiler is None:
        raise ProbeUnavailable("gcc is not installed (scripts/install --test installs it)")
    binary = directory / "probe"
    result = subprocess.run(
        [compiler, "-static", "-O2", "-Wall", "-Werror", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ProbeUnavailable(f"failed to build the probe: {result.stderr.strip()}")
    return binary


def parse(output: str) -> dict[str, str]:
    """The probe's `key=value` lines as a mapping."""
    seen = {}
    for line in output.splitlines():
        key, equals, value = line.partition("=")
        if equals:
            seen[key] = value
    return seen


def make_rootfs(rootfs: Path, probe: Path, owner: tuple[int, int] | None = None) -> None:
    """The busybox test image's files at `rootfs`, with the probe at /probe; `owner`
    takes every file (a rootless container's root owns its image)."""
    layer = layer_tar(busybox_entries())
    with tarfile.open(fileobj=io.BytesIO(layer)) as archive:
        archive.extractall(rootfs, numeric_owner=True)
    shutil.copy(probe, rootfs / PROBE_PATH.lstrip("/"))
    os.chmod(rootfs / PROBE_PATH.lstrip("/"), 0o755)
    if owner is not None:
        for path in [rootfs, *rootfs.rglob("*")]:
            os.lchown(path, *owner)
