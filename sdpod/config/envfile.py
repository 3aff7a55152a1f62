"""Files of `KEY=VALUE` lines: `env_file` settings, and the `.env` file beside a TOML file.

The format is the one docker compose and podman read: one variable a line, blank lines
and lines starting with `#` ignored, an optional `export ` before the name, and a value
that may be wrapped in single or double quotes, which are removed. Nothing inside a
value is expanded. A line that is none of these is an error naming its number: python-
dotenv would only log it and carry on, and a variable silently missing is worse.
"""

from __future__ import annotations

import re
from pathlib import Path

from sdpod.config.problems import Invalid
from sdpod.config.textfile import Unreadable, read_regular

_LINE = re.compile(r"(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(?P<value>.*)")
_SYNTAX = "valid: KEY=VALUE, a # comment or a blank line"
# A file this large is no environment file; reading it whole would only waste memory.
_SIZE_MAX = 1 << 20


def read_env_file(path: Path, shown: str | None = None) -> list[tuple[str, str]]:
    """The variables of `path` in order; `Invalid` names the line of each broken one.

    Messages name the file as `shown`, by default its path: the name the user wrote.
    """
    text = _read_text(path, shown or str(path))
    path_text = shown or str(path)
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.fullmatch(stripped)
        if match is None:
            where = f"{path_text}:{number}"
            problems.append(f"{where}: {_quote(stripped)} is not KEY=VALUE; {_SYNTAX}")
            continue
        value = _unquote(match["value"])
        if value is None:
            where = f"{path_text}:{number}"
            problems.append(f"{where}: the value's quote is not closed; {_SYNTAX}")
            continue
        pairs.append((match["name"], value))
    if problems:
        raise Invalid(*problems)
    return pairs


def _read_text(path: Path, shown: str) -> str:
    valid = (
        "valid: a readable file of KEY=VALUE lines, absolute or relative to the directory "
        "of the TOML file"
    )
    try:
        data = read_regular(path, _SIZE_MAX)
    except OSError as error:
        raise Invalid(f"cannot read {shown}: {error.strerror}; {valid}") from None
    except Unreadable as error:
        raise Invalid(f"{shown} {error}; {valid}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise Invalid(f"{shown}:{line}: not valid UTF-8") from None
    if "\0" in text:
        raise Invalid(f"{shown} holds a NUL character; valid: text without NUL")
    return text


def _unquote(value: str) -> str | None:
    """The value without its quotes; None if a quote opens and never closes."""
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if end < 0:
            return None
        return value[1:end]
    # An unquoted value ends before a comment, as in a shell.
    return re.split(r"\s+#", value, maxsplit=1)[0].rstrip()


def _quote(text: str) -> str:
    return '"' + text[:60].replace('"', '\\"') + ('..."' if len(text) > 60 else '"')
