"""Text inputs (JSON and TOML files: decode documents, --state, sidecars, goldens, vmig-golden.toml,
-dump-vmstate files, a stream's vmdesc): every way such a file can be bad is one error naming the
file and the place, never a crash.

Python's parsers fail in ways their callers rarely all catch: bytes that are not UTF-8
(UnicodeDecodeError), an integer of more than 4300 digits (a plain ValueError from int()),
nesting deeper than the interpreter's stack (RecursionError), and malformed text. Here
each becomes a `TextInputError` with the reason, the line and column and the byte offset.

    doc = read_json("dump.json")                       # InputError: dump.json: ... at line 3, column 7 (byte 41)
    doc = parse_json(raw, "vmdesc")                    # bytes or str
    try: loads(raw) except TextInputError as e: ...    # e.reason, e.byte, e.line, e.column

Imports: errors.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError, VmigError

#: the digits CPython turns into an int from text (sys.int_info.str_digits_check_threshold's default)
MAX_DIGITS = 4300
_LONG_NUMBER = re.compile(r"-?\d{%d,}" % (MAX_DIGITS + 1))
#: tokens that open or close a nesting level, and strings (skipped whole, brackets inside them are text)
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


class TextInputError(ValueError):
    """Why a text could not be parsed, and where (`byte` counts bytes of the UTF-8 input)."""

    def __init__(self, reason: str, text: str | None, byte: int, char: int | None = None) -> None:
        self.reason, self.byte = reason, byte
        if text is not None and char is not None:
            self.line = text.count("\n", 0, char) + 1
            self.column = char - (text.rfind("\n", 0, char) + 1) + 1
        else:
            self.line = self.column = None
        super().__init__(f"{reason} {self.where()}")

    def where(self) -> str:
        if self.line is None:
            return f"at byte {self.byte}"
        return f"at line {self.line}, column {self.column} (byte {self.byte})"


def _byte(text: str, char: int) -> int:
    return len(text[:char].encode("utf-8", "surrogatepass"))


def decode_utf8(data: bytes | str) -> str:
    """The text of `data`; bytes that are not UTF-8 are a TextInputError at their offset."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextInputError(f"not UTF-8 text ({exc.reason}: {exc.object[exc.start:exc.start + 4]!r})", None,
                             exc.start) from None


def _deepest(text: str) -> int:
    """Where the nesting goes deepest (the character that opens the deepest level)."""
    depth, best, where = 0, -1, 0
    for token in _NESTING.finditer(text):
        c = token.group()
        if c in "[{":
            depth += 1
            if depth > best:
                best, where = depth, token.start()
        elif c in "]}":
            depth -= 1
    return where


def loads(data: bytes | str) -> Any:
    """json.loads, with every failure a TextInputError (see the module docstring)."""
    text = decode_utf8(data)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TextInputError(f"not valid JSON: {exc.msg}", text, _byte(text, exc.pos), exc.pos) from None
    except RecursionError:
        char = _deepest(text)
        raise TextInputError("JSON nested too deeply for vmig", text, _byte(text, char), char) from None
    except ValueError as exc:  # int() refuses a number of more than MAX_DIGITS digits
        found = _LONG_NUMBER.search(text)
        if found is None:
            raise TextInputError(f"not valid JSON: {exc}", text, 0, 0) from None
        raise TextInputError(f"a number of {len(found.group().lstrip('-'))} digits (at most {MAX_DIGITS})", text,
                             _byte(text, found.start()), found.start()) from None


def parse_json(data: bytes | str, name: str, error: type[VmigError] = InputError) -> Any:
    """loads, with a failure `error`("NAME: reason at line L, column C (byte B)")."""
    try:
        return loads(data)
    except TextInputError as exc:
        raise error(f"{name}: {exc}") from None


def read_bytes(path: str | Path, name: str | None = None) -> bytes:
    """A file's bytes ('-': stdin), with a failure an InputError naming it."""
    shown = name or str(path)
    try:
        if str(path) == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read {shown}: {exc.strerror or exc}") from None


def read_text(path: str | Path, name: str | None = None, error: type[VmigError] = InputError) -> str:
    """A UTF-8 text file ('-': stdin); not UTF-8 is `error` naming the file and the byte."""
    shown = name or str(path)
    try:
        return decode_utf8(read_bytes(path, shown))
    except TextInputError as exc:
        raise error(f"{shown}: {exc}") from None


def read_json(path: str | Path, name: str | None = None, error: type[VmigError] = InputError) -> Any:
    """A JSON file ('-': stdin), parsed; see parse_json."""
    shown = name or str(path)
    return parse_json(read_bytes(path, shown), shown, error)


def parse_toml(data: bytes | str, name: str, error: type[VmigError] = InputError) -> dict[str, Any]:
    """tomllib.loads, with a failure (malformed, not UTF-8, too deep, a huge integer) `error` naming the file."""
    try:
        text = decode_utf8(data)
    except TextInputError as exc:
        raise error(f"{name}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message says the line and column
        raise error(f"{name} is not valid TOML: {exc}") from None
    except RecursionError:
        char = _deepest(text)
        where = TextInputError("", text, _byte(text, char), char).where()
        raise error(f"{name}: TOML nested too deeply for vmig {where}") from None
    except ValueError as exc:
        found = re.search(r"\d[\d_]{%d,}" % MAX_DIGITS, text)
        if found is None:
            raise error(f"{name} is not valid TOML: {exc}") from None
        where = TextInputError("", text, _byte(text, found.start()), found.start()).where()
        raise error(f"{name}: a number of more than {MAX_DIGITS} digits {where}") from None


def read_toml(path: str | Path, error: type[VmigError] = InputError) -> dict[str, Any]:
    return parse_toml(read_bytes(path), str(path), error)
