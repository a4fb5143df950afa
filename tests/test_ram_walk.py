"""The page-record walk (ram/walk.py, plain struct over the buffer) and the construct description
of a RAM record (wire/ram.py) give the same records on every real capture.

The construct side parses each RAM section on its own from its first byte, item after item
(address word, block name, fill byte, page, XBZRLE delta, compressed length and data; the block
list with the entries' optional words), knowing nothing of the walk; the walk's side is its runs expanded record by
record (ram.walk.records)."""

from __future__ import annotations

import io
import lzma
import struct

import pytest
from paths import CAPTURES

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.text import from_wire
from vfio_ramfb_mig.model import Blob, RamBody, RamPages
from vfio_ramfb_mig.ram.walk import records
from vfio_ramfb_mig.wire.ram import (
    MappedRamHeader,
    RamBlockEntry,
    RamFlag,
    page_record,
)

# every kind of capture once (construct parses a record ~100x slower than the walk): paused and
# booted x86 guests, running guests (pages re-sent, XBZRLE, mapped-ram, multifd, postcopy)
CAPTURE_FILES = sorted(p for p in CAPTURES.glob("*.bin")
                       if any(k in p.stem for k in ("booted", "x-ignore-shared", "nofooter", "novmdesc"))
                       or p.stem.startswith("qemu-7.2.22__pc-i440fx")) \
    + sorted((CAPTURES.parent / "live").glob("*.bin*")) + sorted((CAPTURES.parent / "compress").glob("*.bin*"))
KINDS = {RamFlag.ZERO: "zero", RamFlag.PAGE: "page", RamFlag.XBZRLE: "xbzrle", RamFlag.COMPRESS_PAGE: "compressed"}


def construct_records(data: bytes, body_offset: int, page_size: int, caps: set[str],
                      last_block: list[str]) -> list[tuple]:
    """(offset, length, block, page offset, kind, named, fill, delta, payload offset, zlib data
    (offset, length)) of every page record of one RAM section, parsed with the wire/ram.py schemas
    alone."""
    f = io.BytesIO(data)
    f.seek(body_offset)
    schema = page_record(page_size)
    out = []
    while True:
        pos = f.tell()
        rec = schema.parse_stream(f)
        flags = RamFlag(rec.flags)
        if flags & RamFlag.MEM_SIZE:
            total = rec.offset
            while total:
                entry = RamBlockEntry.parse_stream(f)
                total -= entry.used_length
                if "x-ignore-shared" in caps:
                    f.seek(8, 1)
                if "mapped-ram" in caps:
                    header = MappedRamHeader.parse_stream(f)
                    f.seek(header.pages_offset + entry.used_length)
            continue
        if flags & RamFlag.EOS:
            return out
        if flags & RamFlag.MULTIFD_FLUSH:
            continue
        kind = KINDS[flags & ~RamFlag.CONTINUE]
        named = rec.block is not None
        if named:
            last_block[0] = from_wire(rec.block)
        fill = rec.fill if rec.fill is not None else 0
        delta = rec.xbzrle.delta if rec.xbzrle is not None else None
        payload = f.tell() - page_size if kind == "page" else None
        zlib_data = (f.tell() - rec.compressed.length, rec.compressed.length) if rec.compressed is not None else None
        out.append((pos, f.tell() - pos, last_block[0], rec.offset, kind, named, fill, delta, payload, zlib_data))


def walk_records(run: RamPages, page_size: int) -> list[tuple]:
    out = []
    for i, (offset, length, page_offset, named) in enumerate(records(run, page_size)):
        payload = run.payload_offset(i, page_size) if run.kind == "page" else None
        zlib_data = (run.data[0].offset, run.data[0].length) if run.kind == "compressed" else None
        out.append((offset, length, run.block, page_offset, run.kind, named, run.fill, run.delta, payload, zlib_data))
    return out


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.name.split(".bin")[0])
def test_walk_and_construct_schema_agree(path) -> None:
    data = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
    stream = decode(data)
    config = stream.configuration
    caps: set[str] = set()
    for sub in config.subsections if config else ():
        if sub.name == "configuration/capabilities":
            caps = {from_wire(c) if isinstance(c, bytes) else c for c in sub.fields[-1].value}
    last_block = [""]
    seen = 0
    for section in stream.sections:
        if not isinstance(section.body, RamBody):
            continue
        header = 1 + 4 + (1 + len(section.idstr) + 4 + 4 if section.long_header else 0)
        expected = construct_records(data, section.span.offset + header, section.body.page_size, caps, last_block)
        got = [r for item in section.body.items if isinstance(item, RamPages)
               for r in walk_records(item, section.body.page_size)]
        assert got == expected
        seen += len(got)
    # a mapped-ram stream has its pages in regions, not records: its block list was parsed above
    assert seen or "mapped-ram" in caps or "ram" not in {s.idstr for s in stream.sections}


# ---------------------------------------------------------------- flags, page size, continue


def _stream(page_size: int, runs, machine: str = "virt-10.0") -> bytes:
    """Header, configuration (target-page-bits for `page_size`), RAM START with one block 'ram0'
    of 64 pages, one RAM END with `runs`, EOF."""
    from vfio_ramfb_mig import encode_bytes
    from vfio_ramfb_mig.model import (
        Configuration, Eof, Field, Header, MigrationStream, RamBlock, RamMarker, RamMemSize, Section, Subsection,
    )

    bits = page_size.bit_length() - 1
    config = Configuration(machine, (Subsection("configuration/target-page-bits", 1,
                                                (Field("target_page_bits", "uint32", bits),)),))
    used = 64 * page_size
    records = (Header(0x5145564D, 3), config,
               Section("section_start", 2, "ram", 0, 4, RamBody((RamMemSize(used, (RamBlock("ram0", used),)),
                                                                 RamMarker("eos")), page_size)),
               Section("section_end", 2, "ram", 0, 4, RamBody((*runs, RamMarker("eos")), page_size)), Eof())
    return encode_bytes(MigrationStream(records, 0))


def _patch_word(data: bytes, page_size: int, flags: int) -> tuple[bytes, int]:
    """The stream with the first page record's word ORed with `flags`, and that word's offset."""
    stream = decode(data)
    run = next(item for s in stream.sections if isinstance(s.body, RamBody) for item in s.body.items
               if isinstance(item, RamPages))
    at = run.span.offset
    (word,) = struct.unpack_from(">Q", data, at)
    return data[:at] + struct.pack(">Q", word | flags) + data[at + 8:], at


@pytest.mark.parametrize("page_size", [4096, 65536])
def test_flag_bits_are_those_below_the_target_page_size(page_size: int) -> None:
    """The loader takes every bit below TARGET_PAGE_SIZE as a flag (ram_load_precopy: addr &
    ~TARGET_PAGE_MASK) and refuses combinations it does not know, FULL (0x1) among them; the bits
    above are the page's offset."""
    from vfio_ramfb_mig.errors import CorruptError

    runs = (RamPages("zero", "ram0", 0, 2, True),)
    data = _stream(page_size, runs)
    stream = decode(data)
    assert [s.body.page_size for s in stream.sections if isinstance(s.body, RamBody)] == [page_size, page_size]
    for bit in (0x001, 0x400, page_size >> 1):
        bad, at = _patch_word(data, page_size, bit)
        with pytest.raises(CorruptError, match="impossible RAM flags") as info:
            decode(bad)
        assert info.value.offset == at
    # the first bit above the flags is an offset: the same record, one page further on
    moved, _ = _patch_word(data, page_size, page_size)
    run = next(i for s in decode(moved).sections if isinstance(s.body, RamBody) for i in s.body.items
               if isinstance(i, RamPages))
    assert run.offset == page_size


@pytest.mark.parametrize("kind, index", [("zero", 5), ("page", 1)])
def test_a_stray_flag_bit_inside_a_run_is_refused_there(kind: str, index: int) -> None:
    """A record in the middle of a long run (where the walk's fast path reads one word per record)
    with CONTINUE, its kind and one bit more is refused at that record, like the run's first."""
    from vfio_ramfb_mig.errors import CorruptError

    pages = b"".join(bytes([n]) * 4096 for n in range(1, 5))
    runs = (RamPages("zero", "ram0", 0, 8, True), RamPages("page", "ram0", 8 * 4096, 4, False,
                                                             data=(Blob(0, len(pages), pages),)))
    data = _stream(4096, runs)
    run = next(i for s in decode(data).sections if isinstance(s.body, RamBody) for i in s.body.items
               if isinstance(i, RamPages) and i.kind == kind)
    at = run.record_offset(index, 4096)
    for bit in (0x400, 0x100, 0x800):  # undefined; MULTIFD_FLUSH beside a page kind; undefined
        (word,) = struct.unpack_from(">Q", data, at)
        bad = data[:at] + struct.pack(">Q", word | bit) + data[at + 8:]
        with pytest.raises(CorruptError, match="impossible RAM flags") as info:
            decode(bad)
        assert info.value.offset == at


def test_continue_flag_names_no_block_and_carries_on_across_sections() -> None:
    """A record with CONTINUE has no block name and is in the block of the last record that named
    one, even in an earlier section; one without it names its block again."""
    data = _stream(4096, (RamPages("zero", "ram0", 0, 3, True), RamPages("zero", "ram0", 8 * 4096, 1, False),
                          RamPages("zero", "ram0", 2 * 4096, 1, True)))
    runs = [i for s in decode(data).sections if isinstance(s.body, RamBody) for i in s.body.items
            if isinstance(i, RamPages)]
    assert [(r.offset // 4096, r.count, r.named) for r in runs] == [(0, 3, True), (8, 1, False), (2, 1, True)]
    words = [struct.unpack_from(">Q", data, off)[0] for r in runs for off, *_ in records(r, 4096)]
    assert [w & 0x20 for w in words] == [0, 0x20, 0x20, 0x20, 0]


def test_json_form_round_trip_keeps_every_record() -> None:
    """decode --json, then encode --from-json: the same bytes, for XBZRLE deltas, fill bytes,
    CONTINUE across sections and pages carried inline (a dropped delta or fill would show)."""
    from vfio_ramfb_mig import Source, encode_bytes
    from vfio_ramfb_mig.codec import jsonform

    data = _stream(4096, (RamPages("page", "ram0", 0, 2, True, data=(Blob(0, 8192, b"a" * 4096 + b"b" * 4096),)),
                          RamPages("xbzrle", "ram0", 0, 1, False, delta=b"\x00\x02zz"),
                          RamPages("xbzrle", "ram0", 4096, 1, True, delta=b"\x05\x01q"),
                          RamPages("zero", "ram0", 2 * 4096, 2, False, fill=0x42)))
    src = Source.from_bytes(data)
    for embed in (False, True):
        text = jsonform.dumps(decode(src), source=src, embed=embed)
        again = encode_bytes(jsonform.loads(text), None if embed else src)
        assert again == data


@pytest.mark.parametrize("named", [True, False])
def test_zero_runs_are_built_a_piece_at_a_time_as_record_by_record(named: bool) -> None:
    """encode builds a ZERO run's records many at a time (zero_run_bytes): the same bytes as the
    records one by one, across its piece boundary, with a fill byte and an offset of its own."""
    from vfio_ramfb_mig.ram.walk import _ZERO_CHUNK, record_parts, zero_run_bytes

    run = RamPages("zero", "pc.ram", 7 * 4096, 2 * _ZERO_CHUNK + 3, named, fill=0x42)
    expected = b"".join(head + tail for head, tail in record_parts(run, 4096))
    assert b"".join(zero_run_bytes(run, 4096)) == expected
    assert expected[8 if not named else 8 + 7] == 0x42


def test_encode_copies_a_run_only_when_every_record_is_as_it_would_write_it(tmp_path) -> None:
    """encode --from-json with a source whose bytes differ in one record word in the middle of a
    run (another file of the same size): that run is written record by record, and the output is
    the stream the JSON describes."""
    from vfio_ramfb_mig import Source, encode_bytes
    from vfio_ramfb_mig.codec import jsonform
    from vfio_ramfb_mig.ram.walk import run_in_source

    path = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
    data = path.read_bytes()
    src = Source.from_bytes(data)
    stream = decode(src)
    run = max((i for s in stream.sections if isinstance(s.body, RamBody) for i in s.body.items
               if isinstance(i, RamPages) and i.kind == "page"), key=lambda r: r.count)
    assert run.count > 4 and run_in_source(run, 4096, src)
    off = run.record_offset(run.count // 2, 4096)
    other = bytearray(data)
    other[off + 6] ^= 0x10  # the middle record's page offset, as another file would have it
    other_src = Source.from_bytes(bytes(other))
    assert not run_in_source(run, 4096, other_src)
    text = jsonform.dumps(stream, source=src)
    assert encode_bytes(jsonform.loads(text), other_src) == data


def test_postcopy_advise_says_which_blocks_carry_their_page_size() -> None:
    """With postcopy-ram, a block whose page size is not the ordinary one (huge pages) carries it
    after its length in the block list (ram_save_setup); the ADVISE command's page-size summary
    says which sizes there are. Decoded, kept, written back the same."""
    from vfio_ramfb_mig import encode_bytes
    from vfio_ramfb_mig.model import Command, Eof, Header, MigrationStream, RamBlock, RamMarker, RamMemSize, Section

    huge = 2 << 20
    blocks = (RamBlock("pc.ram", 4 << 20), RamBlock("huge", 4 << 20, page_size=huge), RamBlock("small", 1 << 20))
    records = (Header(0x5145564D, 3),
               Command(3, "POSTCOPY_ADVISE", struct.pack(">QQ", 4096 | huge, 4096)),
               Section("section_start", 2, "ram", 0, 4, RamBody((RamMemSize(9 << 20, blocks), RamMarker("eos")))),
               Section("section_end", 2, "ram", 0, 4, RamBody((RamPages("zero", "huge", 0, 1, True),
                                                                RamMarker("eos")))), Eof())
    data = encode_bytes(MigrationStream(records, 0))
    stream = decode(data)
    (mem,) = [i for s in stream.sections if isinstance(s.body, RamBody) for i in s.body.items
              if isinstance(i, RamMemSize)]
    assert [b.page_size for b in mem.blocks] == [None, huge, None]
    assert encode_bytes(stream) == data


@pytest.mark.parametrize("kind", ["page", "zero"])
def test_run_in_source_sees_a_change_in_any_byte_of_any_record(kind: str) -> None:
    """run_in_source checks long runs a byte lane at a time: a change in any of the 8 bytes of a
    record's address word, first, middle or last record, or in a ZERO record's fill byte, is seen."""
    from vfio_ramfb_mig import Source
    from vfio_ramfb_mig.ram.walk import run_in_source

    data = (CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin").read_bytes()
    stream = decode(data)
    run = max((i for s in stream.sections if isinstance(s.body, RamBody) for i in s.body.items
               if isinstance(i, RamPages) and i.kind == kind), key=lambda r: r.count)
    assert run.count > 40 and run_in_source(run, 4096, Source.from_bytes(data))
    spots = [(i, k) for i in (1, run.count // 2, run.count - 1) for k in range(8 + (kind == "zero"))]
    for i, k in spots:
        other = bytearray(data)
        other[run.record_offset(i, 4096) + k] ^= 0x01 if k < 7 else 0x80  # the low byte holds flags
        assert not run_in_source(run, 4096, Source.from_bytes(bytes(other))), (i, k)


def test_encode_leaves_out_a_dropped_run_between_two_copied_ones() -> None:
    """Encode notes the source ranges it copies and joins adjacent ones into one copy: a run taken
    out of the model between two runs copied from the source leaves a gap that must not be joined
    over. The output is the source without that run's records."""
    import dataclasses

    from vfio_ramfb_mig import Source, encode_bytes

    data = (CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin").read_bytes()
    stream = decode(data)
    records = list(stream.records)
    k, section = next((k, r) for k, r in enumerate(records) if isinstance(getattr(r, "body", None), RamBody)
                      and sum(isinstance(i, RamPages) for i in r.body.items) >= 3)
    items = list(section.body.items)
    j = [n for n, i in enumerate(items) if isinstance(i, RamPages)][1]
    gone = items.pop(j)
    assert not gone.named and gone.span is not None  # a CONTINUE run: the rest stays a valid stream
    records[k] = dataclasses.replace(section, body=dataclasses.replace(section.body, items=tuple(items)))
    out = encode_bytes(dataclasses.replace(stream, records=tuple(records)), Source.from_bytes(data))
    assert out == data[:gone.span.offset] + data[gone.span.end:]


# ---------------------------------------------------------------- walking a section again


def _every_item(stream) -> list[list[tuple]]:
    """Each RAM section's items, runs included, with their spans (RamPages compares without them)."""
    return [[(item, item.span) for item in s.body.every_item()] for s in stream.sections
            if isinstance(s.body, RamBody)]


WALKED_AGAIN = [p for p in CAPTURE_FILES if "live" in p.parts or "booted" in p.stem]


@pytest.mark.parametrize("path", WALKED_AGAIN, ids=lambda p: p.name.split(".bin")[0])
def test_a_section_walked_again_gives_the_items_a_decode_keeps(path) -> None:
    """A decode that drops the runs, or keeps only so many, walks each section without them again
    (RamBody.every_item) and gets the items, spans and all, that a decode keeping every run has:
    sections that start with a CONTINUE record (the block named in an earlier section), XBZRLE
    deltas, re-sent pages, mapped-ram, multifd, postcopy; also of the stream cut short."""
    from vfio_ramfb_mig import Source

    data = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
    for size in (len(data), len(data) * 3 // 5):
        src = Source.from_bytes(data[:size])
        kept = decode(src, partial=True)
        assert all(s.body.runs_kept for s in kept.sections if isinstance(s.body, RamBody))
        expected = _every_item(kept)
        runs = sum(isinstance(item, RamPages) for items in expected for item, _ in items)
        dropped = decode(src, partial=True, ram_runs=False)
        assert not any(s.body.runs_kept for s in dropped.sections if isinstance(s.body, RamBody) and runs)
        assert _every_item(dropped) == expected
        some = decode(src, partial=True, ram_runs_limit=runs // 2)
        kept_runs = [s.body.runs_kept for s in some.sections if isinstance(s.body, RamBody)]
        assert sum(isinstance(item, RamPages) for s in some.sections if isinstance(s.body, RamBody)
                   for item in s.body.items) <= runs // 2
        assert (True in kept_runs and False in kept_runs) or not runs
        assert not any(isinstance(item, RamPages) for s in some.sections
                       if isinstance(s.body, RamBody) and not s.body.runs_kept for item in s.body.items)
        assert _every_item(some) == expected
        assert (dropped.error, some.error) == (kept.error, kept.error)


def test_a_section_starting_with_continue_is_walked_again_in_the_block_before() -> None:
    """The block a CONTINUE record refers to was named in an earlier section: the walk of a
    section again starts from the block the first walk had there."""
    from vfio_ramfb_mig import Source, encode_bytes
    from vfio_ramfb_mig.model import Eof, Header, MigrationStream, RamBlock, RamMarker, RamMemSize, Section

    used = 64 * 4096
    blocks = RamMemSize(2 * used, (RamBlock("ram0", used), RamBlock("ram1", used)))
    records = (Header(0x5145564D, 3),
               Section("section_start", 2, "ram", 0, 4, RamBody((blocks, RamPages("zero", "ram1", 0, 1, True),
                                                                 RamMarker("eos")))),
               Section("section_part", 2, "ram", None, None,
                       RamBody((RamPages("zero", "ram1", 4096, 2, False), RamPages("zero", "ram0", 0, 1, True),
                                RamMarker("eos")))),
               Section("section_end", 2, "ram", None, None,
                       RamBody((RamPages("zero", "ram0", 8192, 1, False, fill=7), RamMarker("eos")))), Eof())
    src = Source.from_bytes(encode_bytes(MigrationStream(records, 0)))
    expected = _every_item(decode(src))
    assert [[(i.block, i.offset) for i, _ in items if isinstance(i, RamPages)] for items in expected] == \
        [[("ram1", 0)], [("ram1", 4096), ("ram0", 0)], [("ram0", 8192)]]
    assert _every_item(decode(src, ram_runs=False)) == expected


@pytest.mark.parametrize("path", [p for p in WALKED_AGAIN if "xbzrle" in p.stem or "booted" in p.stem],
                         ids=lambda p: p.name.split(".bin")[0])
def test_json_of_a_decode_without_runs_is_that_of_one_with_them(path) -> None:
    """jsonform writes the runs of a section whose decode dropped them by walking it again: the
    same document, pages embedded or not, whole or filtered to the RAM sections."""
    from vfio_ramfb_mig import Source
    from vfio_ramfb_mig.codec import jsonform

    data = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
    src = Source.from_bytes(data)
    kept, dropped = decode(src), decode(src, ram_runs=False)
    for embed, sections in ((False, ()), (True, ("ram",))):
        expected = jsonform.dumps(kept, source=src, embed=embed, sections=sections)
        assert '"kind": "zero"' in expected
        assert jsonform.dumps(dropped, source=src, embed=embed, sections=sections) == expected
    assert jsonform.dumps(dropped, source=src, indent=1) == jsonform.dumps(kept, source=src, indent=1)
