"""The normalised form of a loaded project, as JSON-ready data.

Used by the fixture tests, which compare it with an expected file, and later by a
command that shows what sdpod understood of a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdpod.config.model import Container, Project
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
    return {"unit": container.unit_name, **dump_table(SETTINGS, container, show)}
