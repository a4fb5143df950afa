"""`vmig encode --from-json`: a `vmig decode --json` document back into its stream, in its container.

The document names its source (source.path, source.size): RAM pages and big buffers it does not
embed are copied from there, after checking that the source has the size the document was
decoded from. The container the stream came in (libvirt save image, compression; a qcow2
snapshot's stream is written bare) is rebuilt around it unless `bare`.

The document is read as it is written, so memory stays flat in its size (a million RAM runs
are a 124 MB document): a cursor (textin.JsonCursor) walks its structure, and each record, and
each item of a RAM section, is parsed and checked (jsonform's reader) when the encoder comes to
it, then let go. Before the records come the keys that say where the stream goes (vmig, source,
container: `vmig decode --json` writes them first). Where that does not hold, or anything is
wrong, the document is read again, whole but a record and an item at a time, by the checks in
the order jsonform.from_json makes them: every error is the one loading it whole gives. A
document from stdin or a pipe is copied to a temporary file first (source.spool). Nothing is
left at the output when anything fails (outfile).

Imports: errors, source (Source, writer, spool, limits), outfile, textin, ram.limits,
codec.jsonform, codec.encode.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import InputError, JsonFormError, VmigError
from ..outfile import output_file
from ..ram.limits import SMALLEST_RECORD, check_claim, default_max_ram
from ..source import Source
from ..source.writer import plan, wrapped
from ..textin import JsonArray, JsonCursor, TextInputError, check_utf8, read
from . import jsonform
from .encode import encode_records

#: keys that must be known before the first byte is written
_NEEDED_FIRST = ("vmig", "source", "container", "records")


class _SecondLook(Exception):
    """The document cannot be written as it is read (a key encode needs comes after the records,
    the top level is not an object): it is checked whole first, then written."""


class _Document:
    """The document's bytes by offset: a regular file where it is, anything else (stdin, a pipe)
    copied into a spool first."""

    def __init__(self, path: str) -> None:
        self.name, self.fd = path, -1
        self.spool: Any = None
        try:
            fd = sys.stdin.fileno() if path == "-" else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            st = os.fstat(fd)
            if path != "-" and stat.S_ISREG(st.st_mode):
                self.fd, self.size = fd, st.st_size
                return
            from ..source.limits import Limits  # only for a pipe: the spool loads libc (ctypes)
            from ..source.spool import Spool

            self.spool = Spool(f"the JSON document {path}", Limits.from_env())
            try:
                while data := os.read(fd, 1 << 20):
                    self.spool.append(data)
            finally:
                if path != "-":
                    os.close(fd)
            self.fd, self.size = self.spool.fd, self.spool.size
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None

    def read(self, offset: int, length: int) -> bytes:
        try:
            return os.pread(self.fd, length, offset)
        except OSError as exc:
            raise InputError(f"cannot read {self.name}: {exc.strerror or exc}") from None

    def cursor(self) -> JsonCursor:
        cursor = JsonCursor(self.read, self.size)
        cursor.start()
        return cursor

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
        elif self.fd >= 0:
            os.close(self.fd)


def encode_document(path: str, output: str, *, source_path: str | None = None, bare: bool = False,
                    note: Callable[[str], None] = lambda text: None,
                    check_output: Callable[[tuple[str, ...]], None] = lambda inputs: None) -> None:
    """Write the stream the JSON document at `path` describes to `output` (atomically).

    Args:
        source_path: the stream the document refers to (default: its source.path).
        bare: only the migration stream, not the container the document says it came in.
        note: told what the container rebuild cannot keep (source.writer.plan's notes).
        check_output: called with every input once the document names its source, so the caller
            can refuse an output that is one of them (outfile.check_output).
    """
    doc = _Document(path)
    noted: set[str] = set()

    def note_once(text: str) -> None:
        if text not in noted:
            noted.add(text)
            note(text)

    writer = _Writer(doc, output, source_path, bare, note_once, check_output)
    try:
        try:
            check_utf8(doc.read, doc.size)
        except TextInputError as exc:
            raise JsonFormError(f"{path}: {exc}") from None
        if output == "-" or (os.path.exists(output) and not os.path.isfile(output)):
            writer.write(_check(doc))  # what a reader of a pipe was given cannot be taken back
            return
        try:
            writer.write(None)
        except (_SecondLook, VmigError, TextInputError):
            # the document checked whole first, then written: the first error is the one loading
            # it whole gives (an error here may come of a key read after it was needed)
            writer.write(_check(doc))
    finally:
        doc.close()


def _check(doc: _Document) -> tuple[dict[str, Any], jsonform.Reader]:
    """Check the whole document as jsonform.from_json does (JsonFormError), keeping a record and an
    item at a time; (the document with its records left in the text, the reader, which counted the
    pages the runs write)."""
    try:
        cursor = doc.cursor()
        value = read(cursor, jsonform.LONG_ARRAYS)
        cursor.end()
    except TextInputError as exc:
        raise JsonFormError(f"{doc.name}: {exc}") from None
    reader = jsonform.Reader()
    obj, _ = jsonform.document(reader, value)
    for _ in reader.records(obj["records"]):
        pass
    reader.container(obj)
    return obj, reader


class _Writer:
    """encode_document's output: the checks made before writing, then the records as they are read."""

    def __init__(self, doc: _Document, output: str, source_path: str | None, bare: bool,
                 note: Callable[[str], None], check_output: Callable[[tuple[str, ...]], None]) -> None:
        self.doc, self.output, self.source_path, self.bare = doc, output, source_path, bare
        self.note, self.check_output = note, check_output

    def write(self, checked: tuple[dict[str, Any], jsonform.Reader] | None) -> None:
        """Write the stream. `checked`: the document was checked whole (_check); else it is read here
        once, as it is written, and anything unexpected raises (_SecondLook or the error)."""
        reader = jsonform.Reader(lazy=True, on_pages=lambda r: self.bound(r.pages, r.page_size))
        if checked is not None:
            obj = checked[0]
            records: Iterator[Any] = iter(obj["records"])
        else:
            try:
                cursor = self.doc.cursor()
                if cursor.peek() != "{":
                    raise _SecondLook
                obj = {}
                members = cursor.members()
                for key in members:
                    if key == "records":
                        break
                    obj[key] = cursor.value()
                else:
                    raise _SecondLook
                if cursor.peek() != "[":
                    raise _SecondLook
            except TextInputError as exc:
                raise JsonFormError(f"{self.doc.name}: {exc}") from None
            # the keys after the records are checked when they come (_rest), so the document
            # checks here see only those before
            obj["records"] = []
            records = self._rest(cursor, members, obj)
        _, source_info = jsonform.document(reader, obj)
        container = reader.container(obj)
        with self.source(source_info, container) as source:
            self.limit = default_max_ram()
            self.holds_size = max(source_info.get("size", 0), source.size if source is not None else 0)
            self.holds = self.holds_size // SMALLEST_RECORD
            if checked is not None:  # all of them, before writing, as encode does
                self.bound(checked[1].pages, checked[1].page_size)
            with output_file(self.output) as target, wrapped(target, None if self.bare else container) as out:
                encode_records(reader.records(records), out, source)
                if checked is None:
                    jsonform.document(reader, obj)  # the keys that came after the records

    def _rest(self, cursor: JsonCursor, members: Iterator[str], obj: dict[str, Any]) -> Iterator[Any]:
        """The records as they are read, then the rest of the document (its keys into `obj`)."""
        try:
            for _ in cursor.elements():
                yield from _record(cursor)
            for key in members:
                if key in _NEEDED_FIRST:
                    raise _SecondLook
                obj[key] = cursor.value()
            cursor.end()
        except TextInputError as exc:
            raise JsonFormError(f"{self.doc.name}: {exc}") from None

    def bound(self, pages: int, page_size: int) -> None:
        """Refuse page runs that write more than the stream can hold (check_claim), before writing them."""
        if pages <= self.holds or pages * page_size <= self.limit:  # check_claim's test, at each run
            return
        check_claim(pages, page_size, self.holds_size, self.limit, "the page runs write")

    def source(self, info: dict[str, Any], container: dict[str, Any] | None) -> _OpenSource:
        source_path = self.source_path or info.get("path")
        self.check_output(tuple(p for p in (self.doc.name, source_path) if p))
        for text in plan(None if self.bare else container)[1]:
            self.note(text)
        return _OpenSource(source_path, info.get("size", 0), container)


def _record(cursor: JsonCursor) -> Iterator[Any]:
    """The record at `cursor` (one, yielded). A RAM section's items are read as the encoder takes
    them, when they are its record's last key, as `vmig decode --json` writes them; a key after
    them comes too late for what was written (_SecondLook)."""
    if cursor.peek() != "{":
        yield cursor.value()
        return
    record: dict[str, Any] = {}
    members = cursor.members()
    for key in members:
        if key != "ram" or cursor.peek() != "{":
            record[key] = cursor.value()
            continue
        record[key] = ram = {}
        ram_members = cursor.members()
        for ram_key in ram_members:
            if ram_key == "items" and cursor.peek() == "[":
                ram[ram_key] = items = JsonArray.here(cursor)
                yield record
                items.drain()  # what the encoder did not take (a section of another decoder)
                for _ in ram_members:
                    raise _SecondLook
                for _ in members:
                    raise _SecondLook
                return
            ram[ram_key] = cursor.value()
    yield record


class _OpenSource:
    """The source stream the document refers to, checked to be the one it was decoded from."""

    def __init__(self, path: str | None, size: int, container: dict[str, Any] | None) -> None:
        # a qcow2 source is read through the snapshot the JSON was decoded from
        snapshot = next((layer.get("snapshot", {}).get("id") for layer in (container or {}).get("layers", [])
                         if isinstance(layer, dict) and layer.get("type") == "qcow2"), None)
        self.path, self.size = path, size
        self.source = Source.open(path, snapshot=snapshot) if path and path != "-" and os.path.exists(path) else None

    def __enter__(self) -> Source | None:
        source, path = self.source, self.path
        try:
            if source is not None and not self.size:
                raise InputError(f"the JSON does not say the size of its source (source.size), so vmig cannot "
                                 f"check that {path} is the stream it was decoded from",
                                 hint="add \"size\" to the document's \"source\", or embed the bytes (decode --embed)")
            if source is not None and source.size != self.size:
                raise InputError(f"source {path} has {source.size} bytes, but the JSON was decoded from "
                                 f"{self.size} bytes", hint="give the stream it was decoded from with --source")
        except BaseException:
            self.__exit__()
            raise
        return source

    def __exit__(self, *exc: object) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
