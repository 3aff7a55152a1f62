"""`${VAR}` and `${VAR:-default}` in string values, taken from the environment.

`${NAME}` is replaced by the variable's value and is an error when NAME is unset;
`${NAME:-default}` falls back to `default` when NAME is unset or empty. `$${` stands for
a literal `${`. A `$` not followed by `{` is left alone, so shell words like `$HOME` in a
command reach the container unchanged.
"""

from __future__ import annotations

import re

from sdpod.config.problems import Spot

_REFERENCE = re.compile(
    r"\$\$\{"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|\$\{"
)
_VALID = "valid: ${NAME} or ${NAME:-default}, or $${ for a literal ${"


def substitute(value: object, spot: Spot) -> object:
    """Return `value` with references replaced in every string inside it, at any depth."""
    if isinstance(value, str):
        return _substitute_string(value, spot)
    if isinstance(value, list):
        return [substitute(item, spot.child(index)) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: substitute(item, spot.child(key)) for key, item in value.items()}
    return value


def _substitute_string(text: str, spot: Spot) -> str:
    if "${" not in text:
        return text

    missing: list[str] = []
    broken: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if match[0] == "$${":
            return "${"
        if name is None:
            broken.append("malformed variable reference")
            return match[0]
        if default is not None and "${" in default:
            broken.append(f"the default of ${{{name}}} holds a reference; they do not nest")
            return match[0]
        found = spot.findings.environ.get(name)
        if default is not None and not found:
            return default
        if found is None:
            missing.append(name)
            return match[0]
        return found

    result = _REFERENCE.sub(replace, text)
    for message in broken:
        spot.fail(f"{message}; {_VALID}", text)
    for name in missing:
        spot.fail(
            f"variable {name} is not set; valid: set it, or give a default like ${{{name}:-value}}",
            text,
        )
    if missing or broken:
        spot.findings.unresolved.add(spot.path)
    elif result != text:
        spot.findings.origins[spot.path] = text
    return result
