"""Summary building: a decoded stream -> its Golden (the `path = value` entries of every section).

Sections are grouped by name (never section id) and sorted; RAM sections are one group per
stream with per-block page counts and a digest of the final page contents (ram.summary); VFIO
sections list their distinct marker sequences and a digest of their data, however it is split
over PARTs; big buffers are length + sha256. See the package docstring for the rules.

Imports: errors, model, naming, text, source, codec (decode), ram (state, summary), golden.options,
golden.goldenfile.
References: migration/ram.c (ram_save_page, save_zero_page: the page records summarised),
hw/vfio/migration.c (VFIO_MIG_FLAG_*: the VFIO markers listed).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..codec.decode import decode
from ..errors import GoldenError
from .. import model
from ..naming import RECORD_KEYS, IgnorePatterns, element, level_names, section_name, subsection_name
from ..ram.state import PageState
from ..ram.summary import StreamSummaries, block_summary
from ..source import Source
from ..text import printable
from .goldenfile import Entry, Golden
from .options import GoldenOptions

#: byte buffers up to this size are one hex line; longer ones are 16-byte rows (all-zero rows left out)
INLINE_BYTES = 32
ROW_BYTES = 16
#: lists of numbers longer than this are sparse: `@length` plus the non-zero elements...
INLINE_ITEMS = 64
#: ...unless more than this many are non-zero: then `@length` and `@sha256`
SPARSE_ITEMS = 256
#: blobs are hashed in chunks of this size, so memory stays flat
CHUNK = 1 << 20

_KIND_RANK = {"section_full": 0, "section_start": 1, "section_part": 2, "section_end": 3}
_LEADING_GROUPS = ("stream", "configuration")
_TRAILING_GROUPS = ("commands", "vmdesc", "order")


def golden_of(stream: model.MigrationStream, source: Source | bytes | None = None,
              options: GoldenOptions = GoldenOptions(), ram: PageState | None = None,
              summaries: StreamSummaries | None = None) -> Golden:
    """The golden of a decoded stream. `source` (the decoded input) is needed for RAM page
    contents and big buffers; without it they cannot be hashed (GoldenError). `ram`: the
    stream's final page state (fed by the decode); without it the stream must keep its page
    runs (decode's default) and the state is made from them. `summaries`: RAM block summaries
    worked out as the walk went (ram.summary.StreamSummaries), used for the blocks it has."""
    src = Source.from_bytes(source) if isinstance(source, (bytes, bytearray)) else source
    buf = src.buf if src is not None else None
    complete = summaries is not None and summaries.complete
    if ram is None and not complete and any(isinstance(r, model.Section) and isinstance(r.body, model.RamBody)
                                            for r in stream.records):
        try:
            ram = PageState.of(stream, src)
        except ValueError as exc:
            raise GoldenError(f"a golden needs the RAM page runs: {exc}") from exc
    if ram is not None:
        ram.check()
    return _Summary(buf, options, ram, summaries).run(stream)


def golden_of_path(path: str | os.PathLike[str], options: GoldenOptions = GoldenOptions(),
                   snapshot: str | None = None) -> Golden:
    """The golden of a stream file, memory flat in the stream (no page runs kept). A stream that
    sets each page once, in address order, is summarised in one walk (its pages hashed beside the
    walk, ram.summary.StreamSummaries); any other is walked again into a final page state."""
    with Source.open(os.fspath(path), snapshot=snapshot) as src:
        summaries = StreamSummaries(src)
        try:
            stream = decode(src, ram_runs=False, on_ram_item=summaries.feed, on_ram_partial=summaries.partial)
            if summaries.complete:
                # a golden's RAM lines come last: the pages are still being hashed while the rest is
                # summarised, and the first RAM line waits for the digests (StreamSummaries.summary)
                return golden_of(stream, src, options, summaries=summaries)
            summaries.finish()
        finally:
            summaries.close()
        with PageState(src) as ram:
            decode(src.sibling(), ram_runs=False, on_ram_item=ram.feed)
            return golden_of(stream, src, options, ram.finish(), summaries)


def section_group(section: model.Section) -> str:
    """The group of a section record: its section's name (naming.section_name), e.g. ``dma#1``."""
    return _escape(section_name(section.idstr, section.instance_id))


def record_path(section: model.Section) -> str:
    """Where a golden puts a section record: the section's name, and below it ``@start``,
    ``@part`` or ``@end`` for the records of an iterative section (``0000:00:02.0/vfio/@end``)."""
    record = RECORD_KEYS.get(section.type, f"@{section.type}")
    group = section_group(section)
    return f"{group}/{record}" if record else group


@functools.lru_cache(maxsize=4096)
def _escape(name: str) -> str:
    """A name as a golden line can hold it: `path = value` lines cannot have " = " in the path."""
    return name.replace(" = ", " \\x3d ")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return repr(value)


def _rows(data: bytes) -> str:
    return " ".join(data[i:i + 4].hex() for i in range(0, len(data), 4))


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


@dataclass
class _RamGroup:
    version: int | None = None
    page_size: int = 4096
    total: int | None = None
    blocks: dict[str, Any] = field(default_factory=dict)  # idstr -> RamBlock
    flushes: int = 0


@dataclass
class _VfioGroup:
    markers: dict[str, None] = field(default_factory=dict)  # distinct per-record sequences, first seen first
    length: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    configs: list[model.VmstateBody] = field(default_factory=list)
    opaque: list[model.Blob] = field(default_factory=list)


class _Summary:
    def __init__(self, buf: Any, options: GoldenOptions, ram: PageState | None = None,
                 summaries: StreamSummaries | None = None) -> None:
        self.buf, self.options, self.ignored = buf, options, IgnorePatterns(options.ignore)
        self.ram_state, self.ram_summaries = ram, summaries
        #: the lines of each record path (a section's FULL, START, PART and END records apart, so
        #: they can be sorted), and the group header each goes under (the section's name)
        self.groups: dict[str, list[tuple[str, str]]] = {}
        self.sort_keys: dict[str, tuple[Any, ...]] = {}
        self.titles: dict[str, str] = {}
        self.group = ""
        self.seen: set[str] = set()

    # ------------------------------------------------------------ plumbing

    def start(self, group: str, sort_key: tuple[Any, ...] | None = None, title: str | None = None) -> None:
        self.group = group
        self.groups.setdefault(group, [])
        if sort_key is not None:
            self.sort_keys.setdefault(group, sort_key)
        if title is not None:
            self.titles[group] = title

    def emit(self, path: str, value: str) -> None:
        if self.ignored and self.ignored(path):
            return
        self.groups[self.group].append((path, value))

    def unique(self, path: str) -> str:
        """Two fields of one name at one level (vmdesc lists a repeated name) stay apart: name~2."""
        if path not in self.seen:
            self.seen.add(path)
            return path
        n = 2
        while f"{path}~{n}" in self.seen:
            n += 1
        self.seen.add(f"{path}~{n}")
        return f"{path}~{n}"

    def data(self, blob: model.Blob) -> Iterator[bytes]:
        if blob.data is not None:
            yield blob.data
            return
        if self.buf is None:
            raise GoldenError("a golden needs the stream's bytes for RAM pages and big buffers; pass its Source")
        for start in range(blob.offset, blob.offset + blob.length, CHUNK):
            yield bytes(self.buf[start:min(start + CHUNK, blob.offset + blob.length)])

    def big(self, blob: model.Blob) -> str:
        digest = hashlib.sha256()
        for chunk in self.data(blob):
            digest.update(chunk)
        return f"{blob.length} bytes, sha256 {digest.hexdigest()}"

    # ------------------------------------------------------------ driver

    def run(self, stream: model.MigrationStream) -> Golden:
        ram: dict[str, _RamGroup] = {}
        vfio: dict[str, _VfioGroup] = {}
        commands: dict[str, int] = {}
        footers = None
        self.start("stream")
        for record in stream.records:
            if isinstance(record, model.Header):
                self.start("stream")
                self.emit("stream/version", str(record.version))
            elif isinstance(record, model.Configuration):
                self.start("configuration")
                self.emit("configuration/machine", _scalar(record.machine))
                self.level("configuration", "configuration", (), record.subsections)
            elif isinstance(record, model.Section):
                footers = record.footer if footers is None else footers
                self.section(record, ram, vfio)
            elif isinstance(record, model.Command):
                self.start("commands")
                n = commands.get(record.name, 0)
                commands[record.name] = n + 1
                path = f"commands/{record.name}/{n}"
                self.emit(path, record.data.hex() or "(0 bytes)")
                if record.package is not None:
                    self.emit(f"{path}/package", self.big(record.package))
            elif isinstance(record, model.Eof):
                self.start("stream")
                self.emit("stream/eof", "true")
            elif isinstance(record, model.Vmdesc):
                self.vmdesc(record)
        self.start("stream")
        if footers is not None:
            self.emit("stream/section_footers", _scalar(footers))
        for key, group in ram.items():
            self.ram(key, group)
        for key, group in vfio.items():
            self.vfio(key, group)
        if self.options.records_order:
            self.order(stream)
        return Golden(self.options, self.entries())

    def entries(self) -> tuple[Entry, ...]:
        leading = [g for g in _LEADING_GROUPS if g in self.groups]
        trailing = [g for g in _TRAILING_GROUPS if g in self.groups]
        middle = sorted((g for g in self.groups if g not in leading and g not in trailing),
                        key=lambda g: self.sort_keys.get(g, (g, 0, 0)))
        return tuple(Entry(self.titles.get(g, g), path, value)
                     for g in leading + middle + trailing for path, value in self.groups[g])

    # ------------------------------------------------------------ sections

    def section(self, section: model.Section, ram: dict[str, _RamGroup], vfio: dict[str, _VfioGroup]) -> None:
        body = section.body
        if isinstance(body, model.RamBody):
            base = section_group(section)
            self.start(base, (section.idstr, section.instance_id or 0, 0))
            if self.ignored and self.ignored(base):
                return  # skip the page bookkeeping and hashing altogether
            group = ram.setdefault(base, _RamGroup())
            group.version = group.version if group.version is not None else section.version_id
            group.page_size = body.page_size
            for item in body.items:
                if isinstance(item, model.RamMemSize):
                    group.total = item.total
                    for block in item.blocks:
                        group.blocks[block.idstr] = block
                elif isinstance(item, model.RamMarker) and item.kind == "multifd_flush":
                    group.flushes += 1
            return
        key = record_path(section)
        self.start(key, (section.idstr, section.instance_id or 0, _KIND_RANK.get(section.type, 9)),
                   section_group(section))
        if self.ignored and self.ignored(key):
            return
        if isinstance(body, model.VfioBody) or section.type == "section_part":
            # every PART of a section is one group: how data is split over iterations is timing
            group = vfio.setdefault(key, _VfioGroup())
            if section.type != "section_part" or not self.groups[key]:
                self.emit(f"{key}/@version", _scalar(section.version_id))
            if isinstance(body, model.VfioBody):
                markers: list[str] = []
                for item in body.items:
                    if item.kind == "data" and item.data is not None:
                        for chunk in self.data(item.data):
                            group.digest.update(chunk)
                        group.length += item.data.length
                    if item.config is not None:
                        group.configs.append(item.config)
                    if not markers or item.kind != "data" or markers[-1] != "data":
                        markers.append(item.kind)
                # the distinct marker sequences of the records, so the number of PARTs does not show
                group.markers[", ".join(markers)] = None
            elif isinstance(body, model.OpaqueBody):
                group.opaque.append(body.data)
            elif isinstance(body, model.VmstateBody):
                self.vmstate(key, body)
            return
        self.emit(f"{key}/@version", _scalar(section.version_id))
        if isinstance(body, model.VmstateBody):
            self.vmstate(key, body)
        elif isinstance(body, model.OpaqueBody):
            self.opaque(f"{key}/@opaque", [body.data])

    def vmstate(self, path: str, body: model.VmstateBody) -> None:
        self.level(path, body.vmsd_name, body.fields, body.subsections)

    def opaque(self, path: str, blobs: list[model.Blob]) -> None:
        length = sum(b.length for b in blobs)
        if length <= INLINE_BYTES:
            self.emit(path, b"".join(b"".join(self.data(b)) for b in blobs).hex() or "(0 bytes)")
            return
        digest = hashlib.sha256()
        for blob in blobs:
            for chunk in self.data(blob):
                digest.update(chunk)
        self.emit(path, f"{length} bytes, sha256 {digest.hexdigest()}")

    # ------------------------------------------------------------ vmstate values

    def level(self, path: str, vmsd: str, fields: tuple[model.Field, ...],
              subsections: tuple[model.Subsection, ...]) -> None:
        """The fields, then the subsections, of one vmstate level, named as naming.level_names does."""
        names = level_names([f.name for f in fields] + [subsection_name(vmsd, s.name) for s in subsections],
                            arrays={i for i, f in enumerate(fields) if isinstance(f.value, list)})
        for f, name in zip(fields, names):
            p = self.unique(f"{path}/{_escape(name)}")
            if self.ignored and self.ignored(p):
                continue
            if self.options.offsets and f.span is not None:
                self.emit(f"{p}/@offset", f"{f.span.offset:#x}")
            self.value(p, f.type, f.value)
        for sub, name in zip(subsections, names[len(fields):]):
            p = self.unique(f"{path}/{_escape(name)}")
            if self.ignored and self.ignored(p):
                continue
            self.emit(f"{p}/@version", str(sub.version))
            if self.options.offsets and sub.span is not None:
                self.emit(f"{p}/@offset", f"{sub.span.offset:#x}")
            self.level(p, sub.name, sub.fields, sub.subsections)

    def value(self, path: str, ftype: str, value: Any) -> None:
        if isinstance(value, model.StructValue):
            self.level(path, value.vmsd_name, value.fields, value.subsections)
        elif isinstance(value, list):
            self.items(path, ftype, value)
        elif isinstance(value, (bytes, bytearray)):
            self.bytes(path, bytes(value))
        elif isinstance(value, model.Blob):
            self.emit(path, self.big(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if key == "fourcc" and isinstance(item, int):  # ramfb cfg: show the DRM fourcc as QEMU names it
                    letters = item.to_bytes(4, "little")
                    item = letters.decode() if all(0x20 <= b < 0x7F for b in letters) else item
                self.value(f"{path}/{_escape(printable(str(key)))}", ftype, item)
        else:
            self.emit(path, _scalar(value))

    def items(self, path: str, ftype: str, values: list[Any]) -> None:
        if len(values) <= INLINE_ITEMS or not {type(v) for v in values} <= {int, bool}:
            for i, item in enumerate(values):
                self.value(element(path, i), ftype, item)
            return
        self.emit(f"{path}/@length", str(len(values)))
        nonzero = [(i, v) for i, v in enumerate(values) if v]
        if len(nonzero) <= SPARSE_ITEMS:
            for i, item in nonzero:
                self.emit(element(path, i), _scalar(item))
        else:
            self.emit(f"{path}/@sha256", _sha(",".join(map(_scalar, values)).encode()))

    def bytes(self, path: str, data: bytes) -> None:
        if len(data) <= INLINE_BYTES:
            self.emit(path, data.hex() or "(0 bytes)")
            return
        self.emit(f"{path}/@length", str(len(data)))
        for start in range(0, len(data), ROW_BYTES):
            row = data[start:start + ROW_BYTES]
            if any(row):
                self.emit(f"{path}/{start:#06x}", _rows(row))

    # ------------------------------------------------------------ RAM

    def ram(self, key: str, group: _RamGroup) -> None:
        self.group = key
        self.emit(f"{key}/@version", _scalar(group.version))
        self.emit(f"{key}/page_size", str(group.page_size))
        if group.total is not None:
            self.emit(f"{key}/total", str(group.total))
        if group.flushes:
            self.emit(f"{key}/multifd_flush", str(group.flushes))
        state, summaries = self.ram_state, self.ram_summaries
        names = set(group.blocks) | (set(state.blocks) if state is not None else set()) \
            | (set(summaries.blocks) if summaries is not None else set())
        for name in sorted(names):
            path = f"{key}/{_escape(printable(name))}"
            if self.ignored and self.ignored(path):
                continue
            block = group.blocks.get(name)
            if block is not None:
                self.emit(f"{path}/used_length", str(block.used_length))
                if block.addr is not None:
                    self.emit(f"{path}/addr", f"{block.addr:#x}")
                if block.mapped_ram is not None:
                    for k in sorted(block.mapped_ram):
                        self.emit(f"{path}/mapped_ram/{k}", str(block.mapped_ram[k]))
                if block.region is not None:
                    self.emit(f"{path}/mapped_ram/region", self.big(block.region))
            done = summaries.summary(name) if summaries is not None else None
            if done is not None:
                counts, digest = done
            elif state is not None:
                if name in state.blocks and state.blocks[name].table is not None and state.buf is None:
                    raise GoldenError("a golden needs the stream's bytes to hash RAM pages; pass its Source")
                counts, digest = block_summary(state, state.blocks.get(name))
            else:
                counts, digest = {"zero": 0, "page": 0, "xbzrle": 0}, hashlib.sha256().hexdigest()
            self.emit(f"{path}/pages/zero", str(counts["zero"]))
            self.emit(f"{path}/pages/normal", str(counts["page"]))
            for kind in ("xbzrle", "compressed"):  # lines only where the stream has such pages
                if counts.get(kind):
                    self.emit(f"{path}/pages/{kind}", str(counts[kind]))
            self.emit(f"{path}/sha256", digest)

    # ------------------------------------------------------------ VFIO, vmdesc, order

    def vfio(self, key: str, group: _VfioGroup) -> None:
        self.group = key
        if group.markers:
            self.emit(f"{key}/markers", " | ".join(group.markers))
        if group.length or any("data" in m.split(", ") for m in group.markers):
            self.emit(f"{key}/data", f"{group.length} bytes, sha256 {group.digest.hexdigest()}")
        for n, config in enumerate(group.configs):
            path = f"{key}/config" if n == 0 else f"{key}/config~{n + 1}"
            self.emit(f"{path}/@version", str(config.version))
            self.vmstate(path, config)
        if group.opaque:
            self.opaque(f"{key}/@opaque", group.opaque)

    def vmdesc(self, record: model.Vmdesc) -> None:
        self.start("vmdesc")
        if record.text is not None:
            text = record.text
        elif record.span is not None and self.buf is not None:
            text = bytes(self.buf[record.span.offset + 5:record.span.end])
        else:
            text = json.dumps(record.document).encode()
        self.emit("vmdesc/length", str(len(text)))
        self.emit("vmdesc/sha256", _sha(text))

    def order(self, stream: model.MigrationStream) -> None:
        self.start("order")
        labels: list[list[Any]] = []
        for record in stream.records:
            if isinstance(record, model.Section):
                label = f"{record_path(record)} (id {record.section_id})"
            elif isinstance(record, model.Command):
                label = f"command {record.name}"
            else:
                label = record.type
            if self.options.offsets:
                labels.append([label + _at(record.span), 1])
            elif labels and labels[-1][0] == label:
                labels[-1][1] += 1
            else:
                labels.append([label, 1])
        for n, (label, count) in enumerate(labels):
            self.emit(f"order/{n}", label if count == 1 else f"{label} x{count}")


def _at(span: model.Span | None) -> str:
    return f" @{span.offset:#x}+{span.length}" if span is not None else ""
