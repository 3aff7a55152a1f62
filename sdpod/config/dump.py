"""The normalised form of a loaded project, as JSON-ready data.

Used by the fixture tests, which compare it with an expected file, and by `sdpod
config`, which shows what sdpod understood of a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdpod.config.model import Container, LayoutImage, Project
from sdpod.config.schema import Json, ShowPath
from sdpod.config.settings import SETTINGS, dump_table


def project_to_dict(project: Project, relative_to: Path | None = None) -> dict[str, Json]:
    """Render `project`; with `relative_to`, every path is shown relative to that directory."""

    def show(path: Path) -> str:
        return str(path) if relative_to is None else os.path.relpath(path, relative_to)

    return {
        "source": show(project.source),
        "name": project.name,
        "containers": [_container_to_dict(container, show) for container in project.containers],
    }


def _container_to_dict(container: Container, show: ShowPath) -> Json:
    """Every setting, with the defaults that depend on others filled in as well."""
    shown = dump_table(SETTINGS, container, show)
    shown["hostname"] = container.host_name
    shown["description"] = container.description or _default_description(container, show)
    return {"unit": container.unit_name, **shown}


def _default_description(container: Container, show: ShowPath) -> str:
    """The unit's default description, with the image's path shown as the others are."""
    image = container.image
    named = f"oci:{show(image.path)}:{image.tag}" if isinstance(image, LayoutImage) else str(image)
    return f"sdpod container {container.name} ({named})"
