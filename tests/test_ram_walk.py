"""The page-record walk (ram/walk.py, plain struct over the buffer) and the construct description
of a RAM record (wire/ram.py) give the same records on every real capture.

The construct side parses each RAM section on its own from its first byte, item after item
(address word, block name, fill byte, page, XBZRLE delta; the block list with the entries'
optional words), knowing nothing of the walk; the walk's side is its runs expanded record by
record (ram.walk.records)."""

from __future__ import annotations

import io

import pytest
from paths import CAPTURES

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.text import from_wire
from vfio_ramfb_mig.model import RamBody, RamPages
from vfio_ramfb_mig.ram.walk import records
from vfio_ramfb_mig.wire.ram import (
    MappedRamHeader,
    RamBlockEntry,
    RamFlag,
    page_record,
)

# every kind of capture once (construct parses a record ~100x slower than the walk)
CAPTURE_FILES = sorted(p for p in CAPTURES.glob("*.bin")
                       if any(k in p.stem for k in ("booted", "x-ignore-shared", "nofooter", "novmdesc"))
                       or p.stem.startswith("qemu-7.2.22__pc-i440fx"))
KINDS = {RamFlag.ZERO: "zero", RamFlag.PAGE: "page", RamFlag.XBZRLE: "xbzrle"}


def construct_records(data: bytes, body_offset: int, page_size: int, caps: set[str],
                      last_block: list[str]) -> list[tuple]:
    """(offset, length, block, page offset, kind, named, fill, delta, payload offset) of every page
    record of one RAM section, parsed with the wire/ram.py schemas alone."""
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
        out.append((pos, f.tell() - pos, last_block[0], rec.offset, kind, named, fill, delta, payload))


def walk_records(run: RamPages, page_size: int) -> list[tuple]:
    out = []
    for i, (offset, length, page_offset, named) in enumerate(records(run, page_size)):
        payload = run.payload_offset(i, page_size) if run.kind == "page" else None
        out.append((offset, length, run.block, page_offset, run.kind, named, run.fill, run.delta, payload))
    return out


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.stem)
def test_walk_and_construct_schema_agree(path) -> None:
    data = path.read_bytes()
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
    assert seen or "ram" not in {s.idstr for s in stream.sections}
