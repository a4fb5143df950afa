"""Golden files: a canonical, reviewable text summary of a stream, and the comparison CI runs.

A golden file sits beside its stream (`out.bin` -> `out.golden.txt`) and holds
one `path = value` line per value, under `[group]` headers, one group per
section. It is what `vmig golden update` writes and `vmig golden check`
compares with a fresh decode: a difference is reported by field path, old ->
new, grouped by section, and fails the check. The format (docs/golden.md):

    # vmig golden file (format 1). `vmig golden update` writes it, `vmig golden check` compares it.
    # options: {"ignore": [], "offsets": false, "order": false}

    [stream]
    stream/version = 3
    ...
    [ramfb-dev]
    ramfb-dev/@version = 1
    ramfb-dev/state/cfg/width = 1024

- Sections are named by idstr, `#instance` when the instance id is not 0, and
  `:start` / `:part` / `:end` for iterative records (all PARTs of a section are
  one group); never by section id. The RAM sections of a stream are one group
  (how pages are split over START/PART/END depends on timing): per block its
  length, the count of zero and normal pages in the final state (the last
  record of a page wins) and a sha256 over that final state (ram.summary).
- Groups are sorted by name, so section order and section ids do not matter,
  and byte offsets are left out; `order` adds the record sequence with section
  ids, `offsets` adds it with offsets plus an `@offset` line per field.
- Ignore patterns (fnmatch on the path; a pattern matching a path's ancestor,
  such as `timer`, ignores the whole subtree) leave paths out of goldens and
  out of comparisons. Options come from the command line, from
  `vmig-golden.toml` next to the streams, and from the golden's own
  `# options:` line, so a golden keeps being checked the way it was written.

Imports: errors, model, codec (decode), source, text, outfile, ram (state, summary); no rich, no click.
References: migration/ram.c (ram_save_page, save_zero_page: the page records summarised),
hw/vfio/migration.c (VFIO_MIG_FLAG_*: the VFIO markers listed).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from .codec.decode import decode
from .source import Source
from .text import printable
from .errors import InputError, VmigError
from .model import (
    Blob,
    Command,
    Configuration,
    Eof,
    Field,
    Header,
    MigrationStream,
    OpaqueBody,
    RamBody,
    RamMarker,
    RamMemSize,
    Section,
    Span,
    StructValue,
    Subsection,
    VfioBody,
    VmstateBody,
    Vmdesc,
)
from .naming import RECORD_KEYS, IgnorePatterns, element, level_names, section_name, subsection_name
from .outfile import atomic_output
from .ram.state import PageState
from .ram.summary import StreamSummaries, block_summary

FORMAT = 1
GOLDEN_SUFFIX = ".golden.txt"
#: compressed raw streams (fixtures keep big ones xz'd): `x.bin.xz`'s golden is `x.golden.txt`
COMPRESSED_STREAM_SUFFIXES = (".bin.xz", ".bin.gz", ".bin.bz2", ".bin.zst")
CONFIG_NAME = "vmig-golden.toml"
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
_FORMAT_LINE = re.compile(r"# vmig golden file \(format (\d+)\)")


class GoldenError(InputError):
    """A golden file or vmig-golden.toml that cannot be used (unreadable, malformed, stale options)."""


# ================================================================ options


@dataclass(frozen=True, slots=True)
class GoldenOptions:
    """What a golden holds besides content. `offsets` implies the record order."""

    offsets: bool = False
    order: bool = False
    ignore: tuple[str, ...] = ()

    def merge(self, other: GoldenOptions) -> GoldenOptions:
        return GoldenOptions(offsets=self.offsets or other.offsets, order=self.order or other.order,
                             ignore=tuple(dict.fromkeys(self.ignore + other.ignore)))

    @property
    def records_order(self) -> bool:
        return self.order or self.offsets

    def to_json(self) -> str:
        return json.dumps({"ignore": list(self.ignore), "offsets": self.offsets, "order": self.order})

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> GoldenOptions:
        if not isinstance(data, dict):
            raise GoldenError(f"{where}: expected a table of options, found {type(data).__name__}")
        unknown = sorted(set(data) - {"ignore", "offsets", "order"})
        if unknown:
            raise GoldenError(f"{where}: unknown option {', '.join(map(repr, unknown))}; "
                              f"expected ignore, offsets or order")
        ignore = data.get("ignore", [])
        if isinstance(ignore, str):
            ignore = [ignore]
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise GoldenError(f"{where}: 'ignore' must be a list of strings (fnmatch patterns)")
        flags = {}
        for key in ("offsets", "order"):
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise GoldenError(f"{where}: '{key}' must be true or false, found {value!r}")
            flags[key] = value
        return cls(ignore=tuple(ignore), **flags)


def find_config(start: Path, stop: Path | None = None) -> Path | None:
    """The nearest vmig-golden.toml in `start` or its parents, up to and including `stop`
    (only `start` itself when `stop` is None or not an ancestor)."""
    start, here = start.resolve(), start.resolve()
    top = stop.resolve() if stop is not None else start
    if top != here and top not in here.parents:
        top = here
    while True:
        candidate = here / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if here == top or here.parent == here:
            return None
        here = here.parent


def load_config(path: Path | None) -> GoldenOptions:
    """Options from a vmig-golden.toml (`ignore = [...]`, `offsets`, `order`); defaults when `path` is None."""
    if path is None:
        return GoldenOptions()
    from .textin import read_toml

    return GoldenOptions.from_mapping(read_toml(path, GoldenError), str(path))


# ================================================================ the golden text


class Entry(NamedTuple):
    group: str
    path: str
    value: str


@dataclass(frozen=True, slots=True)
class Golden:
    """A golden: its options and its `path = value` entries, in file order."""

    options: GoldenOptions
    entries: tuple[Entry, ...]
    format: int = FORMAT

    def text(self) -> str:
        lines = [f"# vmig golden file (format {FORMAT}). `vmig golden update` writes it, "
                 f"`vmig golden check` compares it; see docs/golden.md.",
                 f"# options: {self.options.to_json()}"]
        group = None
        for entry in self.entries:
            if entry.group != group:
                group = entry.group
                lines += ["", f"[{group}]"]
            lines.append(f"{entry.path} = {entry.value}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, name: str = "golden file") -> Golden:
        options, entries, group, version = GoldenOptions(), [], "", FORMAT
        for number, line in enumerate(text.splitlines(), 1):
            found = _FORMAT_LINE.match(line) if number == 1 else None
            if found:
                version = int(found.group(1))
            elif line.startswith("# options:"):
                from .textin import TextInputError, loads

                try:
                    options = GoldenOptions.from_mapping(loads(line.partition(":")[2]), f"{name}:{number}")
                except TextInputError as exc:
                    raise GoldenError(f"{name}:{number}: the options line is not JSON: {exc.reason}") from None
            elif not line.strip() or line.startswith("#"):
                continue
            elif line.startswith("[") and line.endswith("]") and " = " not in line:
                group = line[1:-1]
            else:
                path, sep, value = line.partition(" = ")
                if not sep:
                    raise GoldenError(f"{name}:{number}: expected 'path = value', a [group] or a # comment, "
                                      f"found {line[:60]!r}")
                entries.append(Entry(group, path, value))
        return cls(options, tuple(entries), version)


# ================================================================ stream -> golden


def golden_of(stream: MigrationStream, source: Source | bytes | None = None,
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
    if ram is None and not complete and any(isinstance(r, Section) and isinstance(r.body, RamBody)
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
    sets each page once, in address order, is summarised in one walk (its pages hashed by a second
    thread as the walk goes); any other is walked again into a final page state."""
    with Source.open(os.fspath(path), snapshot=snapshot) as src:
        summaries = StreamSummaries(src)
        try:
            stream = decode(src, ram_runs=False, on_ram_item=summaries.feed, on_ram_partial=summaries.partial)
        finally:
            summaries.close()
        if summaries.complete:
            return golden_of(stream, src, options, summaries=summaries)
        with PageState(src) as ram:
            decode(src.sibling(), ram_runs=False, on_ram_item=ram.feed)
            return golden_of(stream, src, options, ram.finish(), summaries)


def section_group(section: Section) -> str:
    """The group of a section record: its section's name (naming.section_name), e.g. ``dma#1``."""
    return _escape(section_name(section.idstr, section.instance_id))


def record_path(section: Section) -> str:
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
    configs: list[VmstateBody] = field(default_factory=list)
    opaque: list[Blob] = field(default_factory=list)


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

    def data(self, blob: Blob) -> Iterator[bytes]:
        if blob.data is not None:
            yield blob.data
            return
        if self.buf is None:
            raise GoldenError("a golden needs the stream's bytes for RAM pages and big buffers; pass its Source")
        for start in range(blob.offset, blob.offset + blob.length, CHUNK):
            yield bytes(self.buf[start:min(start + CHUNK, blob.offset + blob.length)])

    def big(self, blob: Blob) -> str:
        digest = hashlib.sha256()
        for chunk in self.data(blob):
            digest.update(chunk)
        return f"{blob.length} bytes, sha256 {digest.hexdigest()}"

    # ------------------------------------------------------------ driver

    def run(self, stream: MigrationStream) -> Golden:
        ram: dict[str, _RamGroup] = {}
        vfio: dict[str, _VfioGroup] = {}
        commands: dict[str, int] = {}
        footers = None
        self.start("stream")
        for record in stream.records:
            if isinstance(record, Header):
                self.start("stream")
                self.emit("stream/version", str(record.version))
            elif isinstance(record, Configuration):
                self.start("configuration")
                self.emit("configuration/machine", _scalar(record.machine))
                self.level("configuration", "configuration", (), record.subsections)
            elif isinstance(record, Section):
                footers = record.footer if footers is None else footers
                self.section(record, ram, vfio)
            elif isinstance(record, Command):
                self.start("commands")
                n = commands.get(record.name, 0)
                commands[record.name] = n + 1
                path = f"commands/{record.name}/{n}"
                self.emit(path, record.data.hex() or "(0 bytes)")
                if record.package is not None:
                    self.emit(f"{path}/package", self.big(record.package))
            elif isinstance(record, Eof):
                self.start("stream")
                self.emit("stream/eof", "true")
            elif isinstance(record, Vmdesc):
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

    def section(self, section: Section, ram: dict[str, _RamGroup], vfio: dict[str, _VfioGroup]) -> None:
        body = section.body
        if isinstance(body, RamBody):
            base = section_group(section)
            self.start(base, (section.idstr, section.instance_id or 0, 0))
            if self.ignored and self.ignored(base):
                return  # skip the page bookkeeping and hashing altogether
            group = ram.setdefault(base, _RamGroup())
            group.version = group.version if group.version is not None else section.version_id
            group.page_size = body.page_size
            for item in body.items:
                if isinstance(item, RamMemSize):
                    group.total = item.total
                    for block in item.blocks:
                        group.blocks[block.idstr] = block
                elif isinstance(item, RamMarker) and item.kind == "multifd_flush":
                    group.flushes += 1
            return
        key = record_path(section)
        self.start(key, (section.idstr, section.instance_id or 0, _KIND_RANK.get(section.type, 9)),
                   section_group(section))
        if self.ignored and self.ignored(key):
            return
        if isinstance(body, VfioBody) or section.type == "section_part":
            # every PART of a section is one group: how data is split over iterations is timing
            group = vfio.setdefault(key, _VfioGroup())
            if section.type != "section_part" or not self.groups[key]:
                self.emit(f"{key}/@version", _scalar(section.version_id))
            if isinstance(body, VfioBody):
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
            elif isinstance(body, OpaqueBody):
                group.opaque.append(body.data)
            elif isinstance(body, VmstateBody):
                self.vmstate(key, body)
            return
        self.emit(f"{key}/@version", _scalar(section.version_id))
        if isinstance(body, VmstateBody):
            self.vmstate(key, body)
        elif isinstance(body, OpaqueBody):
            self.opaque(f"{key}/@opaque", [body.data])

    def vmstate(self, path: str, body: VmstateBody) -> None:
        self.level(path, body.vmsd_name, body.fields, body.subsections)

    def opaque(self, path: str, blobs: list[Blob]) -> None:
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

    def level(self, path: str, vmsd: str, fields: tuple[Field, ...], subsections: tuple[Subsection, ...]) -> None:
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
        if isinstance(value, StructValue):
            self.level(path, value.vmsd_name, value.fields, value.subsections)
        elif isinstance(value, list):
            self.items(path, ftype, value)
        elif isinstance(value, (bytes, bytearray)):
            self.bytes(path, bytes(value))
        elif isinstance(value, Blob):
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
            if counts["xbzrle"]:
                self.emit(f"{path}/pages/xbzrle", str(counts["xbzrle"]))
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

    def vmdesc(self, record: Vmdesc) -> None:
        self.start("vmdesc")
        if record.text is not None:
            text = record.text
        elif record.span is not None and self.buf is not None:
            text = bytes(self.buf[record.span.offset + 5:record.span.end])
        else:
            text = json.dumps(record.document).encode()
        self.emit("vmdesc/length", str(len(text)))
        self.emit("vmdesc/sha256", _sha(text))

    def order(self, stream: MigrationStream) -> None:
        self.start("order")
        labels: list[list[Any]] = []
        for record in stream.records:
            if isinstance(record, Section):
                label = f"{record_path(record)} (id {record.section_id})"
            elif isinstance(record, Command):
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


def _at(span: Span | None) -> str:
    return f" @{span.offset:#x}+{span.length}" if span is not None else ""


# ================================================================ comparison


@dataclass(frozen=True, slots=True)
class Change:
    """One path whose value differs: `old` None means added, `new` None means removed."""

    group: str
    path: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"


def compare(expected: Golden, actual: Golden, ignore: Iterable[str] = ()) -> list[Change]:
    """Differences by path, grouped by section (groups in golden order, then new ones)."""
    ignored = IgnorePatterns(ignore)
    old = {e.path: e for e in expected.entries if not (ignored and ignored(e.path))}
    new = {e.path: e for e in actual.entries if not (ignored and ignored(e.path))}
    by_group: dict[str, list[Change]] = {}
    for path, entry in old.items():
        now = new.get(path)
        if now is None:
            by_group.setdefault(entry.group, []).append(Change(entry.group, path, entry.value, None))
        elif now.value != entry.value:
            by_group.setdefault(now.group, []).append(Change(now.group, path, entry.value, now.value))
    for path, entry in new.items():
        if path not in old:
            by_group.setdefault(entry.group, []).append(Change(entry.group, path, None, entry.value))
    return [change for changes in by_group.values() for change in changes]


def change_line(change: Change) -> str:
    """`path: old -> new`, with (absent) for a side that does not have the path."""
    old = "(absent)" if change.old is None else change.old
    new = "(absent)" if change.new is None else change.new
    return f"{change.path}: {old} \u2192 {new}"


def report_lines(result: CheckResult, limit: int | None = 200) -> list[str]:
    """Plain text of a check result (the pytest plugin's failure message; the CLI styles the same)."""
    head = f"{result.status.upper()} {result.stream}"
    if result.status == "ok":
        return [f"{head}: matches {result.golden}"]
    if result.status != "different":
        return [f"{head}: {result.message}"]
    lines = [f"{head}: {len(result.changes)} difference{'s' if len(result.changes) != 1 else ''} "
             f"from {result.golden} (old \u2192 new)"]
    group = None
    for n, change in enumerate(result.changes):
        if limit and n >= limit:
            lines.append(f"  ... and {len(result.changes) - n} more")
            break
        if change.group != group:
            group = change.group
            lines.append(f"  [{group}]")
        lines.append(f"    {'~+-'[('changed', 'added', 'removed').index(change.kind)]} {change_line(change)}")
    return lines


#: `vmig golden check --json`'s document format (schemas/golden-check.schema.json)
CHECK_JSON_FORMAT = 1


def check_document(results: Iterable[CheckResult], orphans: Iterable[Path] = (), version: str = "") -> dict[str, Any]:
    """`vmig golden check --json`: every stream's status and all its changes (no --limit), the
    counts, and the goldens whose stream is gone. `passed` is what exit status 0 means."""
    results = list(results)
    counts = dict.fromkeys(CHECK_STATUSES, 0)
    for result in results:
        counts[result.status] += 1
    return {
        "vmig": {"golden_check_format": CHECK_JSON_FORMAT, "version": version},
        "passed": not any(r.failed for r in results),
        "counts": counts,
        "streams": [{"stream": str(r.stream), "snapshot": r.snapshot, "golden": str(r.golden), "status": r.status,
                     "message": r.message or None,
                     "changes": [{"group": c.group, "path": c.path, "kind": c.kind, "old": c.old, "new": c.new}
                                 for c in r.changes]}
                    for r in results],
        "orphans": [str(p) for p in orphans],
    }


def junit_xml(results: Iterable[CheckResult], suite: str = "vmig golden check") -> bytes:
    """JUnit XML of a check, as CI systems read it: one testcase per stream (per VM state of a
    qcow2 image), named by the stream's file name in a class named by its directory; a difference,
    a missing or stale golden is a <failure> holding the report's text (every change); a stream
    or golden that cannot be read is an <error>. No times: the file of -j1 and -jN is the same."""
    from xml.etree import ElementTree as ET

    results = list(results)
    failures = sum(r.status in ("different", "missing", "stale") for r in results)
    errors = sum(r.status == "error" for r in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors)}
    top = ET.Element("testsuites", name=suite, **counts)
    tests = ET.SubElement(top, "testsuite", name=suite, skipped="0", **counts)
    for result in results:
        name = result.stream.name + (f"@{result.snapshot}" if result.snapshot is not None else "")
        case = ET.SubElement(tests, "testcase", classname=_xml_text(str(result.stream.parent)),
                             name=_xml_text(name), file=_xml_text(str(result.stream)))
        if result.status == "ok":
            continue
        head, *rest = report_lines(result, limit=None)
        kind = "error" if result.status == "error" else "failure"
        problem = ET.SubElement(case, kind, type=result.status, message=_xml_text(head))
        problem.text = _xml_text("\n".join(rest) if rest else head)
    ET.indent(top)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True) + b"\n"


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """Characters XML 1.0 cannot hold (controls; a path's undecodable bytes) as \\xNN / \\uNNNN."""
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# ================================================================ files: check and update


def golden_path(stream: str | os.PathLike[str]) -> Path:
    """The golden beside a stream: `dir/out.bin` (or `dir/out.bin.xz`, ...) -> `dir/out.golden.txt`."""
    path = Path(stream)
    for suffix in COMPRESSED_STREAM_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name[:-len(suffix)] + GOLDEN_SUFFIX)
    return path.with_name(path.stem + GOLDEN_SUFFIX)


@dataclass(frozen=True, slots=True)
class Target:
    """A stream to check, its golden, and the directory its vmig-golden.toml search stops at."""

    stream: Path
    golden: Path
    root: Path
    #: a qcow2 image with several VM states has a target (and a golden) per snapshot: its id
    snapshot: str | None = None


def find_streams(paths: Iterable[str | os.PathLike[str]]) -> list[Target]:
    """Every stream under the paths: files as given; in directories (recursively, hidden ones
    skipped) every `*.bin` and every file whose content is a stream or a container vmig reads,
    whatever it is called (source.probe: `vm.save`, `vm.qcow2`, `x.bin.xz`)."""
    from .source import probe

    targets: dict[tuple[Path, str | None], Target] = {}
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path).parts
                if any(part.startswith(".") for part in rel[:-1]) or found.name.endswith(GOLDEN_SUFFIX):
                    continue
                # *.bin is always a stream (a broken one is reported); any other name, by content
                kinds = probe(str(found)) if found.is_file() else None
                if found.is_file() and (found.suffix == ".bin" or kinds is not None):
                    for target in _targets_of(found, path, kinds):
                        targets.setdefault((target.stream, target.snapshot), target)
        elif path.is_file():
            for target in _targets_of(path, path.parent, probe(str(path))):
                targets.setdefault((target.stream, target.snapshot), target)
        else:
            raise GoldenError(f"no such file or directory: {path}")
    return list(targets.values())


def _targets_of(stream: Path, root: Path, kinds: tuple[str, ...] | None) -> list[Target]:
    """One target; a qcow2 image with several VM states: one per snapshot, its golden named
    `<stem>@<snapshot name>.golden.txt`."""
    from .source import vm_state_snapshots

    snapshots = vm_state_snapshots(str(stream)) if kinds == ("qcow2",) else []
    if len(snapshots) < 2:
        return [Target(stream, golden_path(stream), root)]
    return [Target(stream, stream.with_name(f"{stream.stem}@{_file_word(name or sid)}{GOLDEN_SUFFIX}"), root, sid)
            for sid, name in snapshots]


def _file_word(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def orphan_goldens(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Golden files under directory arguments whose stream is gone."""
    found = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found += [g for g in sorted(path.rglob("*" + GOLDEN_SUFFIX)) if not _has_stream(g)]
    return found


def _has_stream(golden: Path) -> bool:
    """Is some file beside `golden` the stream it belongs to (`x.golden.txt`: `x`, `x.bin`, `x.save`...)?"""
    stem = golden.name[:-len(GOLDEN_SUFFIX)]
    candidates = [golden.with_name(stem), *golden.parent.glob(glob.escape(stem) + ".*")]
    if any(c != golden and c.is_file() and golden_path(c) == golden for c in candidates):
        return True
    image = stem.rpartition("@")[0]  # a snapshot's golden: `vm@first.golden.txt` of `vm.qcow2`
    return bool(image) and any(c.is_file() and not c.name.endswith(GOLDEN_SUFFIX)
                               for c in golden.parent.glob(glob.escape(image) + ".*"))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """`status`: ok, different, missing (no golden), stale (the golden lacks options asked for),
    error (`message` says why). `snapshot`: the VM state of a qcow2 image checked, if it has several."""

    stream: Path
    golden: Path
    status: str
    changes: tuple[Change, ...] = ()
    message: str = ""
    snapshot: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != "ok"


CHECK_STATUSES = ("ok", "different", "missing", "stale", "error")


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """`status`: created, updated (with the changes it made), unchanged, or error (`message` says why)."""

    stream: Path
    golden: Path
    status: str
    changes: tuple[Change, ...] = ()
    message: str = ""


def _refuse_stream_as_golden(stream: Path, golden: Path) -> None:
    if golden.suffix == ".bin" or (golden.exists() and stream.exists() and os.path.samefile(golden, stream)):
        raise GoldenError(f"refusing to use {golden} as a golden file: it is a stream (.bin), and goldens "
                          f"never overwrite streams")


def read_golden(path: Path) -> Golden | None:
    from .textin import read_text

    if not path.exists():
        return None
    return Golden.parse(read_text(path, f"golden file {path}", GoldenError), str(path))


def check_stream(stream: str | os.PathLike[str], golden: str | os.PathLike[str] | None = None, *,
                 options: GoldenOptions = GoldenOptions(), config_root: str | os.PathLike[str] | None = None,
                 snapshot: str | None = None) -> CheckResult:
    """Compare a stream with its golden. Options: `options` (the caller's), vmig-golden.toml
    (searched from the golden's directory up to `config_root`) and the golden's own header.
    Decode errors and unusable goldens raise VmigError; everything else is a result."""
    stream, golden = Path(stream), Path(golden) if golden is not None else golden_path(stream)
    _refuse_stream_as_golden(stream, golden)
    expected = read_golden(golden)
    if expected is None:
        return CheckResult(stream, golden, "missing", snapshot=snapshot,
                           message=f"no golden file {golden}; a missing golden fails the check "
                                   f"(write it with `vmig golden update {stream}`, review, commit)")
    if expected.format != FORMAT:
        return CheckResult(stream, golden, "stale", snapshot=snapshot,
                           message=f"{golden} is in golden format {expected.format}; this vmig writes format "
                                   f"{FORMAT}: regenerate it with `vmig golden update {stream}` and review the diff")
    wanted = options.merge(load_config(find_config(golden.parent, Path(config_root) if config_root else None)))
    have = expected.options
    lacking = [name for name, asked, kept in (("--offsets", wanted.offsets, have.offsets),
                                             ("--order", wanted.records_order, have.records_order))
               if asked and not kept]
    if lacking:
        return CheckResult(stream, golden, "stale", snapshot=snapshot,
                           message=f"{golden} was written without {' and '.join(lacking)}, so it cannot be "
                                   f"compared with them; regenerate it with `vmig golden update "
                                   f"{' '.join(lacking)} {stream}`")
    effective = have.merge(wanted)
    actual = golden_of_path(stream, effective, snapshot)
    changes = compare(expected, actual, effective.ignore)
    return CheckResult(stream, golden, "different" if changes else "ok", tuple(changes), snapshot=snapshot)


def update_stream(stream: str | os.PathLike[str], golden: str | os.PathLike[str] | None = None, *,
                  options: GoldenOptions = GoldenOptions(), config_root: str | os.PathLike[str] | None = None,
                  snapshot: str | None = None) -> UpdateResult:
    """Write the golden of a stream (atomically), only if its text changes; never writes the stream.
    Options: the caller's, vmig-golden.toml, and those of the golden being replaced (they stick)."""
    stream, golden = Path(stream), Path(golden) if golden is not None else golden_path(stream)
    _refuse_stream_as_golden(stream, golden)
    try:
        previous = read_golden(golden)
        old_text = golden.read_text(encoding="utf-8") if previous is not None else None
    except VmigError:
        previous, old_text = None, None  # a broken golden is simply replaced
    effective = options.merge(load_config(find_config(golden.parent, Path(config_root) if config_root else None)))
    if previous is not None:
        effective = previous.options.merge(effective)
    actual = golden_of_path(stream, effective, snapshot)
    text = actual.text()
    if old_text == text:
        return UpdateResult(stream, golden, "unchanged")
    changes = tuple(compare(previous, actual)) if previous is not None else ()
    mode = 0o666 & ~_umask()
    with atomic_output(str(golden)) as out:
        out.write(text.encode("utf-8"))
        os.fchmod(out.fileno(), mode)
    return UpdateResult(stream, golden, "updated" if old_text is not None else "created", changes)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ================================================================ many streams: -j N


def default_jobs() -> int:
    """The CPUs this process may run on (its affinity, as `nproc` says), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def check_all(targets: Iterable[Target], options: GoldenOptions = GoldenOptions(),
              jobs: int = 1) -> Iterator[CheckResult]:
    """Check every target, `jobs` streams at a time in worker processes, yielding the results in
    the targets' sorted order (by stream path) whatever order they finish in. A stream that does not
    decode or a golden that cannot be read is a result of status "error" with the message."""
    return _each(_check_target, targets, options, jobs)


def update_all(targets: Iterable[Target], options: GoldenOptions = GoldenOptions(),
               jobs: int = 1) -> Iterator[UpdateResult]:
    """Update every target's golden as check_all checks them (status "error" for trouble)."""
    return _each(_update_target, targets, options, jobs)


def _check_target(target: Target, options: GoldenOptions) -> CheckResult:
    try:
        return check_stream(target.stream, target.golden, options=options, config_root=target.root,
                            snapshot=target.snapshot)
    except VmigError as err:
        return CheckResult(target.stream, target.golden, "error", message=str(err), snapshot=target.snapshot)


def _update_target(target: Target, options: GoldenOptions) -> UpdateResult:
    try:
        return update_stream(target.stream, target.golden, options=options, config_root=target.root,
                             snapshot=target.snapshot)
    except VmigError as err:
        return UpdateResult(target.stream, target.golden, "error", message=str(err))


def _each(work: Any, targets: Iterable[Target], options: GoldenOptions, jobs: int) -> Iterator[Any]:
    """`work(target, options)` for every target, in sorted order. With more than one job, each
    stream goes to a worker process (spawned, so nothing of the parent leaks into the workers; one
    stream at a time each, so a worker's memory is one stream's, flat in its size as golden_of_path
    is); the biggest streams are handed out first, so a big one does not start last and keep one
    worker busy after the others are done."""
    ordered = sorted(targets, key=lambda t: t.stream)  # stable: a qcow2's snapshots keep their order
    jobs = min(jobs, len(ordered))
    if jobs <= 1:
        for target in ordered:
            yield work(target, options)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_signals)
    try:
        biggest_first = sorted(range(len(ordered)), key=lambda i: -_size(ordered[i].stream))
        pending = {i: pool.submit(work, ordered[i], options) for i in biggest_first}
        for i in range(len(ordered)):
            try:
                yield pending.pop(i).result()
            except BrokenProcessPool:
                raise GoldenError(f"a worker process ended abruptly (killed, out of memory?) while "
                                  f"{ordered[i].stream} or another stream was worked on") from None
    except BaseException:  # Ctrl-C, SIGTERM, an error, a consumer that stops early
        _stop_workers(pool)
        raise
    pool.shutdown()


def _stop_workers(pool: Any) -> None:
    """End a pool now: SIGTERM to every worker (which unwinds, see _worker_signals), no waiting for
    the streams at hand to finish."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _worker_signals() -> None:
    """In a worker: Ctrl-C is the parent's to handle (it ends the pool), so a terminal's SIGINT to
    the whole process group does not print a traceback per worker; SIGTERM (the pool ending) unwinds
    the stream at hand, so a golden being written leaves no temporary file."""
    import signal
    import sys

    def stop(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
