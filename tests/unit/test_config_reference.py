"""docs/settings.md is what the setting tables generate, word for word."""

from __future__ import annotations

from pathlib import Path

from sdpod.config import settings
from sdpod.config.reference import render

REFERENCE = Path(__file__).parent.parent.parent / "docs" / "settings.md"


def test_committed_reference_is_generated_from_the_tables() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/settings.md is out of date: run `python -m sdpod.config.reference > docs/settings.md`"
    )


def test_reference_names_every_key_of_every_table() -> None:
    text = render()
    tables = [settings.PROJECT, settings.SETTINGS, settings.RESOURCES, settings.HEALTH]
    for rows in tables:
        for row in rows:
            assert f"| `{row.key}` |" in text
