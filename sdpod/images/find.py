"""Finding a stored image by what a user types: a reference, an id, or an id's prefix."""

from __future__ import annotations

import re

from sdpod.errors import ImageError
from sdpod.images import registries
from sdpod.images.reference import parse_reference
from sdpod.images.store import ImageStore

# Like `docker image ls`, ids are shown shortened; a prefix this long or longer names one.
MIN_PREFIX = 4
_HEX = re.compile(r"(?:sha256:)?([0-9a-f]+)")


def find_image(store: ImageStore, text: str) -> str:
    """The id of the image `text` names; a reference wins over an id prefix."""
    names = store.names()
    if text in names:
        return names[text]
    try:
        reference = str(parse_reference(text, registries.load().aliases))
    except ImageError:
        reference = None
    if reference is not None and reference in names:
        return names[reference]
    match = _HEX.fullmatch(text)
    if match is not None and len(match.group(1)) >= MIN_PREFIX:
        found = [i for i in store.image_ids() if i.removeprefix("sha256:").startswith(match[1])]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ImageError(f"failed to find image {text}: the prefix names {len(found)} images")
    raise ImageError(
        f"failed to find image {text}: no stored image has that name or id",
        hint="`sdpod image ls` lists the stored images",
    )
