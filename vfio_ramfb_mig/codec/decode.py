"""bytes -> model: walk a whole migration stream by the format's rules.

Order of work:
1. The header (magic, version).
2. The vmdesc trailer, if any, found from the end: it is the only record that
   describes device payloads, and it comes last. Its JSON holds no NUL byte,
   so the last NUL of the file is the EOF record when a vmdesc follows it.
3. Every record in order. Device sections are decoded by a description: the
   built-in one for what vmig owns (ramfb-dev, VFIO), else the vmdesc's;
   without either, a section is kept opaque up to its footer, and without a
   footer it cannot be delimited (UnknownSectionError).

Every container is read through its construct schema in wire/ (header, section
headers and footers, commands and their data, VFIO framing, the vmdesc record),
and every payload through a compiled description, all by `Source.parse`, which
gives errors their offset and path. RAM page records are the one exception:
ram/walk.py reads them 8 bytes at a time through `struct` (a measured hot path:
one construct parse per page record would dominate decode time). RAM and VFIO
data are located, never copied: payloads become spans.

Imports: construct (through source), errors, model, wire, vmstate, codec.views, text.
References: migration/savevm.c (qemu_loadvm_state, qemu_loadvm_state_main,
qemu_loadvm_section_start_full, qemu_loadvm_section_part_end, check_section_footer),
migration/ram.c (ram_load_precopy), hw/vfio/migration.c (vfio_load_state).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any, Callable

from construct import ConstructError

from ..errors import (
    BadMagicError,
    CorruptError,
    DecodeError,
    FieldPath,
    TruncatedError,
    UnknownSectionError,
    UnknownSubsectionError,
    VmdescError,
)
from .. import model
from ..vmstate.builtin import BUILTIN_SECTIONS, CONFIGURATION, PCI_CONFIG_SIZES, dirty_bitmap_chunk, vfio_pci_device
from ..vmstate.compile import UnknownSubsectionFound, compile_description
from ..vmstate.model import Description
from ..vmstate.vmdesc import Vmdesc, parse_vmdesc_text, read_vmdesc
from ..wire.stream import (
    CMD_LENGTHS,
    COMMAND_DATA,
    EofMarker,
    QEMU_VM_FILE_MAGIC,
    QEMU_VM_FILE_VERSION,
    QEMU_VM_FILE_VERSION_COMPAT,
    SECTION_TYPES,
    Cmd,
    FileHeader,
    Footer,
    LongHeader,
    RecordType,
    ShortHeader,
    VmdescHeader,
    command_name,
)
from ..wire.stream import Command as CommandRecord
from ..wire.dirtybitmap import (DIRTY_BITMAP_IDSTR, DIRTY_BITMAP_VERSION, MAX_BITS_BUFFER, BitmapFlag,
                                 effective_flags, flag_bytes)
from ..wire.vfio import DataChunkHeader, Marker, VfioMarker, is_vfio_idstr
from .convert import INLINE_LIMIT, construct_path_names, convert
from ..ram.walk import DEFAULT_PAGE_SIZE, PostcopyAdvise, RamWalk
from ..source import Source
from ..text import from_wire, printable
from .views import dirty_bitmap_info, is_express, msix_vectors


#: how far ahead a forward-only source is read at each record (Source.ensure): more than any
#: record's small reads; long payloads (RAM, VFIO data) ensure what they read themselves
RECORD_WINDOW = 1 << 20


def decode(source: Source | bytes | str, *, strict: bool = False, partial: bool = False, ram_runs: bool = True,
           ram_runs_limit: int | None = None,
           on_ram_run: Callable[[model.RamPages], None] | None = None,
           on_ram_item: Callable[[model.RamItem, int], None] | None = None,
           on_ram_partial: Callable[[model.RamPages, int], None] | None = None,
           progress: Callable[[int], None] | None = None) -> model.MigrationStream:
    """Decode a whole stream.

    Args:
        source: a `Source`, the bytes themselves, or a path ('-' for stdin).
        strict: sections vmig cannot describe are errors instead of opaque ranges.
        partial: on a decode error, return what was decoded before it (with `error` set)
            instead of raising.
        ram_runs: keep the runs of RAM page records in the model (needed to encode the stream
            again). Without them each RAM section keeps only its block list, markers and page
            counts, so memory does not grow with the stream; `RamBody.every_item` walks a
            section again for its runs (while the source is open).
        ram_runs_limit: keep at most this many runs in all (~250 bytes each); a RAM section
            whose runs would pass it keeps none of them, as with ram_runs=False
            (ram.walk.RamWalk's keep_limit).
        on_ram_run: called with each run of page records as the walk passes it, kept or not.
        on_ram_item: called with each RAM item (block list, run, marker) and the page size, in
            stream order, kept or not (what ram.state builds the final page state from).
        on_ram_partial: called with the records so far of a long run before the walk lets their
            mapped pages go (ram.walk.RamWalk's on_partial).
        progress: called with the input offset reached, every few MiB of RAM and at the end.
    """
    def run(src: Source) -> model.MigrationStream:
        stream = _Decoder(src, strict, ram_runs, on_ram_run, on_ram_item, progress, on_ram_partial,
                          ram_runs_limit).run(partial)
        if progress is not None:
            progress(src.size)
        return stream

    if isinstance(source, (bytes, bytearray, memoryview)):
        return run(Source.from_bytes(bytes(source)))
    if isinstance(source, str):
        with Source.open(source) as opened:
            return run(opened)
    return run(source)


class _Decoder:
    def __init__(self, src: Source, strict: bool, keep_ram_runs: bool = True,
                 on_ram_run: Callable[[model.RamPages], None] | None = None,
                 on_ram_item: Callable[[model.RamItem, int], None] | None = None,
                 progress: Callable[[int], None] | None = None,
                 on_ram_partial: Callable[[model.RamPages, int], None] | None = None,
                 ram_runs_limit: int | None = None) -> None:
        self.src, self.buf, self.strict = src, src.buf, strict
        self.ram_runs_limit = ram_runs_limit
        self.keep_ram_runs, self.on_ram_run, self.on_ram_item = keep_ram_runs, on_ram_run, on_ram_item
        self.progress, self.on_ram_partial = progress, on_ram_partial
        self.records: list[Any] = []
        self.warnings: list[str] = []
        self.vmdesc: Vmdesc | None = None
        self.vmdesc_offset: int | None = None
        self.vmdesc_searched = False  # a forward-only source is searched once it is read to its end
        self.page_size = DEFAULT_PAGE_SIZE
        self.page_size_known = False  # from the vmdesc or the configuration (else ADVISE may say)
        self.capabilities: set[str] = set()
        self.footers: bool | None = None
        self.opened: dict[int, tuple[str, int, int]] = {}  # section_id -> (idstr, instance, version) from START
        self.ram_walk: RamWalk | None = None
        self.advise: PostcopyAdvise | None = None  # MIG_CMD_POSTCOPY_ADVISE with data
        self.subsection_index: dict[int, Any] = {}  # for convert(): see _subsections
        src.reset_allowance()  # a Source decoded again must not start with a spent allowance

    @property
    def size(self) -> int:
        """The input's readable end: final for a file; for a forward-only source it grows as
        `ensure` reads on, and is final once the source is `complete`."""
        return self.src.size

    # ------------------------------------------------------------ driver

    def run(self, partial: bool) -> model.MigrationStream:
        try:
            self._header()
            if self.src.complete:
                self._read_to_end()
            self._records()
        except DecodeError as exc:
            if not partial:
                raise
            return self._result(error=str(exc))
        return self._result()

    def _result(self, error: str | None = None) -> model.MigrationStream:
        return model.MigrationStream(records=tuple(self.records), size=self.size, source=self.src.name,
                                     warnings=tuple(self.warnings), error=error)

    def _byte(self, pos: int, what: str, path: FieldPath) -> int:
        if pos >= self.src.ensure(pos + 1):
            raise TruncatedError(f"stream ends where {what} was expected", offset=self.size, path=path)
        return self.buf[pos]

    def _peek(self, schema: Any, pos: int) -> Any:
        """`schema` parsed at `pos`, or None where it does not fit: only to recognize records."""
        try:
            return self.src.parse(schema, pos, (), "")[0]
        except DecodeError:
            return None

    # ------------------------------------------------------------ header and trailer

    def _header(self) -> None:
        if self.src.ensure(8) < 8:
            magic = QEMU_VM_FILE_MAGIC.to_bytes(4, "big")  # "QEVM": as much of it as the input holds
            if self.buf[:4] != magic[:min(self.size, 4)] or self.size == 0:
                raise BadMagicError("not a QEMU migration stream: expected magic 'QEVM' at the start",
                                    offset=0, path=("records", 0))
            raise TruncatedError("stream ends inside the file header (8 bytes)", offset=self.size,
                                 path=("records", 0))
        header, end = self.src.parse(FileHeader, 0, ("records", 0), "the file header (8 bytes)")
        magic, version = header.magic, header.version
        if magic != QEMU_VM_FILE_MAGIC:
            raise BadMagicError(f"not a QEMU migration stream: expected magic 'QEVM' (0x5145564d), found {magic:#010x}",
                                offset=0, path=("records", 0, "magic"))
        if version == QEMU_VM_FILE_VERSION_COMPAT:
            raise CorruptError("SaveVM v2 format is obsolete (QEMU refuses it); expected version 3",
                               offset=4, path=("records", 0, "version"))
        if version != QEMU_VM_FILE_VERSION:
            raise CorruptError(f"unsupported stream version {version}; expected 3", offset=4,
                               path=("records", 0, "version"))
        self.records.append(model.Header(magic=magic, version=version, span=model.Span(0, end)))

    def _read_to_end(self) -> None:
        """A forward-only source: read the rest of the input and find the vmdesc at its end. Called
        where the vmdesc is first needed: a device section (after the RAM walk, which released its
        pages), the EOF record, or a section that cannot be delimited without it."""
        if not self.vmdesc_searched:
            self.src.ensure(1 << 62)
            self.vmdesc_searched = True
            self._locate_vmdesc()

    def _locate_vmdesc(self) -> None:
        # The JSON holds no NUL, but the be32 length before it may: the EOF byte is one of the
        # last five NULs of the file.
        eof, start, limit = self.size, None, 8
        for _ in range(5):
            eof = self.src.rfind(EofMarker.build(None), limit, eof)
            if eof < 0:
                return
            candidate = eof + 1
            header = self._peek(VmdescHeader, candidate)
            if header is not None and candidate + VmdescHeader.sizeof() + header.length == self.size:
                start = candidate
                break
        if start is None:
            return
        json_at = start + VmdescHeader.sizeof()
        text = bytes(self.buf[json_at:self.size])
        doc = parse_vmdesc_text(text, offset=json_at)
        self.vmdesc = read_vmdesc(doc, offset=json_at)
        self.vmdesc_offset = start
        if self.vmdesc.page_size:
            walked = self.ram_walk.page_size if self.ram_walk is not None else self.vmdesc.page_size
            if walked != self.vmdesc.page_size:
                # only a forward-only read finds the vmdesc after the RAM walk
                raise VmdescError(f"the vmdesc gives a target page size of {self.vmdesc.page_size} bytes, but the "
                                  f"RAM was read as {walked}-byte pages: read forward (compressed or piped), a "
                                  f"stream whose configuration record does not give its page size is read as "
                                  f"4 KiB pages; decompress it to a file first", offset=json_at, path=("vmdesc",))
            self.page_size, self.page_size_known = self.vmdesc.page_size, True
        self._vmdesc_doc, self._vmdesc_text = doc, text

    def _vmdesc_record(self, pos: int) -> None:
        path = ("records", len(self.records))
        if pos != self.vmdesc_offset:
            kind = self._byte(pos, "the vmdesc record (0x06) or the end of the stream", path)
            if kind != RecordType.QEMU_VM_VMDESCRIPTION:
                raise CorruptError(f"expected vmdesc record (0x06) or the end of the stream after EOF, "
                                   f"found {kind:#04x}", offset=pos, path=path)
            header, json_at = self.src.parse(VmdescHeader, pos, path, "the vmdesc header")
            if json_at + header.length > self.size:
                raise TruncatedError(f"stream ends inside the vmdesc JSON: its header says {header.length} bytes, "
                                     f"{self.size - json_at} left", offset=self.size, path=path)
            raise CorruptError(f"{self.size - json_at - header.length} stray bytes after the vmdesc JSON",
                               offset=json_at + header.length, path=path)
        doc, text = self._vmdesc_doc, self._vmdesc_text
        exact = json.dumps(doc).encode() == text
        self.records.append(model.Vmdesc(document=doc, text=None if exact else text,
                                         span=model.Span(pos, self.size - pos)))

    # ------------------------------------------------------------ records

    def _records(self) -> None:
        pos = 8
        if pos < self.src.ensure(pos + RECORD_WINDOW) and self.buf[pos] == RecordType.QEMU_VM_CONFIGURATION:
            pos = self._configuration(pos)
        while True:
            index = len(self.records)
            # every read ensures what it reads (_byte, parse, need; the RAM walk its segments); this
            # window is a net: read forward, a byte past the readable end is a zero of the spool's
            # mapping, not an error, so a read that forgot to ensure still sees the real bytes
            # (removing it fails no test: nothing relies on it today)
            self.src.ensure(pos + RECORD_WINDOW)
            kind = self._byte(pos, "a record type byte", ("records", index))
            if kind == RecordType.QEMU_VM_EOF:
                self.records.append(model.Eof(span=model.Span(pos, 1)))
                self._read_to_end()
                if pos + 1 < self.size:
                    self._vmdesc_record(pos + 1)
                return
            if kind in SECTION_TYPES:
                pos = self._section(pos, kind)
            elif kind == RecordType.QEMU_VM_COMMAND:
                pos = self._command(pos)
            elif kind == RecordType.QEMU_VM_SUBSECTION:
                raise CorruptError("subsection marker (0x05) at top level; expected a record type",
                                   offset=pos, path=("records", index))
            else:
                raise CorruptError(f"unknown record type {kind:#04x}; expected a section (0x01-0x04), "
                                   f"command (0x08) or EOF (0x00)", offset=pos, path=("records", index))

    def _configuration(self, pos: int) -> int:
        if not self.src.complete:
            try:
                return self._configuration_record(pos)
            except UnknownSubsectionError:
                self._read_to_end()  # a subsection only the stream's own vmdesc describes
        return self._configuration_record(pos)

    def _configuration_record(self, pos: int) -> int:
        path = ("records", len(self.records))
        desc = CONFIGURATION
        if self.vmdesc and self.vmdesc.configuration:
            # a subsection this QEMU does not know is described by the stream's own vmdesc
            known = {s.name for s in desc.subsections}
            extra = tuple(s for s in self.vmdesc.configuration.subsections if s.name not in known)
            desc = Description(desc.name, desc.version, desc.fields, desc.subsections + extra, origin="builtin")
        value, end = self._vmstate(desc, pos + 1, path, "configuration record")
        fields, subsections = value
        machine = next(f.value for f in fields if f.name == "name")
        if isinstance(machine, model.Blob):
            # a hostile `len` over INLINE_LIMIT makes the name a Blob; it is still bounded by the input
            machine = bytes(self.buf[machine.offset:machine.offset + machine.length])
        config = model.Configuration(machine=from_wire(machine), subsections=subsections,
                                     span=model.Span(pos, end - pos))
        for sub in subsections:
            if sub.name == "configuration/capabilities":
                caps = next(f.value for f in sub.fields if f.name == "capabilities")
                self.capabilities = {from_wire(c) if isinstance(c, bytes) else c for c in caps}
            elif sub.name == "configuration/target-page-bits":
                bits = sub.fields[0].value
                if not 9 <= bits <= 24:
                    raise CorruptError(f"target page bits {bits} out of range 9..24", offset=sub.span.offset,
                                       path=path + ("subsections", 0))
                self.page_size, self.page_size_known = 1 << bits, True
        self.records.append(config)
        return end

    def _command(self, pos: int) -> int:
        path = ("records", len(self.records))
        record, end = self.src.parse(CommandRecord, pos, path, "a command")
        cmd, data = record.cmd, record.data
        if cmd == Cmd.MIG_CMD_INVALID or cmd not in Cmd._value2member_map_:
            raise CorruptError(f"unknown command {cmd}; expected 1..{max(Cmd)}", offset=pos + 1, path=path + ("cmd",))
        name = command_name(cmd)
        expected = CMD_LENGTHS.get(cmd)
        if expected is not None and len(data) != expected:
            raise CorruptError(f"command {name} has length {len(data)}, expected {expected}",
                               offset=pos + 3, path=path + ("data",))
        args = self._command_data(cmd, data, end - len(data), path + ("data",))
        package = None
        if cmd == Cmd.MIG_CMD_PACKAGED:
            self.src.need(end, args.length, "the packaged records", path)
            package, end = model.Blob(end, args.length), end + args.length
        if cmd == Cmd.MIG_CMD_POSTCOPY_ADVISE and args.page_sizes is not None:
            sizes = args.page_sizes
            self.advise = PostcopyAdvise(sizes.pagesize_summary, sizes.target_page_size)
            tps = sizes.target_page_size
            if not self.page_size_known and tps & (tps - 1) == 0 and 1 << 9 <= tps <= 1 << 24:
                self.page_size = tps  # the only word on the target page size a stream may carry
        self.records.append(model.Command(cmd=cmd, name=name, data=data, package=package,
                                          span=model.Span(pos, end - pos)))
        return end

    def _command_data(self, cmd: int, data: bytes, at: int, path: FieldPath) -> Any:
        """A command's data read by its schema (wire/stream.py COMMAND_DATA), all of it, as the
        loader reads it; None for a command that carries nothing (its length was checked)."""
        schema = COMMAND_DATA.get(cmd)
        if schema is None:
            return None
        name = command_name(cmd)
        # the data is already in hand (at most 64 KiB): parsed from it, not from the input, so
        # running out of it is a wrong length, not a cut stream
        stream = io.BytesIO(data)
        try:
            args = schema.parse_stream(stream)
        except ConstructError as exc:
            message = str(exc).split("\n")[-1].strip() or type(exc).__name__
            raise CorruptError(f"command {name} carries {len(data)} bytes that are not its data: {message}",
                               offset=at, path=path) from exc
        used = stream.tell()
        if used != len(data):
            raise CorruptError(f"command {name} has {len(data) - used} bytes after its data", offset=at + used,
                               path=path)
        return args

    def _section(self, pos: int, kind: int) -> int:
        index = len(self.records)
        path: FieldPath = ("records", index)
        rtype = SECTION_TYPES[RecordType(kind)]
        if kind in (RecordType.QEMU_VM_SECTION_START, RecordType.QEMU_VM_SECTION_FULL):
            header, body_pos = self.src.parse(LongHeader, pos, path, "section header")
            section_id, idstr = header.section_id, from_wire(header.idstr)
            if not idstr:
                # QEMU registers no section without a name (find_se fails the load), and encode
                # refuses to write one: keep decode -> encode lossless by refusing it here too
                raise CorruptError(f"{rtype} with an empty idstr", offset=pos + 5, path=path + ("idstr",))
            instance_id, version_id = header.instance_id, header.version_id
            if kind == RecordType.QEMU_VM_SECTION_START:
                self.opened[section_id] = (idstr, instance_id, version_id)
        else:
            header, body_pos = self.src.parse(ShortHeader, pos, path, "section header")
            section_id = header.section_id
            if section_id not in self.opened:
                raise CorruptError(f"{rtype} for section id {section_id}, which no section_start opened",
                                   offset=pos + 1, path=path + ("section_id",))
            idstr, instance_id, version_id = self.opened[section_id]
        body, end = self._body(rtype, section_id, idstr, instance_id, version_id, body_pos, path)
        footer = self._footer(end, section_id, idstr, path)
        end += Footer.sizeof() if footer else 0
        self.records.append(model.Section(type=rtype, section_id=section_id, idstr=idstr,
                                          instance_id=instance_id, version_id=version_id,
                                          body=body, footer=footer, span=model.Span(pos, end - pos)))
        return end

    def _footer(self, pos: int, section_id: int, idstr: str, path: FieldPath) -> bool:
        marker = self.buf[pos] if pos < self.src.ensure(pos + 1) else None
        if marker == RecordType.QEMU_VM_SECTION_FOOTER:
            found = self.src.parse(Footer, pos, path + ("footer",), "a section footer")[0].section_id
            if found != section_id:
                raise CorruptError(f"section footer names id {found}, expected {section_id} ({printable(idstr)})",
                                   offset=pos + 1, path=path + ("footer",))
            if self.footers is False:
                raise CorruptError("section footer in a stream whose earlier sections had none",
                                   offset=pos, path=path + ("footer",))
            self.footers = True
            return True
        if marker is None:
            raise TruncatedError(f"stream ends after the payload of {printable(idstr)}; expected its footer "
                                 f"or the next record", offset=self.size, path=path + ("footer",))
        if self.footers is True:
            raise CorruptError(f"expected section footer (0x7e) for id {section_id} ({printable(idstr)}), "
                               f"found {marker:#04x}", offset=pos, path=path + ("footer",))
        if marker not in (0, 1, 2, 3, 4, 8):
            raise CorruptError(f"after the payload of {printable(idstr)} expected a footer or a record type, "
                               f"found {marker:#04x}", offset=pos, path=path + ("footer",))
        self.footers = False
        return False

    # ------------------------------------------------------------ section bodies

    def _body(self, rtype: str, section_id: int, idstr: str, instance_id: int, version_id: int,
              pos: int, path: FieldPath) -> tuple[Any, int]:
        if idstr == "ram" and rtype != "section_full":
            return self._ram(pos, path + ("ram",), rtype == "section_start")
        if is_vfio_idstr(idstr):
            return self._vfio(pos, path + ("vfio",), rtype)
        if idstr == DIRTY_BITMAP_IDSTR and version_id == DIRTY_BITMAP_VERSION and rtype != "section_full":
            return self._dirty_bitmap(pos, path)
        if rtype == "section_full":
            builtin = BUILTIN_SECTIONS.get(idstr)
            if builtin is not None and builtin.version == version_id:
                (fields, subs), end = self._vmstate(builtin, pos, path, f"section {idstr}")
                return model.VmstateBody(builtin.name, version_id, fields, subs, origin="builtin"), end
            self._read_to_end()  # the first section only the vmdesc describes
            entry = self.vmdesc.find(idstr, instance_id) if self.vmdesc else None
            if entry is not None and entry.old_style:
                self.src.need(pos, entry.size or 0, f"old-style section {printable(idstr)}", path)
                return self._opaque(pos, pos + (entry.size or 0), "old-style section: the vmdesc gives only its size")
            if entry is not None:
                desc = Description(entry.description.name, version_id, entry.description.fields,
                                   entry.description.subsections)
                (fields, subs), end = self._vmstate(desc, pos, path, f"section {printable(idstr)}")
                return model.VmstateBody(desc.name, version_id, fields, subs, origin="vmdesc"), end
        return self._unknown(pos, section_id, idstr, path)

    def _opaque(self, start: int, end: int, reason: str) -> tuple[model.OpaqueBody, int]:
        length = end - start
        data = bytes(self.buf[start:end]) if length <= INLINE_LIMIT else None
        return model.OpaqueBody(model.Blob(start, length, data), reason), end

    def _unknown(self, pos: int, section_id: int, idstr: str, path: FieldPath) -> tuple[model.OpaqueBody, int]:
        self._read_to_end()  # delimiting it needs the whole input (its footer, the vmdesc, the end)
        why = "no vmdesc entry and no built-in description"
        if self.strict:
            raise UnknownSectionError(f"cannot decode section {printable(idstr)}: {why} (--strict)",
                                      offset=pos, path=path)
        # checked before the footers: a cut stream has lost its vmdesc, and saying it was cut is the
        # useful answer (not "no footers", which the whole stream would have decoded without)
        end = None if self.footers is False else self._scan_footer(pos, section_id)
        if end is None and self._looks_cut():
            raise TruncatedError(f"stream is cut short (it ends with neither a vmdesc nor EOF after a whole "
                                 f"record), and section {printable(idstr)} cannot be decoded without the vmdesc "
                                 f"that was cut off", offset=self.size, path=path)
        if self.footers is False:
            raise UnknownSectionError(f"cannot delimit section {printable(idstr)}: {why}, and the stream has "
                                      f"no section footers", offset=pos, path=path,
                                      hint=None if self.vmdesc else "a stream written with a vmdesc can be decoded "
                                      "fully; if this one was cut short, its vmdesc was lost with its end")
        if end is None:
            raise UnknownSectionError(f"cannot delimit section {printable(idstr)}: {why}, and no footer for "
                                      f"id {section_id} follows", offset=pos, path=path)
        warning = f"section {printable(idstr)} (id {section_id}) kept opaque: {why}"
        if warning not in self.warnings:  # once per section, not once per START/PART/END record
            self.warnings.append(warning)
        return self._opaque(pos, end, f"{why}; delimited by its footer")

    def _looks_cut(self) -> bool:
        """Without a vmdesc, a whole stream ends with its EOF byte, and with footers that byte
        follows the last section's footer; anything else stopped mid-way."""
        if self.vmdesc is not None or not self.size:
            return False
        if self.buf[self.size - 1] != RecordType.QEMU_VM_EOF:
            return True
        at = self.size - 1 - Footer.sizeof()  # a footer, then the EOF byte
        footer_before = at >= 0 and self.buf[at] == RecordType.QEMU_VM_SECTION_FOOTER
        return self.footers is True and not footer_before

    def _scan_footer(self, pos: int, section_id: int) -> int | None:
        pattern = Footer.build({"section_id": section_id})
        found = self.src.find(pattern, pos)
        while found >= 0:
            if self._plausible_record(found + len(pattern)):
                return found
            found = self.src.find(pattern, found + 1)
        return None

    def _plausible_record(self, pos: int) -> bool:
        """Could a top-level record start here? Used only to delimit opaque sections."""
        if pos >= self.size:
            return False
        kind = self.buf[pos]
        if kind == RecordType.QEMU_VM_EOF:
            return (pos + 1 == self.size or pos + 1 == self.vmdesc_offset
                    or self.buf[pos + 1] == RecordType.QEMU_VM_VMDESCRIPTION)
        if kind in (RecordType.QEMU_VM_SECTION_PART, RecordType.QEMU_VM_SECTION_END):
            header = self._peek(ShortHeader, pos)
            return header is not None and header.section_id in self.opened
        if kind in (RecordType.QEMU_VM_SECTION_START, RecordType.QEMU_VM_SECTION_FULL):
            header = self._peek(LongHeader, pos)
            return header is not None and header.idstr != b"" and all(0x20 < b < 0x7F for b in header.idstr)
        if kind == RecordType.QEMU_VM_COMMAND:
            command = self._peek(CommandRecord, pos)
            return command is not None and 0 < command.cmd <= max(Cmd)
        return False

    # ------------------------------------------------------------ vmstate

    def _vmstate(self, desc: Description, pos: int, path: FieldPath, what: str,
                 end: int | None = None) -> tuple[tuple[tuple[model.Field, ...], tuple[model.Subsection, ...]], int]:
        schema = compile_description(desc)
        try:
            value, stop = self.src.parse(schema, pos, path, what, end=end,
                                         name_path=lambda cpath: construct_path_names(desc, cpath))
        except DecodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, UnknownSubsectionFound):
                raise UnknownSubsectionError(
                    f"unknown subsection '{printable(from_wire(cause.name))}' of '{cause.parent}' in {what} "
                    f"(QEMU fails the load: the subsection does not exist in the description)",
                    offset=cause.offset, path=exc.path) from cause
            if isinstance(exc, TruncatedError) and self.vmdesc_offset is not None:
                # the vmdesc after EOF proves the stream whole: a payload that runs off its end
                # was described (or written) wrong, it was not cut short
                raise CorruptError(f"{what} runs past the last record (the vmdesc starts at offset "
                                   f"{self.vmdesc_offset}): its description disagrees with the bytes",
                                   offset=pos, path=exc.path) from exc
            raise
        return convert(desc, value, {"subsection_index": self.subsection_index}), stop

    # ------------------------------------------------------------ RAM

    def _ram(self, pos: int, path: FieldPath, is_start: bool) -> tuple[model.RamBody, int]:
        """Page records until EOS, by the one page-record walk (ram/walk.py). The walk is made at
        the first RAM section: by then the page size, capabilities and ADVISE are known."""
        if self.ram_walk is None:
            self.ram_walk = RamWalk(self.src, self.page_size, frozenset(self.capabilities), self.advise,
                                    keep_runs=self.keep_ram_runs, keep_limit=self.ram_runs_limit,
                                    on_run=self.on_ram_run, on_item=self.on_ram_item,
                                    on_partial=self.on_ram_partial,
                                    progress=self.progress)
        return self.ram_walk.section(pos, path, is_start)

    # ------------------------------------------------------------ VFIO

    def _vfio(self, pos: int, path: FieldPath, rtype: str) -> tuple[model.VfioBody, int]:
        items: list[model.VfioItem] = []
        while True:
            where = path + ("items", len(items))
            start = pos
            tag, pos = self.src.parse(Marker, start, where, "a VFIO marker")
            if tag == VfioMarker.END_OF_STATE:
                items.append(model.VfioItem("end_of_state", span=model.Span(start, pos - start)))
                return model.VfioBody(tuple(items)), pos
            if tag == VfioMarker.DEV_INIT_DATA_SENT:
                items.append(model.VfioItem("init_data_sent", span=model.Span(start, pos - start)))
                return model.VfioBody(tuple(items)), pos
            if tag == VfioMarker.DEV_SETUP_STATE:
                items.append(model.VfioItem("setup", span=model.Span(start, pos - start)))
            elif tag == VfioMarker.DEV_DATA_STATE:
                chunk, pos = self.src.parse(DataChunkHeader, start, where, "a VFIO data chunk header")
                length = chunk.length
                self.src.need(pos, length, "VFIO device data", where)
                data = bytes(self.buf[pos:pos + length]) if length <= INLINE_LIMIT else None
                items.append(model.VfioItem("data", data=model.Blob(pos, length, data),
                                            span=model.Span(start, pos - start + length)))
                pos += length
            elif tag == VfioMarker.DEV_CONFIG_STATE:
                config, pos = self._vfio_config(pos, where + ("config",))
                items.append(model.VfioItem("config", config=config, span=model.Span(start, pos - start)))
            else:
                raise CorruptError(f"unknown VFIO tag {tag:#018x}; expected END_OF_STATE, CONFIG_STATE, "
                                   f"SETUP_STATE, DATA_STATE or INIT_DATA_SENT", offset=start, path=where)

    # ------------------------------------------------------------ block dirty bitmaps

    def _dirty_bitmap(self, pos: int, path: FieldPath) -> tuple[model.VmstateBody, int]:
        """Chunks until the one whose flags have EOS, each laid out by its flags (wire/dirtybitmap.py)."""
        chunks: list[model.Field] = []
        while True:
            where = path + ("fields", len(chunks))
            self.src.need(pos, 1, "dirty bitmap chunk flags", where + ("flags",))
            second = self.buf[pos + 1] if self.src.ensure(pos + 2) >= pos + 2 else None
            width = flag_bytes(self.buf[pos], second)
            self.src.need(pos, width, "dirty bitmap chunk flags", where + ("flags",))
            flags = effective_flags(bytes(self.buf[pos:pos + width]))
            desc = dirty_bitmap_chunk(width, flags)
            self._bits_size_check(pos, desc, where)
            (fields, _), end = self._vmstate(desc, pos, where, "a dirty bitmap chunk")
            info = dirty_bitmap_info(flags, {f.name: f.value for f in fields})
            chunks.append(model.Field("chunk", "struct", model.StructValue(desc.name, desc.version, fields),
                                      span=model.Span(pos, end - pos), info=info))
            pos = end
            if flags & BitmapFlag.EOS:
                return model.VmstateBody(DIRTY_BITMAP_IDSTR, DIRTY_BITMAP_VERSION, tuple(chunks), origin="builtin"), pos

    def _bits_size_check(self, pos: int, desc: Description, path: FieldPath) -> None:
        """QEMU reads a BITS chunk's buffer size and refuses one too large before it reads the
        buffer: so does vmig (an absurd size is that error, not a stream cut short)."""
        if desc.fields[-1].name != "bits":
            return
        (head, _), _ = self._vmstate(replace(desc, fields=desc.fields[:-1]), pos, path, "a dirty bitmap chunk")
        size = head[-1]
        if size.value > MAX_BITS_BUFFER:
            raise CorruptError(f"dirty bitmap chunk claims {size.value} bytes of bits; QEMU refuses more than "
                               f"{MAX_BITS_BUFFER} (\"Bitmap migration stream buffer allocation request is too "
                               f"large\")", offset=size.span.offset if size.span else pos, path=path + ("buf_size",))

    def _vfio_config(self, pos: int, path: FieldPath) -> tuple[model.VmstateBody, int]:
        """VFIOPCIDevice: config size (256|4096) and MSI-X size are not on the wire; read them off
        the config space itself and keep the layout that ends exactly at END_OF_STATE."""
        self.src.ensure(pos + 4 + 2 * 4096 + 16)  # the largest config space and MSI-X table, then its END
        self.src.need(pos, 4 + 256, "VFIO PCI config state", path)
        head = bytes(self.buf[pos + 4:pos + 4 + 256])
        sizes = (4096, 256) if is_express(head) else PCI_CONFIG_SIZES
        first_error: DecodeError | None = None
        for config_size in sizes:
            if pos + 4 + config_size > self.size:
                continue
            config = bytes(self.buf[pos + 4:pos + 4 + config_size])
            desc = vfio_pci_device(config_size, msix_vectors(config))
            try:
                (fields, subs), end = self._vmstate(desc, pos, path, "VFIOPCIDevice config")
            except UnknownSubsectionError:
                raise
            except DecodeError as exc:
                first_error = first_error or exc
                continue
            if self._peek(Marker, end) == VfioMarker.END_OF_STATE:
                return model.VmstateBody(desc.name, desc.version, fields, subs, origin="builtin"), end
        if first_error is not None:
            raise first_error
        self.src.need(pos, 4 + 256 + 16 + 8, "VFIO PCI config state", path)
        raise CorruptError("VFIOPCIDevice config state does not end in END_OF_STATE with a 256- or 4096-byte "
                           "config space", offset=pos, path=path)
