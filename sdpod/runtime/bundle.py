"""A container's bundle on disk: config.json, the overlay's directories, its /etc files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdpod.errors import RuntimeSetupError
from sdpod.runtime.spec import BundleLayout


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` so that a crash leaves either the old text or the new, never half."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def prepare(
    layout: BundleLayout,
    spec: dict[str, Any],
    etc_files: Mapping[str, str],
    root_owner: tuple[int, int],
) -> None:
    """Create the bundle's directories and write its configuration and /etc files.

    The overlay's upper and work directories belong to the container's root, given as
    host ids, so that it can write there: rootless that is the user, a no-op.
    """
    attach = (layout.lower_attach(index) for index in range(len(layout.lowers)))
    for directory in (layout.bundle, layout.rootfs, layout.etc, *attach):
        directory.mkdir(parents=True, exist_ok=True)
    for directory in (layout.upper, layout.work):
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, *root_owner)
    # Every user of the container reads these, as they read the host's own.
    for name, text in etc_files.items():
        write_atomically(layout.etc / name, text, mode=0o644)
    write_spec(layout.bundle, spec)


def write_spec(bundle: Path, spec: dict[str, Any]) -> None:
    write_atomically(bundle / "config.json", json.dumps(spec, indent=2) + "\n")


def load_spec(bundle: Path, missing: str, hint: str) -> dict[str, Any]:
    """The bundle's config.json; `missing` and `hint` say what its absence means."""
    try:
        spec: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    except FileNotFoundError:
        raise RuntimeSetupError(missing, hint=hint) from None
    except (OSError, ValueError) as error:
        raise RuntimeSetupError(f"failed to read {bundle / 'config.json'}: {error}") from None
    return spec


def read_spec(bundle: Path) -> dict[str, Any] | None:
    """The bundle's config.json, or None where there is no readable one."""
    try:
        spec: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return spec
