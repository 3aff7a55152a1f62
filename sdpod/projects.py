"""Read a TOML file as every command that acts on it must: with the user's image aliases.

Short image names are refused unless the user's registries.conf gives them an alias;
config may not read the image store's files (data flows one way), so the aliases are
read here and handed to it.
"""

from __future__ import annotations

from pathlib import Path

from sdpod.config.load import load_project
from sdpod.config.model import Project


def load(file: Path) -> Project:
    """`file`'s project, with the short image names registries.conf aliases accepted."""
    from sdpod.images import registries

    aliases = registries.load().aliases or {}
    return load_project(file, short_names=aliases.keys())
