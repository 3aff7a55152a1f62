"""The man page sdpod.toml(5), generated from the setting tables like docs/settings.md.

`python -m sdpod.config.manpage > packaging/man/sdpod.toml.5` writes it; a unit test fails
when the committed page differs from what the tables give. The facts about the file and
the list of its tables come from `sdpod.config.reference`, which the Markdown reads too;
this module only turns them into man(7) macros, escaping text as roff needs.
"""

from __future__ import annotations

import re
from typing import Any, Final

from sdpod.config import reference
from sdpod.config.reference import SECTIONS, Section
from sdpod.config.schema import Setting

EXAMPLE: Final = """\
[project]
name = "shop"

[containers.db]
image = "docker.io/library/postgres:16"
env = { POSTGRES_PASSWORD = "${DB_PASSWORD}" }
health = { command = "pg_isready -U postgres", interval = "5s" }
resources = { memory = "1G" }

[containers.web]
image = "docker.io/library/nginx:1.27"
ports = ["127.0.0.1:${WEB_PORT:-8080}:80"]
volumes = ["./www:/usr/share/nginx/html:ro"]
depends_on = { db = "healthy" }
stop_signal = "SIGQUIT"
"""
"""The file that EXAMPLES shows; a unit test loads it, so it stays valid."""

_EXAMPLE_TEXT = (
    "Two containers of the project shop: `sdpod up shop.toml` starts db first, and web "
    "once the health check of db passes. DB_PASSWORD must be set in the environment; "
    "WEB_PORT may be, and is 8080 otherwise. The directory www beside the file is "
    "served read-only."
)

_SEE_ALSO = (("sdpod", 1), ("systemd.resource-control", 5), ("systemd.service", 5))

_HEAD = """\
.\\" Generated from the setting tables in sdpod/config/settings.py by
.\\" `python -m sdpod.config.manpage > packaging/man/sdpod.toml.5`: edit the tables, not this.
.TH SDPOD.TOML 5 "" sdpod "File Formats Manual"
.\\" Names, values and paths read badly when lines are stretched to both margins.
.ad l
.SH NAME
sdpod.toml \\- the containers of a project, and their settings, as sdpod runs them
.SH SYNOPSIS
\\fIPROJECT\\fB.toml\\fR"""

# Characters that troff would typeset otherwise than as typed, in literal text: a
# backslash starts an escape, and groff turns - ' ` ^ ~ into typographic glyphs that
# cannot be copied back into a file (groff_char(7)).
_LITERAL = str.maketrans(
    {"\\": r"\e", "-": r"\-", "'": r"\(aq", "`": r"\(ga", "^": r"\(ha", "~": r"\(ti"}
)
# In prose an apostrophe may be typeset as one.
_PROSE = str.maketrans({char: escape for char, escape in _LITERAL.items() if char != ord("'")})
# A word of prose, even one joined by hyphens like read-only, is typeset as such; in any
# other word (a name, a path, an option, a quoted value) a hyphen is a minus sign
# (man-pages(7)), and \% keeps troff from hyphenating it where it would be copied wrong.
_PROSE_WORD = re.compile(r"\(?[A-Za-z]+(?:[-'][A-Za-z]+)*[),.;:]*|[),.;:]+")
_CODE_SPAN = re.compile(r"`([^`]*)`")


def render() -> str:
    """The whole page, as roff source for the man(7) macros."""
    parts = [
        _HEAD,
        ".SH DESCRIPTION",
        _text(reference.FILE_FACTS),
        ".PP",
        _text(
            "`sdpod check FILE` reports every problem in a file at once, each with its line "
            "and key; `sdpod config FILE` prints the file as sdpod understands it, with every "
            "default filled in."
        ),
        ".SS Values",
        _text(reference.VALUE_KINDS_LEAD),
        *(_tagged(kind, reference.sentence(syntax)) for kind, syntax in reference.VALUE_KINDS),
        *(_section(section) for section in SECTIONS),
        ".SH EXAMPLES",
        _text(_EXAMPLE_TEXT),
        _example(EXAMPLE),
        ".SH SEE ALSO",
        ",\n".join(f".BR {_literal(name)} ({section})" for name, section in _SEE_ALSO),
    ]
    return "\n".join(parts) + "\n"


def _section(section: Section) -> str:
    # As containers.conf(5) names its tables: CONTAINERS TABLE for [containers].
    title = f"{section.headers[0].strip('[]').upper()} TABLE"
    headers = " or ".join(f"`{header}`" for header in section.headers)
    lines = [f'.SH "{_literal(title)}"', _text(f"Keys of {headers}. {section.text}")]
    lines += [_key(row) for row in section.rows]
    return "\n".join(lines)


def _key(row: Setting[Any]) -> str:
    meaning = reference.sentence(row.help)
    default = f"Default: {reference.default_text(row)}."
    body = f"{_text(meaning)}\n.br\n{_text(default)}"
    return "\n".join([".TP", _text(f"`{row.key}`"), body, _example(row.example)])


def _tagged(tag: str, body: str) -> str:
    return "\n".join([".TP", _text(tag), _text(body)])


def _example(text: str) -> str:
    # .IP without a tag goes on at the indentation of the .TP paragraph it follows.
    return "\n".join([".IP", ".EX", _lines(text.rstrip("\n").translate(_LITERAL)), ".EE"])


def _text(text: str) -> str:
    """Running text, its `code` spans in bold, escaped for roff."""
    pieces = _CODE_SPAN.split(text)
    escaped = "".join(
        f"\\fB{_code(piece)}\\fR" if index % 2 else _prose(piece)
        for index, piece in enumerate(pieces)
    )
    return _lines(escaped)


def _literal(text: str) -> str:
    return text.translate(_LITERAL)


def _code(text: str) -> str:
    return re.sub(r"\S+", lambda match: f"\\%{_literal(match[0])}", text)


def _prose(text: str) -> str:
    def word(match: re.Match[str]) -> str:
        if _PROSE_WORD.fullmatch(match[0]):
            return match[0]
        return f"\\%{match[0].translate(_PROSE)}"

    return re.sub(r"\S+", word, text)


def _lines(text: str) -> str:
    # A line that starts with . or ' would be a request; \& before it is nothing to print.
    return "\n".join(
        f"\\&{line}" if line.startswith((".", "'")) else line for line in text.split("\n")
    )


if __name__ == "__main__":
    print(render(), end="")
