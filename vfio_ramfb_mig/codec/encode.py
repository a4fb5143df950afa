"""model -> bytes: the inverse of decode, record by record.

Every container is built by the construct schema in wire/ that decode parses
it with (header, section headers and footers, commands, the VFIO framing, the
RAM block list, the vmdesc record), and device payloads by the same compiled
descriptions: a description is derived from the model's own fields (types,
lengths, counts) and compiled by vmstate/compile.py. Page records are the one
exception, written with `struct` as ram/walk.py reads them (one per guest
page: the hot path of a large stream). RAM pages and other `Blob`s are copied
from the source stream they were decoded from (or from the data a JSON
document embedded), in 8 MiB pieces let go once written, so encoding a large
stream stays flat in memory. A run of page records that lies in the source
exactly as it would be written (ram.walk.run_in_source checks every record's
address word, name and fill byte) is copied whole instead of record by record.
The pages the runs write are bounded before anything is written (ram.limits).

Imports: construct, errors, model, wire, vmstate, source, text, ram.walk and ram.limits
(the RAM record layout and bounds, beside codec).
References: migration/savevm.c (save_section_header, save_section_footer),
migration/ram.c (ram_save_setup, save_page_header), hw/vfio/migration.c.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import struct
from collections.abc import Iterable
from typing import Any, BinaryIO

from construct import Construct, Container, ConstructError

from ..errors import EncodeError, FieldPath
from .. import model
from ..vmstate.builtin import CONFIGURATION
from ..vmstate.compile import RAMFB_CFG_TYPE, compile_description
from ..vmstate.model import Description, FieldDesc
from ..vmstate.vmdesc import FIXED_SIZES
from ..wire.ram import AddressWord, RamFlag, ram_block
from ..wire.stream import (
    QEMU_VM_FILE_MAGIC,
    QEMU_VM_FILE_VERSION,
    SECTION_TYPES,
    ConfigurationMarker,
    EofMarker,
    FileHeader,
    Footer,
    LongHeader,
    ShortHeader,
    VmdescHeader,
)
from ..wire.stream import Command as CommandRecord
from ..wire.vfio import DataChunkHeader, Marker, VfioMarker
from ..ram.limits import check_claim
from ..ram.walk import record_parts, run_in_source, zero_run_bytes
from ..source import Source
from ..text import to_wire

_COPY_CHUNK = 8 << 20
#: copies at least this long go file to file in the kernel when they can (os.copy_file_range)
_KERNEL_COPY_MIN = 64 << 10
#: kernel copies at least this long are sent on to the disk at once (see _kernel_copy)
_WRITEBACK_MIN = 8 << 20
#: small writes (a 9-byte zero-page record, one page) gather up to this much before going out:
#: one system call for many records (a BufferedWriter passes anything over its 8 KiB through)
_WRITE_GATHER = 1 << 20
_SECTION_BYTES = {name: int(record_type) for record_type, name in SECTION_TYPES.items()}
_RAM_KIND_FLAG = {"zero": RamFlag.ZERO, "page": RamFlag.PAGE, "xbzrle": RamFlag.XBZRLE,
                  "compressed": RamFlag.COMPRESS_PAGE}
_VFIO_MARKERS = {"setup": VfioMarker.DEV_SETUP_STATE, "end_of_state": VfioMarker.END_OF_STATE,
                 "init_data_sent": VfioMarker.DEV_INIT_DATA_SENT}


def encode(stream: model.MigrationStream, out: BinaryIO, source: Source | None = None, *,
           max_ram: int | None = None) -> int:
    """Write `stream` to `out`; Blobs without data are read from `source`. Returns bytes written.

    Page runs that lie in `source` exactly as they would be written are copied from it whole.
    Before anything is written, the pages the runs write are bounded (ram.limits): by what a
    stream of `stream.size` bytes can hold and by `max_ram` (LimitError)."""
    return _Encoder(out, source).run(stream, max_ram)


def encode_records(records: Iterable[Any], out: BinaryIO, source: Source | None = None) -> int:
    """encode for records that come one at a time (a RAM body's items may be an iterator too: see
    codec.fromjson, which reads a document as it writes). The caller bounds the pages as it reads
    them (ram.limits.check_claim). Returns bytes written."""
    return _Encoder(out, source).run_records(records)


def encode_bytes(stream: model.MigrationStream, source: Source | None = None) -> bytes:
    buf = io.BytesIO()
    encode(stream, buf, source)
    return buf.getvalue()


class _Encoder:
    def __init__(self, out: BinaryIO, source: Source | None) -> None:
        self.out, self.source, self.written = out, source, 0
        self._file_out = out  # the output file; `out` is a buffer while element() builds a field
        self._pending = bytearray()  # written, not yet given to `out` (see flush)
        #: source bytes to copy, noted but not copied yet: copies of adjacent ranges join, so the
        #: records of many short page runs lying back to back in the source go out in one copy
        self._copy_span: tuple[int, int] | None = None
        self._read_lo, self._read_hi = 1 << 63, 0  # the source range read since it was last let go
        self._fds: tuple[int, int, int] | bool | None = None  # for copy_file_range (see _file_copy)
        self.page_size = 4096

    def write(self, data: bytes | memoryview) -> None:
        if self._copy_span is not None:  # the copy noted before these bytes goes out first
            self._flush_copy()
        self._pending += data
        self.written += len(data)
        if len(self._pending) >= _WRITE_GATHER:
            self._flush_bytes()

    def flush(self) -> None:
        """Give what `write` gathered and `copy` noted to `out`, in order."""
        if self._copy_span is not None:
            self._flush_copy()
        self._flush_bytes()

    def _flush_bytes(self) -> None:
        if self._pending:
            self.out.write(self._pending)
            self._pending.clear()

    def _file_copy(self) -> tuple[int, int, int] | None:
        """(source fd, output fd, the stream's offset in the source file) when both are regular files
        and the kernel can copy from one to the other, else None. Made once, on first use."""
        if self._fds is None:
            self._fds = False
            region = self.source.file_region() if self.source is not None else None
            # only a plain file object: a compressor (GzipFile, LZMAFile...) has the fileno() of the
            # file it compresses into, where raw bytes must not go
            regular = False
            if region is not None and isinstance(self.out, (io.BufferedWriter, io.FileIO)):
                try:
                    out_fd = self.out.fileno()
                    regular = stat.S_ISREG(os.fstat(out_fd).st_mode)
                except (OSError, ValueError, io.UnsupportedOperation):
                    pass
            if regular and hasattr(os, "copy_file_range"):
                assert region is not None
                try:
                    fd = os.open(region[0], os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return None
                if os.fstat(fd).st_size == self.source.file_size:  # type: ignore[union-attr]
                    self._fds = (fd, out_fd, region[1])
                else:
                    os.close(fd)
        return self._fds or None

    def _kernel_copy(self, start: int, length: int) -> bool:
        """Copy file to file in the kernel (no page of either is mapped here); False: not possible."""
        if self.out is not self._file_out:  # a field being built in memory: the bytes go there
            return False
        fds = self._file_copy()
        if fds is None:
            return False
        fd, out_fd, base = fds
        self.out.flush()
        offset, left = base + start, length
        out_start = os.lseek(out_fd, 0, os.SEEK_CUR)
        try:
            while left:
                done = os.copy_file_range(fd, out_fd, left, offset)
                if done <= 0:
                    raise OSError(errno.EIO, "copy_file_range made no progress")
                offset, left = offset + done, left - done
        except OSError:
            if left != length:  # part went out: the output file is now ahead of this writer
                raise
            self._fds = False  # the file systems cannot: write from the mapping from now on
            os.close(fd)
            return False
        # the kernel moved the file position: the writer's idea of it (tell) follows
        self.out.seek(os.lseek(out_fd, 0, os.SEEK_CUR))
        if length >= _WRITEBACK_MIN and hasattr(os, "posix_fadvise"):
            # start writing the copy to disk now, while the rest is encoded: the output's fsync
            # (outfile) then waits for less (the advice only starts writeback of dirty pages)
            with contextlib.suppress(OSError):
                os.posix_fadvise(out_fd, out_start, length, os.POSIX_FADV_DONTNEED)
        return True

    def close(self) -> None:
        if self._fds:
            os.close(self._fds[0])
        self._fds = False

    def copy(self, start: int, length: int) -> None:
        """Copy `length` bytes of the source from `start`. Noted, and joined with the copy noted
        just before when it ends where this one starts; it goes out before the next write."""
        assert self.source is not None
        self.written += length
        # the check that a run lies in the source as written (run_in_source) read its words through
        # the mapping: those pages go as the copies are noted, not when a whole section is copied
        self._read(start, start + length)
        if self._copy_span is not None:
            at, size = self._copy_span
            if at + size == start:
                self._copy_span = (at, size + length)
                return
            self._flush_copy()
        self._copy_span = (start, length)

    def _flush_copy(self) -> None:
        """Make the noted copy: file to file in the kernel where it can, else through the mapping.
        The input is read about in order, and what was read is let go every `_COPY_CHUNK` bytes:
        resident memory stays flat."""
        assert self.source is not None and self._copy_span is not None
        (start, length), self._copy_span = self._copy_span, None
        self._flush_bytes()
        if length >= _KERNEL_COPY_MIN and self._kernel_copy(start, length):
            return  # no page was mapped for it
        with memoryview(self.source.buf) as view:
            for at in range(start, start + length, _COPY_CHUNK):
                end = min(at + _COPY_CHUNK, start + length)
                with view[at:end] as piece:
                    self.out.write(piece)
                self._read(at, end)

    def _read(self, start: int, end: int) -> None:
        """Note that [start, end) of the source was read; let the mapped pages go every `_COPY_CHUNK`."""
        assert self.source is not None
        self._read_lo = min(self._read_lo, start)
        self._read_hi = max(self._read_hi, end)
        if self._read_hi - self._read_lo >= _COPY_CHUNK or end - start >= _COPY_CHUNK:
            self.source.forget(self._read_lo, self._read_hi)
            self._read_lo, self._read_hi = 1 << 63, 0

    def build(self, schema: Construct, value: Any, path: FieldPath, what: str) -> None:
        """Write `value` built by `schema`; a value the wire cannot hold is an EncodeError."""
        self.write(self.built(schema, value, path, what))

    def blob(self, blob: model.Blob, path: FieldPath) -> None:
        if blob.data is not None:
            if len(blob.data) != blob.length:
                raise EncodeError(f"embedded data has {len(blob.data)} bytes, expected {blob.length}",
                                  offset=self.written, path=path)
            self.write(blob.data)
            return
        if self.source is None:
            raise EncodeError("bytes kept by reference need the source stream (give --source)",
                              offset=self.written, path=path)
        if blob.offset + blob.length > self.source.size:
            raise EncodeError(f"the source stream has {self.source.size} bytes, but {blob.length} bytes at "
                              f"offset {blob.offset} are referenced", offset=self.written, path=path)
        self.copy(blob.offset, blob.length)

    def run(self, stream: model.MigrationStream, max_ram: int | None = None) -> int:
        self.check_pages(stream, max_ram)
        return self.run_records(stream.records)

    def run_records(self, records: Iterable[Any]) -> int:
        try:
            self.records(records)
            self.flush()
        finally:
            self.close()
        return self.written

    def records(self, records: Iterable[Any]) -> None:
        for index, record in enumerate(records):
            path: FieldPath = ("records", index)
            try:
                self.record(record, path)
            except (struct.error, ConstructError) as exc:
                # a value the model holds but the wire cannot (a name over 255 bytes, a number
                # over 64 bits) where no schema named it: bad input, named by its record, not a crash
                message = str(exc).split("\n")[-1].strip() or type(exc).__name__
                raise EncodeError(f"value does not fit the wire format: {message}", offset=self.written,
                                  path=path) from exc

    def record(self, record: Any, path: FieldPath) -> None:
        if isinstance(record, model.Header):
            # what decode (and QEMU) refuse is not written either
            if record.magic != QEMU_VM_FILE_MAGIC or record.version != QEMU_VM_FILE_VERSION:
                raise EncodeError(f"unsupported stream header: magic {record.magic:#x}, version {record.version}; "
                                  f"vmig writes magic QEVM, version {QEMU_VM_FILE_VERSION}", path=path)
            self.build(FileHeader, {"magic": record.magic, "version": record.version}, path, "the file header")
        elif isinstance(record, model.Configuration):
            self.configuration(record, path)
        elif isinstance(record, model.Section):
            self.section(record, path)
        elif isinstance(record, model.Command):
            self.command(record, path)
        elif isinstance(record, model.Eof):
            self.build(EofMarker, None, path, "EOF")
        elif isinstance(record, model.Vmdesc):
            text = record.text if record.text is not None else json.dumps(record.document).encode()
            self.build(VmdescHeader, {"length": len(text)}, path, "the vmdesc header")
            self.write(text)
        else:
            raise EncodeError(f"unknown record {type(record).__name__}", path=path)

    def configuration(self, record: model.Configuration, path: FieldPath) -> None:
        name = to_wire(record.machine)
        fields = (model.Field("len", "uint32", len(name)), model.Field("name", "buffer", name))
        desc = Description("configuration", 1, CONFIGURATION.fields,
                           tuple(describe_subsection(s, path + ("subsections", i))
                                 for i, s in enumerate(record.subsections)))
        self.build(ConfigurationMarker, None, path, "the configuration record")
        self.vmstate(desc, fields, record.subsections, path)

    def command(self, record: model.Command, path: FieldPath) -> None:
        if len(record.data) > 0xFFFF:
            raise EncodeError(f"command data has {len(record.data)} bytes, at most 65535 fit", path=path + ("data",))
        self.build(CommandRecord, {"cmd": record.cmd, "data": record.data}, path, f"command {record.name}")
        if record.package is not None:
            self.blob(record.package, path + ("package",))

    def section(self, record: model.Section, path: FieldPath) -> None:
        kind = _SECTION_BYTES.get(record.type)
        if kind is None:
            raise EncodeError(f"unknown section type '{record.type}'", path=path + ("type",))
        if record.long_header:
            idstr = to_wire(record.idstr)
            if not 0 < len(idstr) <= 255:
                raise EncodeError(f"idstr must be 1..255 bytes, found {len(idstr)}", path=path + ("idstr",))
            self.build(LongHeader, {"type": kind, "section_id": record.section_id, "idstr": idstr,
                                    "instance_id": record.instance_id, "version_id": record.version_id},
                       path, "the section header")
        else:
            self.build(ShortHeader, {"type": kind, "section_id": record.section_id}, path, "the section header")
        body = record.body
        if isinstance(body, model.VmstateBody):
            desc = Description(body.vmsd_name, body.version, describe_fields(body.fields, path + ("fields",)),
                               tuple(describe_subsection(s, path + ("subsections", i))
                                     for i, s in enumerate(body.subsections)))
            self.vmstate(desc, body.fields, body.subsections, path)
        elif isinstance(body, model.RamBody):
            self.ram(body, path + ("ram",))
        elif isinstance(body, model.VfioBody):
            self.vfio(body, path + ("vfio",))
        elif isinstance(body, model.OpaqueBody):
            self.blob(body.data, path + ("opaque",))
        else:
            raise EncodeError(f"unknown section body {type(body).__name__}", path=path)
        if record.footer:
            self.build(Footer, {"section_id": record.section_id}, path + ("footer",), "the section footer")

    # ------------------------------------------------------------ vmstate

    def vmstate(self, desc: Description, fields: tuple[model.Field, ...], subsections: tuple[model.Subsection, ...],
                path: FieldPath) -> None:
        container = self.container(desc, fields, subsections, path)
        buf = io.BytesIO()
        try:
            compile_description(desc).build_stream(container, buf)
        except ConstructError as exc:
            message = str(exc).split("\n")[-1].strip()
            raise EncodeError(f"cannot build {desc.name}: {message}", offset=self.written, path=path) from exc
        self.write(buf.getvalue())

    def container(self, desc: Description, fields: tuple[model.Field, ...], subsections: tuple[model.Subsection, ...],
                  path: FieldPath) -> Container:
        result = Container()
        for i, (fd, f) in enumerate(zip(desc.fields, fields, strict=True)):
            where = path + ("fields", i)
            if fd.count is not None or fd.count_from is not None:
                result[f"f{i}"] = [self.element(fd, v, where + (j,)) for j, v in enumerate(f.value)]
            else:
                result[f"f{i}"] = self.element(fd, f.value, where)
        result["subsections"] = [
            (to_wire(s.name), s.version,
             self.container(desc.subsections[k], s.fields, s.subsections, path + ("subsections", k)))
            for k, s in enumerate(subsections)]
        return result

    def element(self, fd: FieldDesc, value: Any, path: FieldPath) -> Any:
        if fd.type == "struct" and fd.struct is not None:
            return self.container(fd.struct, value.fields, value.subsections, path)
        if isinstance(value, model.Blob):
            buf = io.BytesIO()
            self.flush()
            saved, self.out, self.written = (self.out, self.written), buf, 0
            try:
                self.blob(value, path)
                self.flush()
            finally:
                self.out, self.written = saved
            return buf.getvalue()
        if fd.type == "capability":
            if not isinstance(value, str):
                raise EncodeError(f"expected a capability name, found {type(value).__name__}", path=path)
            return to_wire(value)
        if fd.type == RAMFB_CFG_TYPE:
            return Container(value)
        if isinstance(value, bool):
            return int(value)
        return value

    # ------------------------------------------------------------ RAM

    def check_pages(self, stream: model.MigrationStream, max_ram: int | None) -> None:
        """Refuse, before a byte is written, page runs that write more pages than the stream they
        describe could hold and than `max_ram` (a tiny JSON document with a count of 2^39)."""
        pages, page_size = 0, 4096
        for record in stream.records:
            if isinstance(record, model.Section) and isinstance(record.body, model.RamBody):
                page_size = record.body.page_size
                for item in record.body.items:
                    if isinstance(item, model.RamPages):
                        if item.count < 0 or item.offset < 0:
                            raise EncodeError(f"page run of block '{item.block}' has a negative count or offset")
                        pages += item.pages_written
        size = max(stream.size, self.source.size if self.source is not None else 0)
        check_claim(pages, page_size, size, max_ram, "the page runs write")

    def ram(self, body: model.RamBody, path: FieldPath) -> None:
        ps = body.page_size
        for i, item in enumerate(body.items):
            where = path + ("items", i)
            if isinstance(item, model.RamMemSize):
                self.build(AddressWord, item.total | RamFlag.MEM_SIZE, where, "the RAM total")
                for k, block in enumerate(item.blocks):
                    at = where + ("blocks", k)
                    # the words an entry has are the ones it holds (ram_block writes what is not None)
                    entry = {"idstr": to_wire(block.idstr), "used_length": block.used_length,
                             "page_size": block.page_size, "addr": block.addr, "mapped_ram": block.mapped_ram}
                    self.build(ram_block(), entry, at, "a RAM block-list entry")
                    if block.region is not None:
                        self.blob(block.region, at + ("region",))
            elif isinstance(item, model.RamMarker):
                flag = RamFlag.EOS if item.kind == "eos" else RamFlag.MULTIFD_FLUSH
                self.build(AddressWord, flag, where, f"the RAM marker {item.kind}")
            elif isinstance(item, model.RamPages):
                self.pages(item, ps, where)
            else:
                raise EncodeError(f"unknown RAM item {type(item).__name__}", path=where)

    def pages(self, run: model.RamPages, ps: int, path: FieldPath) -> None:
        flag = _RAM_KIND_FLAG.get(run.kind)
        if flag is None:
            raise EncodeError(f"unknown page kind '{run.kind}'", path=path + ("kind",))
        if self.source is not None and run_in_source(run, ps, self.source):
            assert run.span is not None
            self.copy(run.span.offset, run.span.length)  # the records as they are in the source
            return
        if run.kind == "zero":
            for piece in zero_run_bytes(run, ps):
                self.write(piece)
            return
        data = run.data[0] if run.data else None
        for i, (head, tail) in enumerate(record_parts(run, ps)):
            self.write(head)
            if run.kind == "compressed":  # the length, then the zlib data (in the document or the source)
                assert tail is not None
                self.write(tail)
                for k, blob in enumerate(run.data or ()):
                    self.blob(blob, path + ("data", k))
            elif tail is not None:  # a fill byte, an XBZRLE delta
                self.write(tail)
            elif data is not None and data.data is not None:
                self.write(data.data[i * ps:(i + 1) * ps])
            else:
                if run.span is None:
                    raise EncodeError("page contents need the source stream's offsets", path=path)
                self.blob(model.Blob(run.payload_offset(i, ps), ps), path)

    def built(self, schema: Construct, value: Any, path: FieldPath, what: str) -> bytes:
        """`value` built by `schema`, not written yet; a value the wire cannot hold is an EncodeError."""
        try:
            return schema.build(value)
        except ConstructError as exc:
            message = str(exc).split("\n")[-1].strip() or type(exc).__name__
            raise EncodeError(f"cannot write {what}: {message}", offset=self.written, path=path) from exc

    # ------------------------------------------------------------ VFIO

    def vfio(self, body: model.VfioBody, path: FieldPath) -> None:
        for i, item in enumerate(body.items):
            where = path + ("items", i)
            if item.kind in _VFIO_MARKERS:
                self.build(Marker, _VFIO_MARKERS[item.kind], where, f"the VFIO marker {item.kind}")
            elif item.kind == "data":
                assert item.data is not None
                self.build(DataChunkHeader, {"length": item.data.length}, where, "a VFIO data chunk header")
                self.blob(item.data, where + ("data",))
            elif item.kind == "config":
                config = item.config
                if config is None:
                    raise EncodeError("config item without state", path=where)
                self.build(Marker, VfioMarker.DEV_CONFIG_STATE, where, "the VFIO marker config")
                desc = Description(config.vmsd_name, config.version, describe_fields(config.fields, where),
                                   tuple(describe_subsection(s, where + ("subsections", k))
                                         for k, s in enumerate(config.subsections)))
                self.vmstate(desc, config.fields, config.subsections, where)
            else:
                raise EncodeError(f"unknown VFIO item '{item.kind}'", path=where)


# ---------------------------------------------------------------- model -> description


def describe_subsection(sub: model.Subsection, path: FieldPath) -> Description:
    return Description(sub.name, sub.version, describe_fields(sub.fields, path + ("fields",)),
                       tuple(describe_subsection(s, path + ("subsections", i)) for i, s in enumerate(sub.subsections)))


def describe_fields(fields: tuple[model.Field, ...], path: FieldPath) -> tuple[FieldDesc, ...]:
    return tuple(describe_field(f, path + (i,)) for i, f in enumerate(fields))


def describe_field(f: model.Field, path: FieldPath) -> FieldDesc:
    """The wire layout a field's value implies (its type, its byte length, its element count)."""
    # a list is an array, except one "pci irq state" (four int32s); an array of those holds lists
    # (or, for a size other than 16, bytes), so four plain ints are the single value
    single_irq_state = f.type == "pci irq state" and len(f.value) == 4 and all(type(x) is int for x in f.value) \
        if isinstance(f.value, list) else False
    if isinstance(f.value, list) and not single_irq_state:
        if not f.value:
            return FieldDesc(f.name, f.type, size=FIXED_SIZES.get(f.type, 0), count=0)
        first = describe_field(model.Field(f.name, f.type, f.value[0]), path)
        return FieldDesc(f.name, first.type, size=first.size, count=len(f.value), struct=first.struct,
                         view=first.view)
    if isinstance(f.value, model.StructValue):
        s = f.value
        return FieldDesc(f.name, "struct", struct=Description(
            s.vmsd_name, s.version, describe_fields(s.fields, path + ("value", "fields")),
            tuple(describe_subsection(x, path + ("value", "subsections", i)) for i, x in enumerate(s.subsections))))
    if isinstance(f.value, model.Blob):
        return FieldDesc(f.name, f.type, size=f.value.length)
    if isinstance(f.value, (bytes, bytearray)):
        return FieldDesc(f.name, f.type, size=len(f.value))
    if f.type in FIXED_SIZES:
        return FieldDesc(f.name, f.type, size=FIXED_SIZES[f.type])
    if f.type == RAMFB_CFG_TYPE:
        return FieldDesc(f.name, f.type, size=28)
    if f.type == "capability":
        return FieldDesc(f.name, f.type)
    raise EncodeError(f"field '{f.name}' of type '{f.type}' has a value of type {type(f.value).__name__}",
                      path=path)
