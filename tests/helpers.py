"""What the tests share: assertions about streams, the bundled real captures, and the streams
tests build (edits of a real capture, records written byte by byte, streams encoded from a model).

The one home for test builders: a test that needs a new kind of stream adds its builder here.
Edits of captures start from bytes QEMU wrote and change as little as they can, so the decoder
reaches the damaged spot through real records. Streams written byte by byte use `struct` and
the format's numbers (migration/savevm.c, migration/ram.c, hw/vfio/migration.c), never vmig's
wire/ schemas: an input made by the code under test could share its mistakes.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import sys
import tempfile
from array import array
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from vfio_ramfb_mig import Source, decode, encode_bytes, jsonform
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.errors import DecodeError
from vfio_ramfb_mig.model import (
    Blob,
    Eof,
    Header,
    MigrationStream,
    RamBlock,
    RamBody,
    RamMarker,
    RamMemSize,
    RamPages,
    Section,
    Vmdesc,
)
from vfio_ramfb_mig.render.theme import THEME
from vfio_ramfb_mig.render.tree import stream_tree, summary_table

from paths import CAPTURES

PAGE = 4096

#: a capture with footers and a vmdesc, one without a vmdesc, one without footers, one from QEMU 7.2
WITH_VMDESC = "qemu-10.0.2__pc-q35-10.0__ramfb"
NO_VMDESC = "qemu-10.0.2__pc-q35-10.0__ramfb+novmdesc"
NO_FOOTER = "qemu-10.0.2__pc-q35-10.0__ramfb+nofooter"
QEMU72 = "qemu-7.2.22__pc-q35-7.2__ramfb"
#: not a capture: a VFIO device stream from `vmig encode --machine`, with DATA chunks added
VFIO_DEVICE = "vfio-device"
SWEPT = (WITH_VMDESC, NO_VMDESC, NO_FOOTER, QEMU72, VFIO_DEVICE)

# hw/vfio/migration.c VFIO_MIG_FLAG_*
VFIO_END_OF_STATE = 0xFFFFFFFFEF100001
VFIO_DEV_CONFIG_STATE = 0xFFFFFFFFEF100002
VFIO_DEV_DATA_STATE = 0xFFFFFFFFEF100004


# ---------------------------------------------------------------- assertions


def assert_same_bytes(actual: bytes, expected: bytes) -> None:
    """Equal bytes, or a message naming the first differing offset."""
    if actual == expected:
        return
    first = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
    raise AssertionError(f"bytes differ first at offset {first:#x} (lengths {len(actual)} vs {len(expected)}): "
                         f"{actual[first:first + 16].hex()} vs {expected[first:first + 16].hex()}")


def assert_tiles(stream: MigrationStream) -> None:
    """The records' spans cover the input from 0 to its size, in order, without gaps or overlaps."""
    pos = 0
    for i, record in enumerate(stream.records):
        assert record.span is not None and record.span.offset == pos, f"record {i} ({record.type}) starts at " \
            f"{record.span.offset if record.span else None}, expected {pos}"
        pos = record.span.end
    assert pos == stream.size, f"records end at {pos}, the stream has {stream.size} bytes"


def assert_one_error_line(stderr: str, *, wants: str = "offset") -> str:
    """stderr is one `vmig: error:` line (plus hint lines), naming an offset; no traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("vmig: error:")]
    assert len(errors) == 1, stderr
    assert all(line.startswith(("vmig: error:", "hint:", "vmig: warning:")) for line in lines), stderr
    assert wants in errors[0], errors[0]
    return errors[0]


def decodes_or_fails_cleanly(blob: bytes, *, render: bool = False) -> None:
    """Damaged input either fails with a DecodeError that names an offset inside it, or decodes
    to a stream that is kept whole: encoding it gives back exactly the damaged bytes. With
    `render`, what decodes also renders (tree, summary) and survives the embedded JSON form."""
    try:
        stream = decode(blob)
    except DecodeError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(blob), (type(exc).__name__, str(exc))
        return
    source = Source.from_bytes(blob)
    assert_same_bytes(encode_bytes(stream, source), blob)
    if render:
        console = Console(file=io.StringIO(), width=120, theme=THEME, no_color=True)
        console.print(stream_tree(stream))
        console.print(summary_table(stream))
        document = jsonform.dumps(stream, embed=True, source=source)
        assert_same_bytes(encode_bytes(jsonform.loads(document)), blob)


# ---------------------------------------------------------------- the bundled captures


def path(name: str) -> Path:
    return CAPTURES / f"{name}.bin"


@functools.cache
def data(name: str) -> bytes:
    return vfio_with_data() if name == VFIO_DEVICE else path(name).read_bytes()


@functools.cache
def stream(name: str) -> MigrationStream:
    return decode(data(name))


def boundaries(name: str, slack: int) -> list[int]:
    """Every record boundary of a capture, and `slack` bytes either side, inside the file."""
    size = len(data(name))
    edges = {e for r in stream(name).records for e in (r.span.offset, r.span.end)}
    return sorted({e + d for e in edges for d in range(-slack, slack + 1) if 0 <= e + d < size})


def complete_prefixes(name: str) -> set[int]:
    """Cut points that leave a whole, decodable stream: right after EOF (the vmdesc is optional),
    when the sections have footers to delimit them without it."""
    if not any(isinstance(r, Section) and r.footer for r in stream(name).records):
        return set()
    return {r.span.end for r in stream(name).records if isinstance(r, Eof)}


def vmdesc_record(name: str) -> Vmdesc:
    return next(r for r in stream(name).records if isinstance(r, Vmdesc))


def eof_offset(name: str) -> int:
    return next(r.span.offset for r in stream(name).records if isinstance(r, Eof))


def section(name: str, idstr: str, kind: str = "section_full") -> Section:
    return next(r for r in stream(name).records if isinstance(r, Section) and r.idstr == idstr and r.type == kind)


def vmdesc_device(doc: dict, idstr: str) -> dict:
    return next(d for d in doc["devices"] if d["name"] == idstr)


# ---------------------------------------------------------------- edits of a capture


def with_vmdesc_text(name: str, text: bytes) -> bytes:
    """The capture with its vmdesc JSON replaced by `text` (the be32 length follows it)."""
    vmdesc = vmdesc_record(name)
    return data(name)[:vmdesc.span.offset] + struct.pack(">BI", 0x06, len(text)) + text


def with_vmdesc_doc(name: str, edit) -> bytes:
    """The capture with its vmdesc document changed in place by `edit(doc)`."""
    doc = json.loads(json.dumps(vmdesc_record(name).document))
    edit(doc)
    return with_vmdesc_text(name, json.dumps(doc).encode())


def insert_before_eof(name: str, record: bytes) -> bytes:
    """The capture with one more record just before its EOF byte (the vmdesc stays valid)."""
    at = eof_offset(name)
    return data(name)[:at] + record + data(name)[at:]


def rebuilt(name: str, *, before_eof: bytes = b"", edit=None) -> bytes:
    """The capture with records added before its EOF and its vmdesc document changed by `edit`."""
    vmdesc = vmdesc_record(name)
    doc = json.loads(json.dumps(vmdesc.document))
    if edit is not None:
        edit(doc)
    text = json.dumps(doc).encode()
    at = eof_offset(name)
    return (data(name)[:at] + before_eof + data(name)[at:vmdesc.span.offset]
            + struct.pack(">BI", 0x06, len(text)) + text)


def patched(name: str, offset: int, fmt: str, value: int) -> bytes:
    buf = bytearray(data(name))
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


def patch_section_version(blob: bytes, idstr: str, version: int) -> bytes:
    """The FULL section `idstr` with another version_id in its header."""
    full = next(s for s in decode(blob).sections if s.idstr == idstr and s.type == "section_full")
    at = full.span.offset + 6 + len(idstr) + 4  # type, section_id, len, idstr, instance_id
    out = bytearray(blob)
    out[at:at + 4] = struct.pack(">I", version)
    return bytes(out)


def patch_subsection_version(blob: bytes, name: str, version: int) -> bytes:
    """The first subsection `name` with another version_id."""
    at = blob.index(b"\x05" + bytes([len(name)]) + name.encode()) + 2 + len(name)
    return blob[:at] + struct.pack(">I", version) + blob[at + 4:]


def rename(blob: bytes, old: str, new: str) -> bytes:
    """Same-length rename in the stream and its vmdesc (so vmig still decodes it)."""
    assert len(old) == len(new)
    return blob.replace(old.encode(), new.encode())


def rename_machine(blob: bytes, old: str, new: str) -> bytes:
    """Another machine name of the same length in the configuration record (and the vmdesc)."""
    assert len(old) == len(new)
    head = blob.index(b"\x07" + struct.pack(">I", len(old)) + old.encode())
    out = blob[:head + 5] + new.encode() + blob[head + 5 + len(old):]
    return out.replace(f'"{old}"'.encode(), f'"{new}"'.encode())


def insert_switchover_start(blob: bytes) -> bytes:
    """SWITCHOVER_START before the first END section, as 10.0 writes it (send-switchover-start=on)."""
    end = next(s for s in decode(blob).sections if s.type == "section_end")
    return blob[:end.span.offset] + b"\x08\x00\x0b\x00\x00" + blob[end.span.offset:]


#: RAMFBCfg (hw/display/ramfb.c): field -> (offset in the 28 bytes, struct format), big-endian on the wire
RAMFB_CFG_FIELDS = {"addr": (0, ">Q"), "fourcc": (8, ">I"), "flags": (12, ">I"), "width": (16, ">I"),
                    "height": (20, ">I"), "stride": (24, ">I")}


def with_ramfb_cfg(blob: bytes, offset: int, **values: int) -> bytes:
    """The stream with some fields of the ramfb cfg at `offset` replaced (e.g. width=800)."""
    out = bytearray(blob)
    for key, value in values.items():
        at, fmt = RAMFB_CFG_FIELDS[key]
        struct.pack_into(fmt, out, offset + at, value)
    return bytes(out)


def resize_block(blob: bytes, block: str, length: int) -> bytes:
    """The stream whose RAM block list gives `block` another used length, and the total to match
    (the flag bits of the total's word sit below the page size, so adding keeps them)."""
    data = bytearray(blob)
    item = next(i for s in decode(bytes(data)).sections if isinstance(s.body, RamBody)
                for i in s.body.items if isinstance(i, RamMemSize))
    at = item.span.offset
    name = block.encode()
    where = data.index(bytes([len(name)]) + name, at) + 1 + len(name)
    old = int.from_bytes(data[where:where + 8], "big")
    data[where:where + 8] = length.to_bytes(8, "big")
    total = int.from_bytes(data[at:at + 8], "big")
    data[at:at + 8] = (total + length - old).to_bytes(8, "big")
    return bytes(data)


def with_zero_pages(blob: bytes, pages: int) -> bytes:
    """The stream with `pages` more ZERO page records for its first RAM block (which grows to hold
    them), where QEMU writes them: in the first PART section, before its EOS. A big stream fast."""
    decoded = decode(blob)
    ram = [r for r in decoded.records if isinstance(r, Section) and r.idstr == "ram"]
    first = next(i for i in ram[0].body.items if isinstance(i, RamMemSize)).blocks[0]
    part_eos = next(i for i in ram[1].body.items if isinstance(i, RamMarker) and i.kind == "eos")
    grown = resize_block(blob, first.idstr, first.used_length + pages * PAGE)  # same length: offsets hold
    zero, cont = 0x02, 0x20  # RAM_SAVE_FLAG_ZERO, RAM_SAVE_FLAG_CONTINUE
    record = struct.Struct(">QB")
    zeros = (struct.pack(">Q", first.used_length | zero) + str8(first.idstr) + b"\0"
             + b"".join(record.pack((first.used_length + i * PAGE) | zero | cont, 0) for i in range(1, pages)))
    return grown[:part_eos.span.offset] + zeros + grown[part_eos.span.offset:]


def inline(run: RamPages, blob: bytes, ps: int = PAGE) -> RamPages:
    """The run with its pages carried in the model, so its name or CONTINUE can change."""
    if run.kind != "page" or run.data:
        return replace(run, span=None)
    pages = b"".join(blob[run.payload_offset(i, ps):run.payload_offset(i, ps) + ps] for i in range(run.count))
    return replace(run, data=(Blob(0, len(pages), pages),), span=None)


def with_part_before_end(blob: bytes, runs: list[RamPages]) -> bytes:
    """The capture with one more RAM PART section (these runs, then EOS) just before its RAM END."""
    src = Source.from_bytes(blob)
    decoded = decode(src)
    records = list(decoded.records)
    end = next(i for i, r in enumerate(records) if isinstance(r, Section) and r.idstr == "ram"
               and r.type == "section_end")
    ram_end = records[end]
    items = [inline(it, blob) if isinstance(it, RamPages) else it for it in ram_end.body.items]
    if items and isinstance(items[0], RamPages) and not items[0].named:
        items[0] = replace(items[0], named=True)  # the block it continued is no longer the last
    records[end] = replace(ram_end, body=replace(ram_end.body, items=tuple(items)))
    part = Section("section_part", ram_end.section_id, "ram", ram_end.instance_id, ram_end.version_id,
                   RamBody((*runs, RamMarker("eos")), ram_end.body.page_size))
    records.insert(end, part)
    return encode_bytes(replace(decoded, records=tuple(records)), src)


# ---------------------------------------------------------------- records written byte by byte


def str8(text: bytes | str) -> bytes:
    """A counted string: u8 length, then the bytes (qemu_put_counted_string)."""
    raw = text.encode() if isinstance(text, str) else text
    return bytes([len(raw)]) + raw


FILE_HEADER = b"QEVM" + struct.pack(">I", 3)


def configuration(machine: bytes, *caps: bytes) -> bytes:
    """The configuration record: machine name, and a configuration/capabilities subsection when
    capabilities are given."""
    out = b"\x07" + struct.pack(">I", len(machine)) + machine
    if caps:
        out += (b"\x05" + str8(b"configuration/capabilities") + struct.pack(">I", 1)
                + struct.pack(">I", len(caps)) + b"".join(str8(c) for c in caps))
    return out


def full_section(section_id: int, idstr: bytes, body: bytes, *, instance_id: int = 0, version_id: int = 1,
                 footer: bool = True) -> bytes:
    """A QEMU_VM_SECTION_FULL record (savevm.c save_section_header / save_section_footer)."""
    head = struct.pack(">BIB", 0x04, section_id, len(idstr)) + idstr + struct.pack(">II", instance_id, version_id)
    return head + body + (struct.pack(">BI", 0x7E, section_id) if footer else b"")


def caps_stream(machine: bytes, *caps: bytes) -> bytes:
    """header, a configuration record with configuration/capabilities, EOF (no RAM, no devices)."""
    return FILE_HEADER + configuration(machine, *caps) + b"\x00"


def ram_stream(records: list[tuple[str, int, bytes]], pages: int = 4) -> bytes:
    """header, configuration, RAM START (one block pc.ram), one PART with `records`, END, EOF.

    records: (kind, page index, data) with kind "page" (data = 4096 bytes), "zero", "xbzrle" (data = delta)
    or "compressed" (data = zlib data: a COMPRESS_PAGE record, QEMU <= 9.0).
    """
    out = bytearray(FILE_HEADER + configuration(b"pc-q35-8.2"))
    start = struct.pack(">Q", pages * PAGE | 0x04) + str8(b"pc.ram") + struct.pack(">Q", pages * PAGE)
    start += struct.pack(">Q", 0x10)
    out += b"\x01" + struct.pack(">I", 1) + str8(b"ram") + struct.pack(">II", 0, 4) + start
    out += b"\x7e" + struct.pack(">I", 1)
    part = bytearray()
    for n, (kind, index, page) in enumerate(records):
        cont = 0x20 if n else 0
        name = b"" if n else str8(b"pc.ram")
        if kind == "page":
            part += struct.pack(">Q", index * PAGE | 0x08 | cont) + name + page
        elif kind == "zero":
            part += struct.pack(">Q", index * PAGE | 0x02 | cont) + name + b"\x00"
        elif kind == "compressed":
            part += struct.pack(">Q", index * PAGE | 0x100 | cont) + name + struct.pack(">I", len(page)) + page
        else:
            part += struct.pack(">Q", index * PAGE | 0x40 | cont) + name + b"\x01" + struct.pack(">H", len(page)) + page
    part += struct.pack(">Q", 0x10)
    out += b"\x02" + struct.pack(">I", 1) + part + b"\x7e" + struct.pack(">I", 1)
    out += b"\x03" + struct.pack(">I", 1) + struct.pack(">Q", 0x10) + b"\x7e" + struct.pack(">I", 1)
    return bytes(out + b"\x00")


def mapped_ram_stream(blocks: list[tuple[str, int, dict[int, bytes], set[int]]], *, machine: bytes = b"pc-q35-10.0",
                      section_id: int = 2, align: int = 65536) -> bytes:
    """A mapped-ram stream (wire-format §6.5): header, configuration with the mapped-ram
    capability, RAM START whose block list gives each block (idstr, used_length, {page: bytes}
    with its bit set, pages whose bytes are stale: in the region, bit clear) a header, its
    bitmap and its pages region (at the next multiple of `align`), END, EOF."""
    out = bytearray(FILE_HEADER + configuration(machine, b"mapped-ram"))
    out += b"\x01" + struct.pack(">I", section_id) + str8("ram") + struct.pack(">II", 0, 4)
    out += struct.pack(">Q", sum(b[1] for b in blocks) | 0x04)
    for idstr, used, present, stale in blocks:
        out += str8(idstr) + struct.pack(">Q", used)
        pages = used // PAGE
        bitmap_at = len(out) + 28
        bitmap_len = (pages + 63) // 64 * 8
        pages_at = -(-(bitmap_at + bitmap_len) // align) * align
        out += struct.pack(">IQQQ", 1, PAGE, bitmap_at, pages_at)
        bits = sum(1 << p for p in present)
        out += bits.to_bytes(bitmap_len, "little")
        out += bytes(pages_at - len(out))
        region = bytearray(used)
        for p, content in present.items():
            region[p * PAGE:(p + 1) * PAGE] = content
        for p in stale:
            region[p * PAGE:(p + 1) * PAGE] = b"\xee" * PAGE
        out += region
    footer = b"\x7e" + struct.pack(">I", section_id)
    out += struct.pack(">Q", 0x10) + footer
    out += b"\x03" + struct.pack(">I", section_id) + struct.pack(">Q", 0x10) + footer
    out += b"\x00"
    return bytes(out)


def mapped_ram_pages(present: list[bytes | None]) -> bytes:
    """One block pc.ram whose mapped-ram bitmap has a bit for each page given (None: bit clear),
    its pages right after the bitmap, on the machine ram_stream uses (to compare the two)."""
    pages = {i: content for i, content in enumerate(present) if content is not None}
    return mapped_ram_stream([("pc.ram", len(present) * PAGE, pages, set())], machine=b"pc-q35-8.2", section_id=1,
                             align=1)


def write_big_stream(target: Path, pages: int, mapped: bool = False) -> None:
    """A stream of `pages` pages of pc.ram, written a page at a time: normal pages in one PART,
    or with mapped-ram, every page present in the block's region."""
    total = pages * PAGE
    with open(target, "wb") as f:
        f.write(FILE_HEADER)
        if mapped:
            f.write(configuration(b"pc-q35-10.0", b"mapped-ram"))
        f.write(b"\x01" + struct.pack(">IB", 2, 3) + b"ram" + struct.pack(">IIQ", 0, 4, total | 0x04))
        f.write(b"\x06pc.ram" + struct.pack(">Q", total))
        if mapped:
            bitmap_at = f.tell() + 28
            bitmap = b"\xff" * ((pages + 63) // 64 * 8)
            pages_at = -(-(bitmap_at + len(bitmap)) // (1 << 20)) * (1 << 20)
            f.write(struct.pack(">IQQQ", 1, PAGE, bitmap_at, pages_at) + bitmap)
            f.write(bytes(pages_at - f.tell()))
            f.writelines(bytes([i % 251 + 1]) * PAGE for i in range(pages))
            f.write(struct.pack(">Q", 0x10) + b"\x7e" + struct.pack(">I", 2))
        else:
            f.write(struct.pack(">Q", 0x10) + b"\x7e" + struct.pack(">I", 2))
            f.write(b"\x02" + struct.pack(">I", 2))
            for i in range(pages):
                head = struct.pack(">Q", i * PAGE | 0x08) + b"\x06pc.ram" if i == 0 \
                    else struct.pack(">Q", i * PAGE | 0x28)
                f.write(head + bytes([i % 251 + 1]) * PAGE)
            f.write(struct.pack(">Q", 0x10) + b"\x7e" + struct.pack(">I", 2))
        f.write(b"\x03" + struct.pack(">IQ", 2, 0x10) + b"\x7e" + struct.pack(">I", 2) + b"\x00")


def write_scattered_zero_stream(target: Path, records: int) -> None:
    """A stream of `records` zero-page records of pc.ram at every other page: each its own run
    (the walk starts a run for each), so a reader that keeps the runs grows with the stream."""
    total = 2 * records * PAGE
    with open(target, "wb") as f:
        f.write(FILE_HEADER)
        f.write(b"\x01" + struct.pack(">IB", 2, 3) + b"ram" + struct.pack(">IIQ", 0, 4, total | 0x04))
        f.write(b"\x06pc.ram" + struct.pack(">Q", total))
        f.write(struct.pack(">Q", 0x10) + b"\x7e" + struct.pack(">I", 2))
        f.write(b"\x02" + struct.pack(">I", 2))
        f.write(struct.pack(">Q", 0x02) + b"\x06pc.ram\x00")
        words = array("Q", range(2 * PAGE | 0x22, total, 2 * PAGE))
        if sys.byteorder == "little":
            words.byteswap()
        raw, out = words.tobytes(), bytearray(9 * len(words))
        for k in range(8):  # each record: its big-endian word, then the fill byte 0
            out[k::9] = raw[k::8]
        f.write(out)
        f.write(struct.pack(">Q", 0x10) + b"\x7e" + struct.pack(">I", 2))
        f.write(b"\x03" + struct.pack(">IQ", 2, 0x10) + b"\x7e" + struct.pack(">I", 2) + b"\x00")


def vfio_stream(machine: bytes = b"pc-q35-8.2", width: int | None = 1024, section_id: int = 0x29) -> bytes:
    """header, configuration, a FULL 0000:00:02.0/vfio section (DEV_CONFIG_STATE, PCIDevice v2,
    256 config bytes, irq state, [VFIODisplay subsection with a ramfb cfg], END_OF_STATE), EOF."""
    cfg = bytearray(256)
    cfg[0:4] = bytes.fromhex("8680923e")
    cfg[4:6] = (0x0407).to_bytes(2, "little")
    cfg[9:12] = bytes.fromhex("000003")
    payload = struct.pack(">Q", VFIO_DEV_CONFIG_STATE) + struct.pack(">I", 2) + bytes(cfg) + bytes(16)
    if width is not None:
        payload += b"\x05" + str8(b"VFIOPCIDevice/VFIODisplay") + struct.pack(">I", 1)
        payload += struct.pack(">QIIIII", 0x7EC00000, 0x34325258, 0, width, 768, 4096)
    payload += struct.pack(">Q", VFIO_END_OF_STATE)
    return FILE_HEADER + configuration(machine) + full_section(section_id, b"0000:00:02.0/vfio", payload) + b"\x00"


# ---------------------------------------------------------------- streams encoded from a model


def page_run(block: str, offset: int, *pages: bytes, named: bool = True) -> RamPages:
    body = b"".join(pages)
    return RamPages("page", block, offset, len(pages), named, data=(Blob(0, len(body), body),))


def zero_run(block: str, offset: int, count: int = 1, fill: int = 0, named: bool = True) -> RamPages:
    return RamPages("zero", block, offset, count, named, fill=fill)


def xbzrle_run(block: str, offset: int, delta: bytes, named: bool = True) -> RamPages:
    return RamPages("xbzrle", block, offset, 1, named, delta=delta)


def synthetic(blocks: list[tuple[str, int]], *sections: list[RamPages]) -> bytes:
    """A stream of just RAM: START (the block list), one PART per list of runs but the last, which
    is the END, then EOF (no configuration, no vmdesc: the RAM sections are built in)."""
    total = sum(used for _, used in blocks)
    records: list = [Header(magic=0x5145564D, version=3),
                     Section("section_start", 2, "ram", 0, 4,
                             RamBody((RamMemSize(total, tuple(RamBlock(i, u) for i, u in blocks)),
                                      RamMarker("eos")), PAGE))]
    for k, runs in enumerate(sections):
        kind = "section_end" if k == len(sections) - 1 else "section_part"
        records.append(Section(kind, 2, "ram", 0, 4, RamBody((*runs, RamMarker("eos")), PAGE)))
    records.append(Eof())
    return encode_bytes(MigrationStream(tuple(records), 0))


@functools.cache
def device_stream(machine: str, *flags: str) -> bytes:
    """A VFIO device stream as `vmig encode --machine` writes it (START, END, FULL with the
    VFIOPCIDevice config state, vmdesc): the captures have no VFIO section."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "device.bin"
        result = CliRunner().invoke(cli, ["encode", "--machine", machine, *flags, "-o", str(out)])
        assert result.exit_code == 0, result.output
        return out.read_bytes()


@functools.cache
def vfio_with_data() -> bytes:
    """The VFIO device stream with a PART of two DATA chunks (one small, one over the inline
    limit) and one more chunk in its END, as a device with state would send them."""
    blob = device_stream("pc-q35-8.2", "--ramfb")
    end = next(r for r in decode(blob).records if isinstance(r, Section) and r.type == "section_end")
    chunk = b"".join(struct.pack(">QQ", VFIO_DEV_DATA_STATE, len(d)) + d
                     for d in (bytes(range(40)), bytes(i % 251 for i in range(5000))))
    part = (struct.pack(">BI", 0x02, end.section_id) + chunk + struct.pack(">Q", VFIO_END_OF_STATE)
            + struct.pack(">BI", 0x7E, end.section_id))
    more = struct.pack(">QQ", VFIO_DEV_DATA_STATE, 24) + b"\x5a" * 24
    body_at = end.span.offset + 5
    return blob[:end.span.offset] + part + blob[end.span.offset:body_at] + more + blob[body_at:]
