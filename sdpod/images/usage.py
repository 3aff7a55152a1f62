"""What stored images and trees containers use, as their bundles' config.json says.

A container's config.json names its image's id in the annotation `io.sdpod.image.id`,
and the trees its overlay stacks in `io.sdpod.rootfs.overlay` (JSON: `lowers`, the
layer trees, top first; a bundle of an sdpod before shared layers has one `lower`, the
image's whole tree, and no id). The store reads those annotations here rather than
import the runtime, which writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import ImageError

ANNOTATION_IMAGE_ID = "io.sdpod.image.id"
ANNOTATION_OVERLAY = "io.sdpod.rootfs.overlay"


@dataclass(frozen=True)
class Use:
    """What one container's bundle uses."""

    container: str
    image_id: str | None
    trees: tuple[Path, ...]


def uses(containers: Path) -> list[Use]:
    """What each container whose bundle is under `containers` uses."""
    if not containers.is_dir():
        return []
    found = []
    for directory in sorted(containers.iterdir()):
        use = _use_of(directory.name, directory / "config.json")
        if use is not None:
            found.append(use)
    return found


def users_of_trees(containers: Path) -> dict[Path, list[str]]:
    """Each tree that some container's overlay stacks, with those containers' names."""
    found: dict[Path, list[str]] = {}
    for use in uses(containers):
        for tree in use.trees:
            found.setdefault(tree, []).append(use.container)
    return found


def lowers_of(overlay: object) -> tuple[Path, ...]:
    """The trees an overlay annotation, parsed, stacks: `lowers`, or an older `lower`."""
    if not isinstance(overlay, dict):
        return ()
    lowers = overlay.get("lowers")
    if isinstance(lowers, list):
        return tuple(Path(lower) for lower in lowers if isinstance(lower, str) and lower)
    lower = overlay.get("lower")
    return (Path(lower),) if isinstance(lower, str) and lower else ()


def _use_of(name: str, config: Path) -> Use | None:
    try:
        annotations = json.loads(config.read_bytes()).get("annotations") or {}
        overlay = json.loads(annotations.get(ANNOTATION_OVERLAY) or "{}")
        image_id = annotations.get(ANNOTATION_IMAGE_ID)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        # A bundle we cannot read might use any image: removal must not guess it does not.
        raise ImageError(
            f"failed to read container bundle {config}: {exc}",
            hint="images are only removed while every container's config.json can be read",
        ) from None
    return Use(name, image_id if isinstance(image_id, str) else None, lowers_of(overlay))
