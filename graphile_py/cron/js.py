"""JavaScript semantics that graphile-worker's crontab inherits from Node. No I/O here.

A crontab is read by Node, so what counts as whitespace, how a query string splits, how
a number prints and how an object orders its keys are JavaScript's rules, not Python's.
The crontab parser (:mod:`graphile_py.cron.crontab`) and the scheduler use these
helpers so that one crontab file means the same thing, and stores the same bytes, in
both runtimes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "JS_ANY",
    "JS_NOT_SPACE",
    "JS_SPACE",
    "js_int",
    "js_json",
    "js_key_order",
    "js_trim",
    "js_trim_start",
    "js_value",
    "query_string",
]

# JavaScript's idea of whitespace (String.prototype.trim and the regex class \s), which is
# not quite Python's: it includes U+FEFF and excludes U+001C-U+001F and U+0085.
_WS = "\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_WS_CHARS = frozenset(
    "\t\n\x0b\x0c\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_WS_STRING = "".join(sorted(_WS_CHARS))

#: Regex for one character of JavaScript's ``\s``.
JS_SPACE = f"[{_WS}]"
#: Regex for one character of JavaScript's ``\S``.
JS_NOT_SPACE = f"[^{_WS}]"
#: Regex for JavaScript's ``.``: any character but a line terminator.
JS_ANY = "[^\n\r\u2028\u2029]"

# Node's querystring.parse stops after this many pairs.
_MAX_QUERY_KEYS = 1000
_MAX_SAFE_INTEGER = 2**53 - 1
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def js_trim(text: str) -> str:
    """``text.trim()``: strip JavaScript whitespace from both ends."""
    return text.strip(_WS_STRING)


def js_trim_start(text: str) -> str:
    """``text.trimStart()``: strip JavaScript whitespace from the start."""
    return text.lstrip(_WS_STRING)


def query_string(text: str, column: int) -> list[tuple[str, list[str], int]]:
    """Node's ``querystring.parse``: ``[(key, [values...], column of key)]`` in key order.

    Pairs split on ``&`` then the first ``=``; ``+`` is a space; bad percent escapes stay
    as they are; empty pairs are skipped; at most 1000 pairs are read. As with any
    JavaScript object, integer-like keys come first, in numeric order. ``column`` is
    where ``text`` starts; a repeated key reports the column of its last occurrence.
    """
    found: dict[str, tuple[list[str], int]] = {}
    offset = 0
    pairs = 0
    for segment in text.split("&"):
        segment_column = column + offset
        offset += len(segment) + 1
        if not segment:
            continue
        pairs += 1
        if pairs > _MAX_QUERY_KEYS:
            break
        raw_key, _, raw_value = segment.partition("=")
        key = unquote_plus(raw_key, errors="replace")
        value = unquote_plus(raw_value, errors="replace")
        if key in found:
            found[key][0].append(value)
            found[key] = (found[key][0], segment_column)
        else:
            found[key] = ([value], segment_column)
    return [(key, *found[key]) for key in js_key_order(found)]


def js_json(value: Any) -> str:
    """``value`` as JavaScript's ``JSON.stringify`` would write it (compact).

    Object keys that look like array indices come first in numeric order, as in any
    JavaScript object; whole numbers are written without ``.0``; numbers beyond 2**53
    lose precision as JavaScript numbers do; NaN and infinities become ``null``. Accepts
    dicts (str or int keys), lists, tuples, str, int, float, bool and None; raises
    TypeError on anything else.
    """
    parts: list[str] = []
    _write_js_json(value, parts, 0)
    return "".join(parts)


def _write_js_json(value: Any, out: list[str], depth: int) -> None:
    if depth > 500:
        raise ValueError("the payload is nested too deeply")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_js_string(value))
    elif isinstance(value, int):
        out.append(js_int(value))
    elif isinstance(value, float):
        out.append(_js_float(value))
    elif isinstance(value, Mapping):
        keyed: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
            keyed[key if isinstance(key, str) else str(key)] = item
        out.append("{")
        for index, key in enumerate(js_key_order(keyed)):
            if index:
                out.append(",")
            out.append(_js_string(key))
            out.append(":")
            _write_js_json(keyed[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write_js_json(item, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"object of type {type(value).__name__} is not JSON-serialisable")


def _js_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    # JSON.stringify escapes lone surrogates (well-formed JSON.stringify, ES2019).
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


def js_int(value: int) -> str:
    """An integer as JavaScript prints it: exact up to 2**53, a rounded double beyond."""
    if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
        return str(value)
    return _js_float(float(value))


def _js_float(value: float) -> str:
    """ECMAScript Number::toString for a double (NaN and infinities → ``null``)."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-tripping digits, as JavaScript does.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)
    k = len(digits)
    n = exponent + len("".join(map(str, digit_tuple)))  # value = 0.digits x 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def js_key_order(keys: Mapping[str, Any]) -> list[str]:
    """JavaScript's property order: array-index keys ascending, then insertion order."""
    indices = sorted(
        (key for key in keys if _ARRAY_INDEX.fullmatch(key) and int(key) < 2**32 - 1), key=int
    )
    index_set = set(indices)
    return indices + [key for key in keys if key not in index_set]


def js_value(value: Any) -> Any:
    """A parsed JSON5 value as JavaScript holds it: keys in JS order, UTF-16 pairs joined."""
    if isinstance(value, str):
        return _join_surrogates(value)
    if isinstance(value, dict):
        joined = {_join_surrogates(key): js_value(item) for key, item in value.items()}
        return {key: joined[key] for key in js_key_order(joined)}
    if isinstance(value, list):
        return [js_value(item) for item in value]
    return value


def _join_surrogates(text: str) -> str:
    if not _LONE_SURROGATE.search(text):
        return text
    return _SURROGATE_PAIR.sub(
        lambda m: chr(0x10000 + ((ord(m.group()[0]) - 0xD800) << 10) + ord(m.group()[1]) - 0xDC00),
        text,
    )
