"""Where a JSON5 text goes wrong, reported as the npm ``json5`` package reports it.

The PyPI ``json5`` package parses crontab payloads into values. Its error positions,
though, come from a PEG parser and often point one character past the real culprit, so
crontab errors would not read like graphile-worker's. This checker walks the JSON5
grammar and stops at the first character that cannot continue a valid document, which is
where npm's ``json5`` lexer stops too, and words the error the same way:
``JSON5: invalid character '=' at 1:13`` or ``JSON5: invalid end of input at 1:2``.

It builds no values; run it before ``json5.loads``.
"""

from __future__ import annotations

import unicodedata

__all__ = ["Json5SyntaxError", "check_json5"]

_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_LINE_TERMINATORS = frozenset("\n\r\u2028\u2029")
_SIMPLE_ESCAPES = frozenset("bfnrtv'\"\\")
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


def check_json5(text: str) -> None:
    """Raise :class:`Json5SyntaxError` if ``text`` is not one JSON5 value."""
    _Checker(text).document()


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


class _Checker:
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

    # -- reporting, as npm json5 counts lines and columns --------------------------------

    def _error(self, bad: _Bad) -> Json5SyntaxError:
        line, column = 1, 0
        end = min(bad.position + 1, len(self.text))
        for char in self.text[:end]:
            if char == "\n":
                line, column = line + 1, 0
            else:
                column += 2 if ord(char) > 0xFFFF else 1  # JavaScript counts UTF-16 units
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

    # -- the grammar ----------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def expect(self, allowed: str | frozenset[str]) -> str:
        char = self.peek()
        if not char or char not in allowed:
            raise _Bad(self.i)
        self.i += 1
        return char

    def space(self) -> None:
        while True:
            char = self.peek()
            if char and _is_space(char):
                self.i += 1
            elif char == "/":
                self.i += 1
                kind = self.expect("*/")
                if kind == "/":
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
        elif char in ("'", '"') and char:
            self.string()
        elif char == "n":
            self.literal("null")
        elif char == "t":
            self.literal("true")
        elif char == "f":
            self.literal("false")
        elif char in ("+", "-") and char:
            self.i += 1
            self.unsigned_number()
        else:
            self.unsigned_number()

    def members(self, close: str, member: object) -> None:
        assert callable(member)
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
        if self.peek() in ("'", '"') and self.peek():
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
                valid = _is_id_start(decoded) if first else _is_id_continue(decoded)
                if not valid:
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
            if self.peek() in ("x", "X") and self.peek():
                self.i += 1
                self.expect(_HEX)
                while self.peek() and self.peek() in _HEX:
                    self.i += 1
            else:
                self.fraction_and_exponent()
        elif char == ".":
            self.i += 1
            self.expect(_DIGITS)
            self.digits()
            self.exponent()
        else:
            self.expect(_DIGITS)
            self.digits()
            self.fraction_and_exponent()

    def fraction_and_exponent(self) -> None:
        if self.peek() == ".":
            self.i += 1
            self.digits()
        self.exponent()

    def digits(self) -> None:
        while self.peek() and self.peek() in _DIGITS:
            self.i += 1

    def exponent(self) -> None:
        if self.peek() in ("e", "E") and self.peek():
            self.i += 1
            if self.peek() in ("+", "-") and self.peek():
                self.i += 1
            self.expect(_DIGITS)
            self.digits()

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
            if self.peek() and self.peek() in _DIGITS:
                raise _Bad(self.i)
        elif char == "x":
            self.expect(_HEX)
            self.expect(_HEX)
        elif char == "u":
            for _ in range(4):
                self.expect(_HEX)
        elif char in _DIGITS:
            raise _Bad(self.i - 1)
