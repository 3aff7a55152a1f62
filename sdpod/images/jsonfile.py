"""Reading the store's and the user's small JSON files, with one wording for their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdpod.errors import ImageError


def read_json(path: Path, what: str = "", missing_ok: bool = False) -> Any:
    """The document in `path`; None for a missing file where `missing_ok` says so.

    `what` names the kind of file in errors, like "credentials file".
    """
    named = f"{what} {path}" if what else str(path)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        raise ImageError(f"failed to read {named}: {exc.strerror}") from None
    except OSError as exc:
        raise ImageError(f"failed to read {named}: {exc.strerror}") from None
    except ValueError as exc:
        raise ImageError(f"failed to parse {named}: {exc}") from None
