"""The names of stored images: `<root>/names.json` maps references to image ids.

    {"docker.io/library/busybox:1.36": "sha256:<config digest>", ...}

A name points at one image; pulling a tag whose image changed moves the name, and the
image it left keeps no name (`sdpod image prune` removes it once no container uses it).
The file is only written under the store's lock, and replaced by one rename(2).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sdpod.errors import ImageError
from sdpod.images.jsonfile import read_json

FILE = "names.json"


def read_names(root: Path) -> dict[str, str]:
    """Every name and the id it points at; an empty store has none."""
    path = root / FILE
    document = read_json(path, missing_ok=True)
    if document is None:
        return {}
    if not isinstance(document, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in document.items()
    ):
        raise ImageError(f"failed to parse {path}: expected an object of names and ids")
    return document


def names_of(names: dict[str, str], image_id: str) -> list[str]:
    return sorted(name for name, target in names.items() if target == image_id)


def set_names(root: Path, image_id: str, references: Iterable[str]) -> None:
    """Point each of `references` at `image_id` (caller holds the store's lock)."""
    names = read_names(root)
    changed = False
    for reference in references:
        changed |= names.get(reference) != image_id
        names[reference] = image_id
    if changed:
        _write(root, names)


def drop_image(root: Path, image_id: str) -> list[str]:
    """Remove every name of `image_id` (caller holds the store's lock); return them."""
    names = read_names(root)
    dropped = names_of(names, image_id)
    if dropped:
        _write(root, {k: v for k, v in names.items() if v != image_id})
    return dropped


def drop_name(root: Path, reference: str) -> None:
    names = read_names(root)
    if names.pop(reference, None) is not None:
        _write(root, names)


def _write(root: Path, names: dict[str, str]) -> None:
    text = json.dumps(dict(sorted(names.items())), indent=2) + "\n"
    fd, temp = tempfile.mkstemp(dir=root, prefix=".names-")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temp, root / FILE)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
