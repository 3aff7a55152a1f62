"""Which stored images containers use, read from their bundles (`containers/NAME/config.json`).

A container's config.json names its image in the annotation `io.sdpod.image`, and the
image's root filesystem as the lower directory of its overlay (`io.sdpod.rootfs.overlay`,
JSON with a `lower` path). The store reads those two annotations here rather than import
the runtime, which writes them: an image is in use when a container's lower directory is
that image's `rootfs`.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdpod.errors import ImageError

ANNOTATION_IMAGE = "io.sdpod.image"
ANNOTATION_OVERLAY = "io.sdpod.rootfs.overlay"


def users_of_rootfs(containers: Path) -> dict[Path, list[str]]:
    """Each image rootfs that some container's overlay uses, with those containers' names."""
    found: dict[Path, list[str]] = {}
    if not containers.is_dir():
        return found
    for directory in sorted(containers.iterdir()):
        lower = _lower_of(directory / "config.json")
        if lower is not None:
            found.setdefault(lower, []).append(directory.name)
    return found


def _lower_of(config: Path) -> Path | None:
    try:
        annotations = json.loads(config.read_bytes()).get("annotations") or {}
        overlay = json.loads(annotations.get(ANNOTATION_OVERLAY) or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        # A bundle we cannot read might use any image: removal must not guess it does not.
        raise ImageError(
            f"failed to read container bundle {config}: {exc}",
            hint="images are only removed while every container's config.json can be read",
        ) from None
    lower = overlay.get("lower") if isinstance(overlay, dict) else None
    return Path(lower) if isinstance(lower, str) and lower else None
