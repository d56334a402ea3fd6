"""Bounded JSON decoding: depth and size limits checked before any recursion can happen.

Python's decoder recurses once per nesting level, so `[[[[…` a few kilobytes long raises RecursionError — not
ValueError — and every caller that only expects ValueError answers 500, drops a batch, or leaves a stream entry
unacknowledged. `loads` turns every way a text can fail to be acceptable JSON into `JSONInputError` (a
ValueError): invalid syntax or encoding, too deep, too long, or a non-finite number (NaN and Infinity are not
JSON, RFC 8259 §6; nor is a number too large for a double, such as 1e999, which Python would read as
infinity). `BoundedJSONProvider` makes Flask's `request.get_json()` use it, so a Flask app has one
JSON decoder for all its routes.
"""

from __future__ import annotations

import json
import math
import re

from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 32  # no document the platform accepts nests deeper than a handful of levels
MAX_BYTES = 1 << 20  # a caller with a tighter limit (an HTTP body cap) applies it before this

# A string (with its escapes) or one bracket: brackets inside strings are skipped by matching the string first.
# A string that is never closed runs to the end of the text (`\Z`), and a lone backslash may end it (`\\.?`): the
# string alternative then cannot fail once it has started, so the scan never restarts inside a string it gave up on.
# With `"…"` alone, every escaped quote of an unclosed string became a new start scanning to the end: quadratic,
# 50 s for 100 KB of `a\"`.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.?)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


class JSONInputError(ValueError):
    """The text is not JSON this platform accepts; `reason` is one of syntax, depth, size, number."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _refuse_constant(name: str):
    raise JSONInputError("number", f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError("number", "A number is too large to be represented.")
    return value


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise JSONInputError if brackets nest deeper than `max_depth` (linear, no recursion)."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper than the number of openers: the common case costs two counts
    depth = 0
    for match in _TOKENS.finditer(text):
        lexeme = match.group()
        if lexeme == "[" or lexeme == "{":
            depth += 1
            if depth > max_depth:
                raise JSONInputError("depth", f"The JSON nests deeper than {max_depth} levels.")
        elif lexeme == "]" or lexeme == "}":
            depth -= 1


def loads(data: str | bytes | bytearray, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES):
    """Decode one JSON document from outside, or raise JSONInputError saying why not."""
    if len(data) > max_bytes or (isinstance(data, str) and _utf8_length(data, max_bytes) > max_bytes):
        raise JSONInputError("size", f"The JSON is longer than {max_bytes} bytes.")
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError("syntax", "The JSON is not UTF-8.") from exc
    check_depth(data, max_depth)
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JSONInputError:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError stays possible only if max_depth is set absurdly
        raise JSONInputError("syntax", "The text is not valid JSON.") from exc


def _utf8_length(text: str, max_bytes: int) -> int:
    if len(text) * 4 <= max_bytes:  # short enough whatever its characters (4 bytes at most each): no encoding
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with `loads` bounded as above (`request.get_json()` sees a ValueError, i.e. 400)."""

    def loads(self, s: str | bytes, **kwargs):
        return loads(s)
