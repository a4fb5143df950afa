"""Frozen dataclasses of a decoded stream, with the byte span of every piece.

A `MigrationStream` is its records in stream order. The spans of the records
tile the input from 0 to its size; inside a record, fields, subsections, RAM
runs and VFIO chunks carry their own spans. Spans are not compared (`compare=False`):
equality is about content, so diffs and round-trip checks ignore positions.

Bulk bytes (RAM pages, VFIO device data, big buffers) are `Blob`s: where they
are in the source, never the bytes themselves, so memory does not grow with
the stream.

Imports: nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Union


@dataclass(frozen=True, slots=True)
class Span:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes left in the source: `length` bytes at `offset` of the input (or carried in `data`)."""

    offset: int
    length: int
    data: bytes | None = field(default=None, compare=False)


# ---------------------------------------------------------------- vmstate values


@dataclass(frozen=True, slots=True)
class Field:
    """One decoded field. `value` is an int, bool, bytes, Blob, str, StructValue, or a list of those."""

    name: str
    type: str
    value: Any
    span: Span | None = field(default=None, compare=False)
    #: a built-in reading of a raw value (e.g. the ramfb cfg geometry); derived, never encoded
    info: dict[str, Any] | None = field(default=None, compare=False)
    #: the vmdesc's "index" of one element of an array QEMU describes element by element (`name`
    #: then ends in "[index]"); kept so a vmdesc written for the stream says it the same way
    index: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class StructValue:
    vmsd_name: str
    version: int
    fields: tuple[Field, ...]
    subsections: tuple[Subsection, ...] = ()


@dataclass(frozen=True, slots=True)
class Subsection:
    name: str
    version: int
    fields: tuple[Field, ...]
    subsections: tuple[Subsection, ...] = ()
    span: Span | None = field(default=None, compare=False)


def walk_fields(fields: Iterable[Field], subsections: Iterable[Subsection] = ()) -> Iterator[Field]:
    """Every field below these fields and subsections, depth first, in stream order."""
    for f in fields:
        yield f
        values = f.value if isinstance(f.value, list) else [f.value]
        for value in values:
            if isinstance(value, StructValue):
                yield from walk_fields(value.fields, value.subsections)
    for sub in subsections:
        yield from walk_fields(sub.fields, sub.subsections)


# ---------------------------------------------------------------- section bodies


@dataclass(frozen=True, slots=True)
class VmstateBody:
    """A section payload decoded by a description (from the vmdesc or built in)."""

    vmsd_name: str
    version: int
    fields: tuple[Field, ...]
    subsections: tuple[Subsection, ...] = ()
    origin: str = field(default="vmdesc", compare=False)


@dataclass(frozen=True, slots=True)
class OpaqueBody:
    """Well-framed bytes vmig has no description for (kept verbatim)."""

    data: Blob
    reason: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class RamBlock:
    idstr: str
    used_length: int
    page_size: int | None = None
    addr: int | None = None
    mapped_ram: dict[str, int] | None = None
    #: mapped-ram: bitmap + pages region that follows the header in the file
    region: Blob | None = None
    #: mapped-ram: pages whose bit is set in the block's bitmap (derived)
    present_pages: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RamMemSize:
    total: int
    blocks: tuple[RamBlock, ...]
    span: Span | None = field(default=None, compare=False)


#: run kinds whose run is one record (each carries a payload of its own)
SINGLE_RECORD_KINDS = frozenset({"xbzrle", "compressed"})


@dataclass(frozen=True, slots=True)
class RamPages:
    """A run of page records of one kind, in one block, at consecutive offsets.

    Every record after the first has CONTINUE set; the first names its block
    unless `named` is false (it continues the block of an earlier record, which
    may be in an earlier section). An XBZRLE or a compressed record (COMPRESS_PAGE,
    QEMU <= 9.0) is a run of its own: each carries its own payload.
    """

    kind: str  # "zero" | "page" | "xbzrle" | "compressed"
    block: str
    offset: int
    count: int
    named: bool
    fill: int = 0  # ZERO records' fill byte (always 0 from QEMU)
    #: the page contents (kind "page"): count pages back to back with headers between, see codec;
    #: kind "compressed": the record's zlib data (from a decode: where it lies in the input)
    data: tuple[Blob, ...] | None = field(default=None, compare=False)
    #: xbzrle: the encoded delta
    delta: bytes | None = None
    span: Span | None = field(default=None, compare=False)

    @property
    def pages_written(self) -> int:
        """Pages the run's records write: `count`, but one for an XBZRLE or compressed run (one record)."""
        return 1 if self.kind in SINGLE_RECORD_KINDS else self.count

    def record_size(self, page_size: int) -> int:
        """Bytes of each record after the first (the first adds the block name when `named`)."""
        return 8 + (page_size if self.kind == "page" else 1)

    def record_offset(self, i: int, page_size: int) -> int:
        """Input offset of record i's 8-byte address word."""
        assert self.span is not None
        if i == 0:
            return self.span.offset
        name = 1 + len(self.block.encode("utf-8", "surrogateescape")) if self.named else 0
        return self.span.offset + name + i * self.record_size(page_size)

    def payload_offset(self, i: int, page_size: int) -> int:
        """Input offset of page i's contents (kind "page"): the first record has the 8-byte word and,
        when `named`, the block name before its page; every later record only the word."""
        assert self.span is not None
        name = 1 + len(self.block.encode("utf-8", "surrogateescape")) if self.named else 0
        return self.span.offset + 8 + name + i * (page_size + 8)


@dataclass(frozen=True, slots=True)
class RamMarker:
    kind: str  # "eos" | "multifd_flush"
    span: Span | None = field(default=None, compare=False)


RamItem = Union[RamMemSize, RamPages, RamMarker]


@dataclass(frozen=True, slots=True)
class RamBody:
    """One RAM section's records. `items` holds the block list, the markers and, unless the
    decode dropped them (`runs_kept` false: a summary-only decode, memory flat in stream size),
    the runs of page records. `counts` (block -> kind -> pages) is always there. Without the runs,
    `walk_again` (set by the decode, while its source is open) walks the section again from the
    source and gives every item, runs included: see `every_item`."""

    items: tuple[RamItem, ...]
    page_size: int = 4096
    counts: dict[str, dict[str, int]] | None = field(default=None, compare=False)
    runs_kept: bool = field(default=True, compare=False)
    walk_again: Callable[[], Iterable[RamItem]] | None = field(default=None, compare=False, repr=False)

    def every_item(self) -> Iterable[RamItem]:
        """The items, runs included: those kept, or those of the section walked again."""
        if self.runs_kept or self.walk_again is None:
            return self.items
        return self.walk_again()

    def block_counts(self) -> dict[str, dict[str, int]]:
        """Pages per block and kind ("zero", "page", "xbzrle"; "compressed" only where there are
        some), in the order blocks first appear."""
        if self.counts is not None:
            return self.counts
        counts: dict[str, dict[str, int]] = {}
        for item in self.items:
            if isinstance(item, RamPages):
                per = counts.setdefault(item.block, {"zero": 0, "page": 0, "xbzrle": 0})
                per[item.kind] = per.get(item.kind, 0) + item.count
        return counts


@dataclass(frozen=True, slots=True)
class VfioItem:
    """One VFIO framing element: a marker, a data chunk, or the device config state."""

    kind: str  # "setup" | "end_of_state" | "init_data_sent" | "data" | "config"
    data: Blob | None = None
    config: VmstateBody | None = None
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class VfioBody:
    items: tuple[VfioItem, ...]


Body = Union[VmstateBody, OpaqueBody, RamBody, VfioBody]


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Header:
    magic: int
    version: int
    span: Span | None = field(default=None, compare=False)
    type: str = "header"


@dataclass(frozen=True, slots=True)
class Configuration:
    machine: str
    subsections: tuple[Subsection, ...] = ()
    span: Span | None = field(default=None, compare=False)
    type: str = "configuration"


@dataclass(frozen=True, slots=True)
class Section:
    type: str  # "section_start" | "section_part" | "section_end" | "section_full"
    section_id: int
    idstr: str
    instance_id: int | None  # on the wire in START/FULL only; resolved for PART/END
    version_id: int | None
    body: Body
    footer: bool = True
    span: Span | None = field(default=None, compare=False)

    @property
    def long_header(self) -> bool:
        return self.type in ("section_start", "section_full")


@dataclass(frozen=True, slots=True)
class Command:
    cmd: int
    name: str
    data: bytes
    #: MIG_CMD_PACKAGED: the embedded bytes that follow outside `data`
    package: Blob | None = None
    span: Span | None = field(default=None, compare=False)
    type: str = "command"


@dataclass(frozen=True, slots=True)
class Eof:
    span: Span | None = field(default=None, compare=False)
    type: str = "eof"


@dataclass(frozen=True, slots=True)
class Vmdesc:
    """The JSON trailer. `document` is the parsed JSON when re-serialising it gives the same
    bytes, else None and `text` keeps the exact bytes."""

    document: Any
    text: bytes | None = None
    span: Span | None = field(default=None, compare=False)
    type: str = "vmdesc"


Record = Union[Header, Configuration, Section, Command, Eof, Vmdesc]


@dataclass(frozen=True, slots=True)
class MigrationStream:
    records: tuple[Record, ...]
    size: int
    source: str | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: decode stopped early (--partial): the error that stopped it
    error: str | None = field(default=None, compare=False)
    #: what wrapped the stream in its file, as `vmig decode --json` writes it ({"layers": [...]},
    #: see source.Layer); set by jsonform.loads so encode can rebuild the container
    container: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def sections(self) -> tuple[Section, ...]:
        return tuple(r for r in self.records if isinstance(r, Section))

    @property
    def configuration(self) -> Configuration | None:
        return next((r for r in self.records if isinstance(r, Configuration)), None)

    @property
    def vmdesc(self) -> Vmdesc | None:
        return next((r for r in self.records if isinstance(r, Vmdesc)), None)
