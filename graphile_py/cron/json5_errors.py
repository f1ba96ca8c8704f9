"""JSON5 payloads: parsed by the ``json5`` library, rejected where and as npm's json5 does.

:func:`parse_json5` returns the PyPI ``json5`` package's value. When the text is not
JSON5, the error must read as graphile-worker's (npm json5 2.2) does, for example
``JSON5: invalid character '=' at 1:13``, so that a crontab fails with one message in
both runtimes. The library cannot say that, for three reasons:

* Its position is the *farthest* point its backtracking parser reached, and its
  whitespace and identifier rules read a character before testing its Unicode category.
  So it often names the character after the culprit: for ``{invalidJson=true}`` it says
  ``Unexpected "t" at column 14`` where npm says ``invalid character '=' at 1:13``.
* It accepts escapes in unquoted keys whatever they decode to: ``{\\u0031: 1}`` parses as
  ``{"1": 1}``, while npm rejects it (``invalid identifier character at 1:2``).
* Some bad numbers fail in conversion, with no position: ``{a: 1e}`` gives ``could not
  convert string to float: '1e'``; npm says ``invalid character '}' at 1:7``.

So the smallest piece kept here is :class:`_Locator`: it walks the JSON5 grammar, builds
no values, and stops where npm's lexer stops. Run on every payload (a text is accepted
only if both agree), it places the error; the library still does the parsing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import json5

__all__ = ["Json5SyntaxError", "parse_json5"]

_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_LINE_TERMINATORS = frozenset("\n\r\u2028\u2029")
_SIMPLE_ESCAPES = frozenset("bfnrtv'\"\\")
# How npm json5 names a character in "invalid character '...'".
_CHAR_NAMES = {
    "'": "\\'",
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\0": "\\0",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


class Json5SyntaxError(ValueError):
    """A JSON5 syntax error: ``position`` is the index of the bad character (or the length
    of the text, at end of input); ``column`` is 1-based, in the text's own characters."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position
        self.column = position + 1


def parse_json5(text: str) -> Any:
    """``text`` parsed by the ``json5`` library, if npm's json5 would accept it too.

    Raises :class:`Json5SyntaxError` with npm's message and position when npm's json5
    rejects the text; when only the library rejects it (rare: it is stricter about some
    Unicode in unquoted keys), with ``JSON5: <the library's message>`` at position 0,
    chained to the library's exception.
    """
    _Locator(text).document()
    try:
        return json5.loads(text)
    except Exception as exc:  # json5 raises ValueError, or RecursionError when deep
        raise Json5SyntaxError(f"JSON5: {exc}", 0) from exc


def _is_space(char: str) -> bool:
    return (
        char in "\t\v\f \xa0\ufeff"
        or char in _LINE_TERMINATORS
        or (unicodedata.category(char) == "Zs")
    )


def _is_id_start(char: str) -> bool:
    return char in "$_" or char.isidentifier()


def _is_id_continue(char: str) -> bool:
    return char in "$_\u200c\u200d" or ("a" + char).isidentifier()


class _Bad(Exception):
    def __init__(self, position: int, identifier: bool = False) -> None:
        self.position = position
        self.identifier = identifier


class _Locator:
    """Walks one JSON5 document; raises :class:`Json5SyntaxError` where npm's lexer stops."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def document(self) -> None:
        try:
            self.space()
            self.value()
            self.space()
            if self.i < len(self.text):
                raise _Bad(self.i)
        except _Bad as bad:
            raise self._error(bad) from None
        except RecursionError:
            raise Json5SyntaxError("JSON5: nested too deeply", self.i) from None

    def _error(self, bad: _Bad) -> Json5SyntaxError:
        # npm counts columns in UTF-16 units, and a newline moves to column 0 of the next
        # line even when the newline itself is the bad character.
        line, column = 1, 0
        end = min(bad.position + 1, len(self.text))
        for char in self.text[:end]:
            if char == "\n":
                line, column = line + 1, 0
            else:
                column += 2 if ord(char) > 0xFFFF else 1
        if bad.position >= len(self.text):
            return Json5SyntaxError(
                f"JSON5: invalid end of input at {line}:{column + 1}", len(self.text)
            )
        if bad.identifier:
            return Json5SyntaxError(
                f"JSON5: invalid identifier character at {line}:{column}", bad.position
            )
        char = self.text[bad.position]
        name = _CHAR_NAMES.get(char) or (f"\\x{ord(char):02x}" if char < " " else char)
        return Json5SyntaxError(
            f"JSON5: invalid character '{name}' at {line}:{column}", bad.position
        )

    # -- the grammar, as far as it decides where an error is ---------------------------

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def at(self, allowed: str | frozenset[str]) -> bool:
        char = self.peek()
        return bool(char) and char in allowed

    def expect(self, allowed: str | frozenset[str]) -> str:
        if not self.at(allowed):
            raise _Bad(self.i)
        self.i += 1
        return self.text[self.i - 1]

    def space(self) -> None:
        while True:
            char = self.peek()
            if char and _is_space(char):
                self.i += 1
            elif char == "/":
                self.i += 1
                if self.expect("*/") == "/":
                    while self.peek() and self.peek() not in _LINE_TERMINATORS:
                        self.i += 1
                else:
                    end = self.text.find("*/", self.i)
                    if end < 0:
                        raise _Bad(len(self.text))
                    self.i = end + 2
            else:
                return

    def value(self) -> None:
        char = self.peek()
        if char == "{":
            self.members("}", self.property)
        elif char == "[":
            self.members("]", self.value)
        elif self.at("'\""):
            self.string()
        elif char in ("n", "t", "f"):
            self.literal({"n": "null", "t": "true", "f": "false"}[char])
        else:
            if self.at("+-"):
                self.i += 1
            self.unsigned_number()

    def members(self, close: str, member: Callable[[], None]) -> None:
        self.i += 1
        self.space()
        if self.peek() == close:
            self.i += 1
            return
        while True:
            member()
            self.space()
            if self.expect("," + close) == close:
                return
            self.space()
            if self.peek() == close:
                self.i += 1
                return

    def property(self) -> None:
        if self.at("'\""):
            self.string()
        else:
            self.identifier()
        self.space()
        self.expect(":")
        self.space()
        self.value()

    def identifier(self) -> None:
        first = True
        while True:
            char = self.peek()
            if char == "\\":
                escape_start = self.i
                self.i += 1
                self.expect("u")
                start = self.i
                for _ in range(4):
                    self.expect(_HEX)
                decoded = chr(int(self.text[start : self.i], 16))
                if not (_is_id_start(decoded) if first else _is_id_continue(decoded)):
                    raise _Bad(escape_start, identifier=True)
            elif char and (_is_id_start(char) if first else _is_id_continue(char)):
                self.i += 1
            elif first:
                raise _Bad(self.i)
            else:
                return
            first = False

    def literal(self, word: str) -> None:
        for char in word:
            self.expect(char)

    def unsigned_number(self) -> None:
        char = self.peek()
        if char == "I":
            self.literal("Infinity")
        elif char == "N":
            self.literal("NaN")
        elif char == "0":
            self.i += 1
            if self.at("xX"):
                self.i += 1
                self.expect(_HEX)
                self.skip(_HEX)
            else:
                self.fraction_and_exponent()
        elif char == ".":
            self.i += 1
            self.expect(_DIGITS)
            self.skip(_DIGITS)
            self.exponent()
        else:
            self.expect(_DIGITS)
            self.skip(_DIGITS)
            self.fraction_and_exponent()

    def fraction_and_exponent(self) -> None:
        if self.peek() == ".":
            self.i += 1
            self.skip(_DIGITS)
        self.exponent()

    def skip(self, allowed: frozenset[str]) -> None:
        while self.at(allowed):
            self.i += 1

    def exponent(self) -> None:
        if self.at("eE"):
            self.i += 1
            if self.at("+-"):
                self.i += 1
            self.expect(_DIGITS)
            self.skip(_DIGITS)

    def string(self) -> None:
        quote = self.text[self.i]
        self.i += 1
        while True:
            char = self.peek()
            if not char:
                raise _Bad(self.i)
            self.i += 1
            if char == quote:
                return
            if char in ("\n", "\r"):
                raise _Bad(self.i - 1)
            if char == "\\":
                self.escape()

    def escape(self) -> None:
        char = self.peek()
        if not char:
            raise _Bad(self.i)
        self.i += 1
        if char in _SIMPLE_ESCAPES or char in _LINE_TERMINATORS:
            if char == "\r" and self.peek() == "\n":
                self.i += 1
        elif char == "0":
            if self.at(_DIGITS):
                raise _Bad(self.i)
        elif char == "x":
            self.expect(_HEX)
            self.expect(_HEX)
        elif char == "u":
            for _ in range(4):
                self.expect(_HEX)
        elif char in _DIGITS:
            raise _Bad(self.i - 1)
