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

import codecs
import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterator
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

    @classmethod
    def at(cls, reason: str, byte: int, line: int, column: int) -> TextInputError:
        """The error at a place already counted (a text read a window at a time, see JsonCursor)."""
        error = cls(reason, None, byte)
        error.line, error.column = line, column
        error.args = (f"{reason} {error.where()}",)
        return error

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
    except (ValueError, RecursionError) as exc:
        raise _failure(text, exc) from None


def _failure(text: str, exc: ValueError | RecursionError) -> TextInputError:
    """The TextInputError for json.loads(text) failing with `exc`."""
    if isinstance(exc, json.JSONDecodeError):
        return TextInputError(f"not valid JSON: {exc.msg}", text, _byte(text, exc.pos), exc.pos)
    if isinstance(exc, RecursionError):
        char = _deepest(text)
        return TextInputError("JSON nested too deeply for vmig", text, _byte(text, char), char)
    found = _LONG_NUMBER.search(text)  # int() refuses a number of more than MAX_DIGITS digits
    if found is None:
        return TextInputError(f"not valid JSON: {exc}", text, 0, 0)
    return TextInputError(f"a number of {len(found.group().lstrip('-'))} digits (at most {MAX_DIGITS})", text,
                          _byte(text, found.start()), found.start())


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


# ---------------------------------------------------------------- a JSON text read a window at a time

#: what a cursor reads at once (from a sixty-fourth of it, doubling: many short arrays each read
#: from their own place stay cheap); what it has passed is let go at each read
_WINDOW = 1 << 20
#: json stops this close to the end of what it was given only when the text may go on (a number
#: or a literal cut short, an escape, an unterminated string): read more and parse again
_MARGIN = 64
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
#: texts that put json's parser where a cursor stands, so that it names the error found there
_STATE = {"object": "{", "key": '{"k"', "member": '{"k":0', "next key": '{"k":0,', "element": "[0", "end": "0"}

Read = Callable[[int, int], bytes]  # (byte offset, length) -> the bytes there


def check_utf8(read: Read, size: int, chunk: int = _WINDOW) -> None:
    """Raise decode_utf8's TextInputError if the `size` bytes `read` gives are not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for at in range(0, size, chunk) or (0,):
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(read(at, min(chunk, size - at)), final=at + chunk >= size)
        except UnicodeDecodeError as exc:
            start = at - pending + exc.start
            raise TextInputError(f"not UTF-8 text ({exc.reason}: {read(start, 4)!r})", None, start) from None


class JsonCursor:
    """A place in a JSON text of `size` UTF-8 bytes (checked by check_utf8), read through a window:
    the structure (objects, arrays) a token at a time, each value it asks for whole by json's own
    parser. Errors are json.loads's on the whole text, as TextInputErrors (see loads).

        cursor = JsonCursor(read, size)
        if cursor.peek() == "{":
            for key in cursor.members():   # each key, then the caller reads its value
                value = cursor.value()
        cursor.end()                      # nothing but white space left
    """

    def __init__(self, read: Read, size: int, at: tuple[int, int] = (0, 0)) -> None:
        self._read, self.size = read, size
        self.base_char, self.base_byte = at  # where buf[0] is in the text: character, byte
        self.next_byte = at[1]  # the first byte not read yet
        self.buf, self.i = "", 0
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.eof = self.next_byte >= size
        self._window = _WINDOW >> 6

    def start(self) -> None:
        """At the text's start: refuse a byte-order mark as json.loads does."""
        if self.peek() == "\ufeff":
            try:
                json.loads("\ufeff")
            except json.JSONDecodeError as exc:
                raise self.error(f"not valid JSON: {exc.msg}", 0) from None

    def mark(self) -> tuple[int, int]:
        """Where the cursor is (character, byte): a JsonCursor made with it starts there."""
        done = self.buf[:self.i]
        return self.base_char + self.i, self.base_byte + (len(done) if done.isascii() else len(done.encode()))

    def _more(self) -> None:
        """Let go of what was passed; read on (as much again as is held, so a long value is parsed a
        few times, not once a window)."""
        if self.i:
            self.base_char, self.base_byte = self.mark()
            self.buf, self.i = self.buf[self.i:], 0
        want = min(max(self._window, len(self.buf)), self.size - self.next_byte)
        self._window = min(2 * self._window, _WINDOW)
        data = self._read(self.next_byte, want)
        self.next_byte += len(data)
        self.eof = self.next_byte >= self.size or not data
        self.buf += self._decoder.decode(data, final=self.eof)

    def peek(self) -> str:
        """The next character that is not white space ('' at the end), not taken."""
        c = self.buf[self.i:self.i + 1]
        if c and c not in " \t\n\r":
            return c
        while True:
            self.i = _WS.match(self.buf, self.i).end()
            if self.i < len(self.buf) or self.eof:
                return self.buf[self.i:self.i + 1]
            self._more()

    def take(self) -> str:
        c = self.peek()
        self.i += 1
        return c

    def value(self) -> Any:
        """The value that starts here, parsed whole."""
        if self.i >= len(self.buf) or self.buf[self.i] in " \t\n\r":
            self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.i)
            except json.JSONDecodeError as exc:
                if not self.eof and (exc.pos >= len(self.buf) - _MARGIN or exc.msg.startswith("Unterminated")):
                    self._more()
                    continue
                raise self.error(f"not valid JSON: {exc.msg}", self.base_char + exc.pos) from None
            except (ValueError, RecursionError) as exc:
                raise self._whole_failure(exc) from None
            if end > len(self.buf) - _MARGIN and not self.eof:
                self._more()
                continue
            self.i = end
            return value

    def members(self) -> Iterator[str]:
        """An object's keys (the cursor at its '{'); the caller reads each key's value before the next."""
        self.take()
        if self.peek() == "}":
            self.i += 1
            return
        state = "object"
        while True:
            if self.peek() != '"':
                raise self._expected(state)
            key = self.value()
            if self.peek() != ":":
                raise self._expected("key")
            self.i += 1
            yield key
            c = self.peek()
            if c == "}":
                self.i += 1
                return
            if c != ",":
                raise self._expected("member")
            self.i += 1
            state = "next key"

    def elements(self) -> Iterator[int]:
        """An array's indexes (the cursor at its '['); the caller reads each element before the next."""
        self.take()
        if self.peek() == "]":
            self.i += 1
            return
        index = 0
        while True:
            yield index
            c = self.buf[self.i:self.i + 1]
            if c != "," and c != "]":
                c = self.peek()
            if c == "]":
                self.i += 1
                return
            if c != ",":
                raise self._expected("element")
            self.i = _WS.match(self.buf, self.i + 1).end()
            index += 1

    def end(self) -> None:
        """Nothing but white space is left."""
        if self.peek():
            raise self._expected("end")

    def _expected(self, state: str) -> TextInputError:
        """json's error for the text here, after what `state` names (_STATE)."""
        while len(self.buf) - self.i < _MARGIN and not self.eof:
            self._more()
        prefix = _STATE[state]
        try:
            json.loads(prefix + self.buf[self.i:self.i + _MARGIN])
        except json.JSONDecodeError as exc:
            return self.error(f"not valid JSON: {exc.msg}", self.base_char + self.i + exc.pos - len(prefix))
        return self.error("not valid JSON", self.base_char + self.i)

    def error(self, reason: str, char: int) -> TextInputError:
        """`reason` at character `char` of the text, with its line, column and byte (counted from the start)."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        chars = byte = lines = 0
        line_start = 0  # the character after the last newline before `char`
        for at in range(0, self.size, _WINDOW):
            piece = decoder.decode(self._read(at, min(_WINDOW, self.size - at)), final=at + _WINDOW >= self.size)
            part = piece[:char - chars]
            lines += part.count("\n")
            if "\n" in part:
                line_start = chars + part.rindex("\n") + 1
            byte += len(part.encode())
            chars += len(part)
            if len(part) < len(piece):
                break
        return TextInputError.at(reason, byte, lines + 1, char - line_start + 1)

    def _whole_failure(self, exc: ValueError | RecursionError) -> TextInputError:
        """Errors loads finds by looking at the whole text (how deep it goes, the first long number)."""
        return _failure(self._read(0, self.size).decode("utf-8"), exc)


class JsonArray:
    """An array left where it is in the text (see read): each iteration reads its elements from
    there again, one at a time, each as its `shape` says. `JsonArray.here(cursor)`: the array
    the cursor stands at, read once by that cursor as it is iterated (`drain` passes over what
    was not)."""

    def __init__(self, read: Read, size: int, at: tuple[int, int], shape: Any) -> None:
        self._read, self.size, self.at, self.shape = read, size, at, shape
        self._cursor: JsonCursor | None = None
        self._elements: Iterator[int] | None = None

    @classmethod
    def here(cls, cursor: JsonCursor) -> JsonArray:
        array = cls(cursor._read, cursor.size, cursor.mark(), None)
        array._cursor = cursor
        return array

    def drain(self) -> None:
        for _ in self:
            pass

    def __iter__(self) -> Iterator[Any]:
        if self._cursor is not None:  # read once, in place
            cursor = self._cursor
            if self._elements is None:
                self._elements = cursor.elements()
            for _ in self._elements:
                yield cursor.value()
            return
        cursor = JsonCursor(self._read, self.size, self.at)
        if self.shape is None:
            for _ in cursor.elements():
                yield cursor.value()
        else:
            for _ in cursor.elements():
                yield read(cursor, self.shape)


def read(cursor: JsonCursor, shape: Any = None) -> Any:
    """The value at `cursor`, with the arrays that `shape` marks as long left in the text: a shape is
    None (the value whole), {key: shape} (an object's members) or [shape] (a long array, a JsonArray
    of elements of that shape, passed over here)."""
    if shape is None:
        return cursor.value()
    c = cursor.peek()
    if isinstance(shape, dict) and c == "{":
        return {key: read(cursor, shape.get(key)) for key in cursor.members()}
    if isinstance(shape, list) and c == "[":
        array = JsonArray(cursor._read, cursor.size, cursor.mark(), shape[0])
        if shape[0] is None:
            for _ in cursor.elements():
                cursor.value()
        else:
            for _ in cursor.elements():
                read(cursor, shape[0])
        return array
    return cursor.value()
