"""model <-> JSON: the `vmig decode --json` contract, and its way back (`vmig encode --from-json`).

Top level: {"vmig": {...}, "source": {"path", "size"}, "records": [...]}. Each
record has "type", "offset" and "length" (a section's span includes its header
and footer; the spans tile the file). Field values are JSON numbers and
booleans, lowercase hex strings for byte buffers, objects for structs, lists
for arrays. Bytes that stay in the source (RAM pages, big buffers, VFIO data)
are {"ref": {"offset", "length"}} (read back from the source file on encode)
or, with embedding, {"base64": "..."}. "info" and "summary" keys are derived
readings for people and are ignored on the way back.

Imports: errors, model, text.
"""

from __future__ import annotations

import base64
import collections
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from ..version import __version__
from ..errors import FieldPath, JsonFormError
from ..naming import section_selected
from .. import model
from ..vmstate.compile import RAMFB_CFG_TYPE
from ..vmstate.vmdesc import MAX_DEPTH
from ..wire.primitives import INT_TYPES
from ..wire.ramfb import RAMFB_CFG_KEYS, fourcc_code, fourcc_text
from ..wire.stream import QEMU_VM_FILE_MAGIC, command_name
from ..text import to_wire
from ..textin import JsonArray, parse_json

FORMAT_VERSION = 1
#: Deepest JSON Pointer the reader follows into structs, subsections and arrays: far more than the
#: 64 description levels a vmdesc may nest (vmstate/vmdesc.py MAX_DEPTH), far less than would
#: exhaust Python's stack here, in encode and in construct's build.
MAX_PATH = 4 * MAX_DEPTH + 16
#: field types whose values are numbers (bool is separate; "pci irq state" is a list of numbers)
_NUMBER_TYPES = frozenset({
    "int8", "uint8", "uint8 equal", "int16", "uint16", "uint16 equal", "int32", "uint32", "int32 equal",
    "uint32 equal", "int32 le", "int64", "uint64", "int64 equal", "timer", "CPU_Double_U", "nullptr",
})
#: the values a JSON number may take for each fixed-size integer type (as construct would build it)
_INT_RANGES = {name: ((-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if con.fmtstr[-1].islower()
                      else (0, (1 << (8 * size)) - 1)) for name, (con, size) in INT_TYPES.items()}
#: the keys the writer below emits for each kind of object; anything else is a typo or another
#: program's document, and is refused rather than silently dropped (keep in step with _Writer)
_SPAN_KEYS = frozenset({"type", "offset", "length"})
_KEYS = {
    "document": frozenset({"vmig", "source", "container", "records", "warnings", "error"}),
    "header": _SPAN_KEYS | {"magic", "version"},
    "configuration": _SPAN_KEYS | {"machine", "subsections"},
    "section": _SPAN_KEYS | {"section_id", "idstr", "instance_id", "version_id", "footer", "decoder",
                             "vmsd_name", "version", "fields", "subsections", "ram", "vfio", "opaque"},
    "command": _SPAN_KEYS | {"cmd", "name", "data", "package"},
    "eof": _SPAN_KEYS,
    "vmdesc": _SPAN_KEYS | {"json", "raw"},
    "field": frozenset({"name", "type", "offset", "length", "value", "info"}),
    "subsection": frozenset({"name", "version", "offset", "length", "fields", "subsections"}),
    "struct": frozenset({"vmsd_name", "version", "fields", "subsections"}),
}


# ================================================================ model -> JSON


def to_json(stream: model.MigrationStream, *, embed: bool = False, source=None) -> dict[str, Any]:
    """The JSON document for a decoded stream. With `embed`, referenced bytes are carried inline
    (base64), read from `source`, so the document stands alone."""
    writer = _Writer(embed, source)
    doc: dict[str, Any] = {
        "vmig": {"format": FORMAT_VERSION, "version": __version__},
        "source": {"path": stream.source, "size": stream.size, "embedded": embed},
    }
    # what wraps the stream in its file (source.Layer): encode --from-json rebuilds it
    container = getattr(source, "container", None) or stream.container
    if container:
        doc["container"] = container
    doc["records"] = [writer.record(r) for r in stream.records]
    if stream.warnings:
        doc["warnings"] = list(stream.warnings)
    if stream.error:
        doc["error"] = stream.error
    return doc


def dumps(stream: model.MigrationStream, *, embed: bool = False, source=None, indent: int | None = None,
          sections: tuple[str, ...] = ()) -> str:
    """The JSON document as text. By default each record is one compact line (json's C encoder:
    a GiB guest's RAM runs take a tenth of the time the indenting encoder needs, which is pure
    Python); `indent` indents everything instead. `sections` (decode --section patterns,
    naming.section_selected) keeps only the section records they select, and every other record."""
    if indent is not None:
        return json.dumps(to_json(_selected(stream, sections), embed=embed, source=source), indent=indent) + "\n"
    return "".join(iter_dumps(stream, embed=embed, source=source, sections=sections))


def iter_dumps(stream: model.MigrationStream, *, embed: bool = False, source=None,
               sections: tuple[str, ...] = ()) -> Iterator[str]:
    """`dumps`'s compact text in pieces, a record's line at a time, each made as it is asked for:
    whoever writes them holds one record's JSON at once, not the document's (with --embed, the
    document is bigger than the stream)."""
    stream = _selected(stream, sections)
    writer = _Writer(embed, source, later=True)
    head = {k: v for k, v in to_json(replace(stream, records=()), embed=embed, source=source).items()
            if k != "records"}
    tail = {k: head.pop(k) for k in ("warnings", "error") if k in head}
    yield "{" + ",\n ".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in head.items())
    yield ',\n "records": ['
    for i, record in enumerate(stream.records):
        yield "\n  " if i == 0 else ",\n  "
        yield from writer.expand(json.dumps(writer.record(record)))
        writer.later.clear()
    yield "\n ]" if stream.records else "]"
    for key, value in tail.items():
        yield f",\n {json.dumps(key)}: {json.dumps(value)}"
    yield "}\n"


def _quoted_base64(pieces: Iterable[bytes]) -> Iterator[str]:
    """The base64 of the bytes the pieces make, as a JSON string, given out a bounded piece at a time."""
    yield '"'
    held = bytearray()
    for piece in pieces:
        held += piece
        if len(held) >= _BASE64_PIECE:
            cut = len(held) - len(held) % 3
            yield base64.b64encode(held[:cut]).decode()
            del held[:cut]
    yield base64.b64encode(held).decode() + '"'


def _selected(stream: model.MigrationStream, sections: tuple[str, ...]) -> model.MigrationStream:
    if not sections:
        return stream
    return replace(stream, records=tuple(
        r for r in stream.records if not isinstance(r, model.Section) or section_selected(r.idstr, sections)))


def _span(obj: dict[str, Any], span: model.Span | None) -> dict[str, Any]:
    if span is not None:
        obj["offset"], obj["length"] = span.offset, span.length
    return obj


#: where iter_dumps puts an embedded value's base64 once the record's JSON is made: a token drawn
#: at start-up (a stream cannot know it) and the value's number
_LATER_TOKEN = secrets.token_hex(16)
_LATER = re.compile(f'"{_LATER_TOKEN}-(\\d+)"')
_FORGET_SPAN = 16 << 20
_BASE64_PIECE = 3 << 18  # bytes encoded at once: a multiple of 3, so the pieces join into one base64


class _Writer:
    def __init__(self, embed: bool, source, later: bool = False) -> None:
        self.embed, self.source = embed, source
        #: later: embedded bytes are not encoded into the record's dict but left as a placeholder,
        #: and their pieces (iterables of bytes) wait here for iter_dumps to encode as it writes
        self.later: list[Iterable[bytes]] | None = [] if later else None
        self._read_lo, self._read_hi = 1 << 63, 0  # the source range read since it was let go

    def base64(self, pieces: Iterable[bytes]) -> dict[str, Any]:
        if self.later is None:
            return {"base64": base64.b64encode(b"".join(pieces)).decode()}
        return {"base64": self._later(_quoted_base64(pieces))}

    def _later(self, text: Iterable[str]) -> str:
        """A placeholder for a JSON value whose text `expand` gives out a piece at a time."""
        assert self.later is not None
        self.later.append(text)
        return f"{_LATER_TOKEN}-{len(self.later) - 1}"

    def expand(self, text: str) -> Iterator[str]:
        """`text` (a record's JSON) with each placeholder replaced by its value's pieces. A value's
        pieces may hold placeholders of their own (a page run's base64 in the RAM items): those
        are expanded as they come and forgotten, so what waits stays one item's worth."""
        assert self.later is not None
        for k, part in enumerate(_LATER.split(text)):
            if k % 2 == 0:
                yield part
                continue
            for piece in self.later[int(part)]:
                held = len(self.later)
                yield from self.expand(piece) if _LATER_TOKEN in piece else (piece,)
                del self.later[held:]

    def _ram_items(self, body: model.RamBody) -> Iterator[str]:
        """The JSON array of a RAM body's items, an item at a time (a section can hold millions)."""
        yield "["
        for i, item in enumerate(body.every_item()):
            yield (", " if i else "") + json.dumps(self.ram_item(item, body.page_size))
        yield "]"

    def source_bytes(self, start: int, length: int) -> Iterator[bytes]:
        """The source's bytes [start, start + length) a MiB at a time. What was read is let go every
        _FORGET_SPAN bytes of the source, with the pages the kernel mapped around each fault
        (fault-around): forgetting each page alone left those mapped, and RSS grew with the stream."""
        for at in range(start, start + length, 1 << 20):
            end = min(at + (1 << 20), start + length)
            yield bytes(self.source.buf[at:end])
            self._read_lo, self._read_hi = min(self._read_lo, at), max(self._read_hi, end)
            if self._read_hi - self._read_lo >= _FORGET_SPAN and hasattr(self.source, "forget"):
                self.source.forget(self._read_lo, self._read_hi + _FORGET_SPAN)
                self._read_lo, self._read_hi = 1 << 63, 0

    def blob(self, blob: model.Blob) -> dict[str, Any]:
        if blob.data is not None and blob.length <= 4096:
            return {"hex": blob.data.hex()}
        if self.embed:
            return self.base64((blob.data,) if blob.data is not None else self.source_bytes(blob.offset, blob.length))
        return {"ref": {"offset": blob.offset, "length": blob.length}}

    def record(self, r: Any) -> dict[str, Any]:
        if isinstance(r, model.Header):
            return _span({"type": "header"}, r.span) | {"magic": "QEVM" if r.magic == QEMU_VM_FILE_MAGIC else r.magic,
                                                        "version": r.version}
        if isinstance(r, model.Configuration):
            return _span({"type": "configuration"}, r.span) | {
                "machine": r.machine, "subsections": [self.subsection(s) for s in r.subsections]}
        if isinstance(r, model.Section):
            return self.section(r)
        if isinstance(r, model.Command):
            obj = _span({"type": "command"}, r.span) | {"cmd": r.cmd, "name": r.name, "data": r.data.hex()}
            if r.package is not None:
                obj["package"] = self.blob(r.package)
            return obj
        if isinstance(r, model.Eof):
            return _span({"type": "eof"}, r.span)
        if isinstance(r, model.Vmdesc):
            obj = _span({"type": "vmdesc"}, r.span)
            if r.text is None:
                obj["json"] = r.document
            else:
                obj["raw"] = r.text.hex()
            return obj
        raise TypeError(f"unknown record {type(r).__name__}")

    def section(self, r: model.Section) -> dict[str, Any]:
        obj = _span({"type": r.type}, r.span) | {"section_id": r.section_id, "idstr": r.idstr}
        if r.long_header:
            obj["instance_id"], obj["version_id"] = r.instance_id, r.version_id
        obj["footer"] = r.footer
        body = r.body
        if isinstance(body, model.VmstateBody):
            obj["decoder"] = body.origin
            obj["vmsd_name"], obj["version"] = body.vmsd_name, body.version
            obj["fields"] = [self.field(f) for f in body.fields]
            obj["subsections"] = [self.subsection(s) for s in body.subsections]
        elif isinstance(body, model.RamBody):
            obj["decoder"] = "ram"
            obj["ram"] = self.ram(body)
        elif isinstance(body, model.VfioBody):
            obj["decoder"] = "vfio"
            obj["vfio"] = {"items": [self.vfio_item(i) for i in body.items]}
        elif isinstance(body, model.OpaqueBody):
            obj["decoder"] = "opaque"
            obj["opaque"] = {"reason": body.reason, "offset": body.data.offset, "length": body.data.length,
                             "data": self.blob(body.data)}
        return obj

    def subsection(self, s: model.Subsection) -> dict[str, Any]:
        return _span({"name": s.name, "version": s.version}, s.span) | {
            "fields": [self.field(f) for f in s.fields], "subsections": [self.subsection(x) for x in s.subsections]}

    def field(self, f: model.Field) -> dict[str, Any]:
        obj = _span({"name": f.name, "type": f.type}, f.span)
        obj["value"] = self.value(f.type, f.value)
        if f.info:
            obj["info"] = f.info
        return obj

    def value(self, ftype: str, value: Any) -> Any:
        if isinstance(value, model.StructValue):
            return {"vmsd_name": value.vmsd_name, "version": value.version,
                    "fields": [self.field(f) for f in value.fields],
                    "subsections": [self.subsection(s) for s in value.subsections]}
        if isinstance(value, list):
            return [self.value(ftype, v) for v in value]
        if isinstance(value, (bytes, bytearray)):
            return value.hex()
        if isinstance(value, model.Blob):
            return self.blob(value)
        if ftype == RAMFB_CFG_TYPE and isinstance(value, dict):
            return value | {"fourcc": fourcc_text(value["fourcc"])}
        return value

    def ram(self, body: model.RamBody) -> dict[str, Any]:
        items: Any = (self._later(self._ram_items(body)) if self.later is not None
                      else [self.ram_item(item, body.page_size) for item in body.every_item()])
        return {"page_size": body.page_size, "summary": body.block_counts(), "items": items}

    def ram_item(self, item: model.RamMemSize | model.RamMarker | model.RamPages, page_size: int) -> dict[str, Any]:
        if isinstance(item, model.RamMemSize):
            return _span({"kind": "mem_size", "total": item.total,
                          "blocks": [self.ram_block(b) for b in item.blocks]}, item.span)
        if isinstance(item, model.RamMarker):
            return _span({"kind": item.kind}, item.span)
        obj = _span({"kind": item.kind, "block": item.block, "page_offset": item.offset,
                     "count": item.count, "named": item.named}, item.span)
        if item.kind == "zero" and item.fill:
            obj["fill"] = item.fill
        if item.kind == "xbzrle":
            obj["delta"] = (item.delta or b"").hex()
        if item.kind == "page" and self.embed:
            obj["data"] = self.page_data(item, page_size)
        if item.kind == "compressed" and item.data:
            # its zlib data, in the document like an XBZRLE delta (at most ~4 KiB) when the source is at hand
            data = item.data[0]
            if data.data is None and self.source is not None:
                data = model.Blob(data.offset, data.length, b"".join(self.source_bytes(data.offset, data.length)))
            obj["data"] = {"hex": data.data.hex()} if data.data is not None else self.blob(data)
        return obj

    def page_data(self, run: model.RamPages, ps: int) -> dict[str, Any]:
        return self.base64(piece for i in range(run.count)
                           for piece in self.source_bytes(run.payload_offset(i, ps), ps))

    def ram_block(self, b: model.RamBlock) -> dict[str, Any]:
        obj: dict[str, Any] = {"idstr": b.idstr, "used_length": b.used_length}
        if b.page_size is not None:
            obj["page_size"] = b.page_size
        if b.addr is not None:
            obj["addr"] = b.addr
        if b.mapped_ram is not None:
            obj["mapped_ram"] = dict(b.mapped_ram)
            if b.region is not None:
                obj["region"] = self.blob(b.region) | {"offset": b.region.offset, "length": b.region.length}
        return obj

    def vfio_item(self, item: model.VfioItem) -> dict[str, Any]:
        obj = _span({"kind": item.kind}, item.span)
        if item.data is not None:
            obj["data"] = self.blob(item.data) | {"size": item.data.length}
        if item.config is not None:
            c = item.config
            obj |= {"vmsd_name": c.vmsd_name, "version": c.version, "fields": [self.field(f) for f in c.fields],
                    "subsections": [self.subsection(s) for s in c.subsections]}
        return obj


# ================================================================ JSON -> model


def loads(text: str | bytes, name: str = "JSON document") -> model.MigrationStream:
    return from_json(parse_json(text, name, JsonFormError))


def from_json(doc: Any) -> model.MigrationStream:
    reader = Reader()
    obj, source = document(reader, doc)
    records = tuple(reader.records(obj["records"]))
    return model.MigrationStream(records=records, size=source.get("size", 0), source=source.get("path"),
                                 container=reader.container(obj))


#: where a document grows with its stream: the records, and each RAM section's items (a run of
#: page records each). encode --from-json reads these an element at a time (textin.read's shape)
LONG_ARRAYS = {"records": [{"ram": {"items": [None]}}]}


def document(reader: Reader, doc: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document's checks made before its records are read; (the document, its source)."""
    obj = reader.obj(doc, ())
    reader.keys(obj, "document", ())
    # a document of another format (a later vmig's) is refused, not read by guesses
    producer = reader.obj(obj.get("vmig", {"format": FORMAT_VERSION}), ("vmig",))
    if producer.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        reader.fail(f"unsupported document format {producer.get('format')!r}; this vmig reads format "
                    f"{FORMAT_VERSION}", ("vmig", "format"))
    reader.list(obj.get("records"), ("records",))
    source = reader.obj(obj.get("source") or {}, ("source",))
    # the CLI opens source.path and compares source.size: a number for a path would open a descriptor
    if source.get("path") is not None and not isinstance(source["path"], str):
        reader.fail(f"expected a string 'path', found {_kind(source['path'])}", ("source", "path"))
    if "size" in source:
        reader.int(source, "size", ("source",))
    return obj, source


class Reader:
    """The model a document describes, every value checked. `lazy`: a RAM body whose items stay in
    the text (a textin.JsonArray) gets them as an iterator, read and checked as the encoder takes
    them; otherwise they are checked at once and dropped (a check of the whole document).
    `on_pages` is called after each page run with the pages the runs so far write (`pages`, of
    the last RAM body's `page_size`: what encode bounds, ram.limits.check_claim)."""

    def __init__(self, *, lazy: bool = False, on_pages: Callable[[Reader], None] | None = None) -> None:
        self.blocks: dict[str, int] = {}  # RAM block idstr -> used_length, from the mem_size item
        self.lazy, self.on_pages = lazy, on_pages
        self.pages, self.page_size = 0, 4096

    def records(self, values: Iterable[Any]) -> Iterator[model.Record]:
        """The records, in order. PART/END carry no instance/version on the wire; the model
        resolves them from their START."""
        opened: dict[int, model.Section] = {}
        for i, value in enumerate(values):
            record = self.record(value, ("records", i))
            if isinstance(record, model.Section) and record.type == "section_start":
                opened[record.section_id] = record
            elif isinstance(record, model.Section) and not record.long_header and record.section_id in opened:
                start = opened[record.section_id]
                record = replace(record, instance_id=start.instance_id, version_id=start.version_id)
            yield record

    def container(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        container = obj.get("container")
        if container is not None:
            layers = self.list(self.obj(container, ("container",)).get("layers"), ("container", "layers"))
            for i, layer in enumerate(layers):
                if not isinstance(self.obj(layer, ("container", "layers", i)).get("type"), str):
                    self.fail("expected a layer with a string 'type'", ("container", "layers", i))
        return container

    def fail(self, message: str, path: FieldPath) -> None:
        raise JsonFormError(message, path=path)

    def keys(self, obj: dict[str, Any], kind: str, path: FieldPath) -> None:
        unknown = sorted(k for k in obj if k not in _KEYS[kind])
        if unknown:
            self.fail(f"unknown key {unknown[0]!r} in a {kind}; expected {', '.join(sorted(_KEYS[kind]))}",
                      path + (unknown[0],))

    def obj(self, value: Any, path: FieldPath) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"expected an object, found {_kind(value)}", path)
        return value

    def depth(self, path: FieldPath) -> None:
        # every recursion of the reader passes value() or subsections(): a hostile document nested
        # deeper must be a JsonFormError, not a RecursionError here or in encode
        if len(path) > MAX_PATH:
            self.fail(f"nested deeper than {MAX_PATH} levels", path)

    def list(self, value: Any, path: FieldPath) -> list[Any] | JsonArray:
        if not isinstance(value, (list, JsonArray)):
            self.fail(f"expected a list, found {_kind(value)}", path)
        return value

    def int(self, obj: dict[str, Any], key: str, path: FieldPath, *, bits: int = 64) -> int:
        value = obj.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"expected an integer '{key}', found {_kind(value)}", path + (key,))
        if not 0 <= value < 1 << bits:
            self.fail(f"'{key}' = {value} is out of range 0..{(1 << bits) - 1}", path + (key,))
        return value

    def str(self, obj: dict[str, Any], key: str, path: FieldPath) -> str:
        value = obj.get(key)
        if not isinstance(value, str):
            self.fail(f"expected a string '{key}', found {_kind(value)}", path + (key,))
        try:  # decode writes undecodable name bytes as \udc80..\udcff; any other surrogate has no bytes
            to_wire(value)
        except UnicodeEncodeError:
            self.fail(f"'{key}' = {value!a} cannot be written as bytes (a lone surrogate)", path + (key,))
        return value

    def name(self, obj: dict[str, Any], key: str, path: FieldPath) -> str:
        """A counted string on the wire (u8 length): at most 255 bytes once encoded."""
        value = self.str(obj, key, path)
        size = len(to_wire(value))
        if size > 255:
            self.fail(f"'{key}' is {size} bytes; a name on the wire holds at most 255", path + (key,))
        return value

    def hex(self, value: Any, path: FieldPath) -> bytes:
        if not isinstance(value, str):
            self.fail(f"expected a hex string, found {_kind(value)}", path)
        try:
            return bytes.fromhex(value)
        except ValueError:
            self.fail("expected a hex string (pairs of 0-9a-f)", path)
        raise AssertionError

    def blob(self, value: Any, path: FieldPath) -> model.Blob | bytes:
        if isinstance(value, str):
            return self.hex(value, path)
        obj = self.obj(value, path)
        if "hex" in obj:
            return self.hex(obj["hex"], path + ("hex",))
        if "base64" in obj:
            try:
                return base64.b64decode(obj["base64"], validate=True)
            except (ValueError, TypeError):
                self.fail("expected base64 data", path + ("base64",))
        if "ref" in obj:
            ref = self.obj(obj["ref"], path + ("ref",))
            return model.Blob(self.int(ref, "offset", path + ("ref",)), self.int(ref, "length", path + ("ref",)))
        self.fail("expected bytes as a hex string, {\"hex\"}, {\"base64\"} or {\"ref\"}", path)
        raise AssertionError

    def as_blob(self, value: Any, path: FieldPath, offset: Any = 0) -> model.Blob:
        data = self.blob(value, path)
        where = offset if isinstance(offset, int) else 0
        return data if isinstance(data, model.Blob) else model.Blob(where, len(data), data)

    def span(self, obj: dict[str, Any]) -> model.Span | None:
        off, length = obj.get("offset"), obj.get("length")
        return model.Span(off, length) if isinstance(off, int) and isinstance(length, int) else None

    def record(self, value: Any, path: FieldPath) -> Any:
        r = self.obj(value, path)
        rtype = r.get("type")
        kind = "section" if rtype in ("section_start", "section_part", "section_end", "section_full") else rtype
        if isinstance(kind, str) and kind in _KEYS:
            self.keys(r, kind, path)
        span = self.span(r)
        if rtype == "header":
            magic = r.get("magic", "QEVM")
            return model.Header(magic=QEMU_VM_FILE_MAGIC if magic == "QEVM" else self.int(r, "magic", path, bits=32),
                                version=self.int(r, "version", path, bits=32), span=span)
        if rtype == "configuration":
            return model.Configuration(machine=self.str(r, "machine", path),
                                       subsections=self.subsections(r.get("subsections", []), path + ("subsections",)),
                                       span=span)
        if rtype in ("section_start", "section_part", "section_end", "section_full"):
            return self.section(r, rtype, span, path)
        if rtype == "command":
            cmd = self.int(r, "cmd", path, bits=16)
            package = self.as_blob(r["package"], path + ("package",)) if "package" in r else None
            return model.Command(cmd=cmd, name=command_name(cmd), data=self.hex(r.get("data", ""), path + ("data",)),
                                 package=package, span=span)
        if rtype == "eof":
            return model.Eof(span=span)
        if rtype == "vmdesc":
            if "raw" in r:
                return model.Vmdesc(document=None, text=self.hex(r["raw"], path + ("raw",)), span=span)
            return model.Vmdesc(document=self.obj(r.get("json"), path + ("json",)), span=span)
        self.fail(f"unknown record type {rtype!r}; expected header, configuration, section_start, section_part, "
                  f"section_end, section_full, command, eof or vmdesc", path + ("type",))

    def section(self, r: dict[str, Any], rtype: str, span: model.Span | None, path: FieldPath) -> model.Section:
        long_header = rtype in ("section_start", "section_full")
        decoder = r.get("decoder")
        if decoder == "ram":
            body: Any = self.ram(self.obj(r.get("ram"), path + ("ram",)), path + ("ram",))
        elif decoder == "vfio":
            vfio = self.obj(r.get("vfio"), path + ("vfio",))
            body = model.VfioBody(tuple(self.vfio_item(i, path + ("vfio", "items", k))
                                        for k, i in enumerate(self.list(vfio.get("items"), path + ("vfio", "items")))))
        elif decoder == "opaque":
            opaque = self.obj(r.get("opaque"), path + ("opaque",))
            body = model.OpaqueBody(self.as_blob(opaque.get("data"), path + ("opaque", "data"), opaque.get("offset")),
                                    opaque.get("reason", ""))
        elif decoder in ("vmdesc", "builtin") or "fields" in r:
            body = model.VmstateBody(self.str(r, "vmsd_name", path), self.int(r, "version", path, bits=32),
                                     self.fields(r.get("fields", []), path + ("fields",)),
                                     self.subsections(r.get("subsections", []), path + ("subsections",)),
                                     origin=decoder or "vmdesc")
        else:
            self.fail(f"unknown section decoder {decoder!r}; expected vmdesc, builtin, ram, vfio or opaque",
                      path + ("decoder",))
        if not isinstance(r.get("footer", True), bool):
            self.fail(f"expected true or false 'footer', found {_kind(r['footer'])}", path + ("footer",))
        return model.Section(type=rtype, section_id=self.int(r, "section_id", path, bits=32),
                             idstr=self.str(r, "idstr", path),
                             instance_id=self.int(r, "instance_id", path, bits=32) if long_header else None,
                             version_id=self.int(r, "version_id", path, bits=32) if long_header else None,
                             body=body, footer=bool(r.get("footer", True)), span=span)

    def subsections(self, value: Any, path: FieldPath) -> tuple[model.Subsection, ...]:
        self.depth(path)
        result = []
        for i, s in enumerate(self.list(value, path)):
            where = path + (i,)
            s = self.obj(s, where)
            self.keys(s, "subsection", where)
            result.append(model.Subsection(self.str(s, "name", where), self.int(s, "version", where, bits=32),
                                           self.fields(s.get("fields", []), where + ("fields",)),
                                           self.subsections(s.get("subsections", []), where + ("subsections",)),
                                           span=self.span(s)))
        return tuple(result)

    def fields(self, value: Any, path: FieldPath) -> tuple[model.Field, ...]:
        result = []
        for i, f in enumerate(self.list(value, path)):
            where = path + (i,)
            f = self.obj(f, where)
            self.keys(f, "field", where)
            ftype = self.str(f, "type", where)
            if "value" not in f:
                self.fail(f"field '{f.get('name')}' has no 'value'", where)
            result.append(model.Field(self.str(f, "name", where), ftype,
                                      self.value(ftype, f["value"], where + ("value",)), span=self.span(f)))
        return tuple(result)

    def value(self, ftype: str, value: Any, path: FieldPath) -> Any:
        self.depth(path)
        if ftype == "struct" and isinstance(value, list):
            return [self.value(ftype, v, path + (i,)) for i, v in enumerate(value)]
        if ftype == "struct":
            s = self.obj(value, path)
            self.keys(s, "struct", path)
            return model.StructValue(self.str(s, "vmsd_name", path), self.int(s, "version", path, bits=32),
                                     self.fields(s.get("fields", []), path + ("fields",)),
                                     self.subsections(s.get("subsections", []), path + ("subsections",)))
        if ftype == RAMFB_CFG_TYPE:
            if isinstance(value, list):
                return [self.value(ftype, v, path + (i,)) for i, v in enumerate(value)]
            cfg = dict(self.obj(value, path))
            if isinstance(cfg.get("fourcc"), str):
                cfg["fourcc"] = self.fourcc(cfg["fourcc"], path + ("fourcc",))
            unknown = set(cfg) - set(RAMFB_CFG_KEYS)
            if unknown:
                self.fail(f"unknown ramfb cfg key(s) {sorted(unknown)}; expected {', '.join(RAMFB_CFG_KEYS)}", path)
            return {k: self.int(cfg, k, path, bits=64 if k == "addr" else 32) for k in RAMFB_CFG_KEYS}
        if ftype == "pci irq state":
            items = self.list(value, path)
            if all(isinstance(v, (list, str, dict)) for v in items):  # [] too: an array of none
                # an array of them: each a list of four, or bytes when the vmdesc gives another size
                return [self.value(ftype, v, path + (i,)) if isinstance(v, list) else self.blob(v, path + (i,))
                        for i, v in enumerate(items)]
            if len(items) != 4:
                self.fail(f"pci irq state has 4 values (INTA..INTD), found {len(items)}", path)
            return [self._number(v, "uint32", path + (i,)) for i, v in enumerate(items)]
        if ftype == "capability" and isinstance(value, list):
            # the capability list is one flat array of names (QEMU's configuration/capabilities)
            return [self.value(ftype, v, path + (i,)) if not isinstance(v, list)
                    else self.fail(f"expected a capability name, found {_kind(v)}", path + (i,))
                    for i, v in enumerate(value)]
        if isinstance(value, list):
            return [self.value(ftype, v, path + (i,)) for i, v in enumerate(value)]
        if ftype == "capability":
            if not isinstance(value, str):
                self.fail(f"expected a capability name, found {_kind(value)}", path)
            return value
        if ftype == "bool":
            if isinstance(value, bool):
                return value
            return self._number(value, "uint8", path)
        if ftype in _NUMBER_TYPES and not isinstance(value, (str, dict)):
            return self._number(value, ftype, path)
        return self.blob(value, path)

    def fourcc(self, text: str, path: FieldPath) -> int:
        if len(text) == 4 and text.isascii():
            return fourcc_code(text)
        try:
            return int(text, 0)
        except ValueError:
            self.fail(f"fourcc {text!r} is neither 4 ASCII letters (e.g. 'XR24') nor a number", path)
        raise AssertionError

    def _number(self, value: Any, ftype: str, path: FieldPath) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"expected an integer for type '{ftype}', found {_kind(value)}", path)
        low, high = _INT_RANGES.get(ftype, (value, value))
        if not low <= value <= high:
            self.fail(f"{value} is out of range {low}..{high} for type '{ftype}'", path)
        return value

    def ram(self, r: dict[str, Any], path: FieldPath) -> model.RamBody:
        page_size = self.int(r, "page_size", path) if "page_size" in r else 4096
        # offsets and totals share their word with the flags below page_size: they must stay aligned
        if page_size <= 0 or page_size & (page_size - 1):
            self.fail(f"'page_size' = {page_size} is not a power of two", path + ("page_size",))
        self.page_size = page_size
        values = self.list(r.get("items"), path + ("items",))
        items = (self.ram_item(item, path + ("items", i), page_size) for i, item in enumerate(values))
        if isinstance(values, list):
            return model.RamBody(tuple(items), page_size)
        # items left in the text (encode --from-json): read as the encoder writes them, or checked now
        if not self.lazy:
            collections.deque(items, maxlen=0)
            items = iter(())
        return model.RamBody(items, page_size)  # type: ignore[arg-type]

    def ram_item(self, item: Any, where: FieldPath, page_size: int) -> model.RamItem:
        item = self.obj(item, where)
        kind = item.get("kind")
        span = self.span(item)
        if kind == "mem_size":
            blocks = []
            for k, b in enumerate(self.list(item.get("blocks"), where + ("blocks",))):
                bw = where + ("blocks", k)
                b = self.obj(b, bw)
                region = self.as_blob(b["region"], bw + ("region",)) if "region" in b else None
                if region is not None and "offset" in b["region"] and region.data is not None:
                    region = model.Blob(b["region"]["offset"], region.length, region.data)
                idstr = self.name(b, "idstr", bw)
                optional = {k: self.int(b, k, bw) for k in ("page_size", "addr") if b.get(k) is not None}
                mapped = None
                if b.get("mapped_ram") is not None:
                    header = self.obj(b["mapped_ram"], bw + ("mapped_ram",))
                    mapped = {k: self.int(header, k, bw + ("mapped_ram",), bits=32 if k == "version" else 64)
                              for k in ("version", "page_size", "bitmap_offset", "pages_offset")}
                blocks.append(model.RamBlock(idstr, self.int(b, "used_length", bw),
                                             page_size=optional.get("page_size"), addr=optional.get("addr"),
                                             mapped_ram=mapped, region=region))
                self.blocks[idstr] = blocks[-1].used_length
            total = self.int(item, "total", where)
            if total % page_size:
                self.fail(f"'total' = {total:#x} is not a multiple of the page size {page_size}",
                          where + ("total",))
            return model.RamMemSize(total, tuple(blocks), span=span)
        if kind in ("eos", "multifd_flush"):
            return model.RamMarker(kind, span=span)
        if kind in ("zero", "page", "xbzrle", "compressed"):
            data = None
            if "data" in item:
                raw = self.blob(item["data"], where + ("data",))
                data = (raw if isinstance(raw, model.Blob) else model.Blob(0, len(raw), raw),)
            block, offset = self.name(item, "block", where), self.int(item, "page_offset", where)
            count = self.int(item, "count", where, bits=40)
            if offset % page_size:
                self.fail(f"'page_offset' = {offset:#x} is not a multiple of the page size {page_size}",
                          where + ("page_offset",))
            # a run must lie inside its block, as QEMU's loader demands (offset_in_ramblock);
            # this also bounds what a tiny document can make encode write
            if self.blocks and block not in self.blocks:
                self.fail(f"RAM block '{block}' is not in the mem_size block list", where + ("block",))
            if block in self.blocks and offset + count * page_size > self.blocks[block]:
                self.fail(f"{count} pages at {offset:#x} run past the end of block '{block}' "
                          f"({self.blocks[block]:#x} bytes)", where + ("count",))
            if kind == "compressed" and (count != 1 or data is None):
                self.fail("a compressed run is one record: 'count' 1 and its zlib 'data'", where)
            if kind == "compressed" and data is not None and data[0].length >= 1 << 31:
                self.fail(f"compressed page data of {data[0].length} bytes does not fit its be32 length",
                          where + ("data",))
            if kind != "compressed" and data is not None and data[0].data is not None \
                    and len(data[0].data) != count * page_size:
                self.fail(f"page data has {len(data[0].data)} bytes, expected {count} pages of {page_size}",
                          where + ("data",))
            run = model.RamPages(kind=kind, block=block, offset=offset, count=count, named=bool(item.get("named")),
                                 fill=self.int(item, "fill", where, bits=8) if "fill" in item else 0,
                                 data=data,
                                 delta=self.hex(item["delta"], where + ("delta",)) if "delta" in item else None,
                                 span=span)
            if kind == "page" and data is None and span is None:
                self.fail("page run without data needs its 'offset'/'length' in the source", where)
            self.pages += run.pages_written
            if self.on_pages is not None:
                self.on_pages(self)
            return run
        self.fail(f"unknown RAM item kind {kind!r}", where + ("kind",))
        raise AssertionError

    def vfio_item(self, value: Any, path: FieldPath) -> model.VfioItem:
        item = self.obj(value, path)
        kind = item.get("kind")
        span = self.span(item)
        if kind == "data":
            data = self.as_blob(item.get("data"), path + ("data",), span.offset + 16 if span else 0)
            return model.VfioItem("data", data=data, span=span)
        if kind == "config":
            return model.VfioItem("config", config=model.VmstateBody(
                self.str(item, "vmsd_name", path), self.int(item, "version", path, bits=32),
                self.fields(item.get("fields", []), path + ("fields",)),
                self.subsections(item.get("subsections", []), path + ("subsections",)), origin="builtin"), span=span)
        if kind in ("setup", "end_of_state", "init_data_sent"):
            return model.VfioItem(kind, span=span)
        self.fail(f"unknown VFIO item kind {kind!r}", path + ("kind",))
        raise AssertionError


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
