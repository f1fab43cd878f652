"""Environment files (`env_file = ".env"`): KEY=VALUE lines, as docker compose and
python-dotenv read them.

    # a comment                       blank lines and comments are skipped
    export KEY=value                  `export ` is allowed and ignored
    KEY=value with spaces   # note    unquoted: trimmed, a ' #' starts a comment
    KEY='literal $HOME \\n'            single quotes: exactly what is inside
    KEY="line 1\\nline 2 \\"quoted\\""   double quotes: \\n \\t \\r \\" \\\\ \\$ escapes; may span lines

No ${VAR} expansion. Values are secrets: no error message ever contains one (a bad line
is named by its number). Pure: parses text. Imports nothing from aios.
"""
from __future__ import annotations

import re

__all__ = ["DotenvError", "parse", "MAX_BYTES"]

MAX_BYTES = 1 << 20             # an env file larger than this is refused, not read
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(ValueError):
    """A line that is not KEY=VALUE; the message names the line, never a value."""


def parse(text: str) -> dict[str, str]:
    """The variables of an env file, in file order (a later KEY wins)."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number].strip()
        number += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            raise DotenvError(f"line {number}: expected KEY=VALUE with KEY made of letters, digits and '_'")
        value, used = _value(rest.lstrip(), lines[number:], number)
        number += used
        values[key] = value
    return values


def _value(rest: str, following: list[str], number: int) -> tuple[str, int]:
    """The value that starts `rest`, and how many following lines it took."""
    if not rest or rest[0] not in "'\"":
        return rest.split(" #", 1)[0].rstrip(), 0
    quote, text, used = rest[0], rest[1:], 0
    while True:
        end = _closing(text, quote)
        if end >= 0:
            if text[end + 1:].strip() and not text[end + 1:].strip().startswith("#"):
                raise DotenvError(f"line {number + used}: unexpected text after the closing quote")
            body = text[:end]
            return (body if quote == "'" else _unescape(body)), used
        if used == len(following):
            raise DotenvError(f"line {number}: the quoted value is never closed")
        text += "\n" + following[used]
        used += 1


def _closing(text: str, quote: str) -> int:
    index = 0
    while index < len(text):
        if quote == '"' and text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
            return index
        index += 1
    return -1


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), body, flags=re.DOTALL)
