"""The page record listing (`vmig decode --pages`): a line per page record, each pointing at it.

Every listed offset is checked against the bytes: the address word there has the
record's kind flag and page offset, a record without CONTINUE names its block right
after the word, and a ZERO record's fill byte follows.
"""

from __future__ import annotations

import io
import json
import re
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from paths import CAPTURES
from helpers import page_run, synthetic, with_part_before_end, xbzrle_run, zero_run

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.text import printable, to_wire
from vfio_ramfb_mig.errors import TruncatedError
from vfio_ramfb_mig.model import RamBody
from vfio_ramfb_mig.ram.listing import write_page_list

PS = 4096
BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
CASES = ["qemu-10.0.2__pc-q35-8.2__ramfb+booted", "qemu-7.2.22__pc-q35-7.2__ramfb+booted",
         "qemu-10.0.2__pc-q35-10.0__ramfb+nofooter", "qemu-10.0.2__pc-q35-7.2__cap-x-ignore-shared"]
FLAG = {"page": 0x08, "zero": 0x02, "xbzrle": 0x40}
KIND = {"normal": "page", "zero": "zero", "xbzrle": "xbzrle"}
TEXT_LINE = re.compile(r"^(0x[0-9a-f]{8,})  (START|PART|END) id (\d+)  (.*)  (0x[0-9a-f]{8,})  (normal|zero|xbzrle)"
                       r"(?:  fill (0x[0-9a-f]{2})|  delta (\d+) bytes)?$")


def records_of(data: bytes) -> int:
    return sum(n for s in decode(data).sections if isinstance(s.body, RamBody)
               for per in s.body.block_counts().values() for n in per.values())


def listing(data: bytes, as_json: bool) -> str:
    out = io.StringIO()
    from vfio_ramfb_mig import Source

    write_page_list(Source.from_bytes(data), out, as_json)
    return out.getvalue()


def check_record(data: bytes, rec: dict, sections: list) -> None:
    """The bytes at rec["offset"] are the record the line describes, inside the section it names."""
    offset = rec["offset"]
    (word,) = struct.unpack_from(">Q", data, offset)
    flags, address = word & (PS - 1), word & ~(PS - 1)
    assert flags & ~0x20 == FLAG[rec["kind"]], rec
    assert address == rec["page_offset"], rec
    pos = offset + 8
    if not flags & 0x20:
        name = to_wire(rec["block"])
        assert data[pos] == len(name) and data[pos + 1:pos + 1 + len(name)] == name, rec
        pos += 1 + len(name)
    if rec["kind"] == "zero":
        assert data[pos] == rec["fill"], rec
        assert rec["length"] == pos + 1 - offset
    elif rec["kind"] == "page":
        assert rec["length"] == pos + PS - offset
    else:
        assert data[pos] == 0x01 and struct.unpack_from(">H", data, pos + 1)[0] == rec["delta_length"]
        assert rec["length"] == pos + 3 + rec["delta_length"] - offset
    holder = [s for s in sections if s.span.offset < offset < s.span.end]
    assert len(holder) == 1 and holder[0].type == rec["record"] and holder[0].section_id == rec["section_id"], rec


@pytest.mark.parametrize("name", CASES)
def test_json_lines_point_at_every_record(name: str) -> None:
    data = (CAPTURES / f"{name}.bin").read_bytes()
    lines = listing(data, as_json=True).splitlines()
    assert len(lines) == records_of(data)
    sections = decode(data).sections
    offsets = []
    for line in lines:
        rec = json.loads(line)
        check_record(data, rec, sections)
        offsets.append(rec["offset"])
    assert offsets == sorted(set(offsets))  # stream order, each record once


@pytest.mark.parametrize("name", CASES[:2])
def test_text_lines_match_json_lines(name: str) -> None:
    data = (CAPTURES / f"{name}.bin").read_bytes()
    text, js = listing(data, False).splitlines(), listing(data, True).splitlines()
    assert len(text) == len(js) == records_of(data)
    for line, obj in zip(text, map(json.loads, js)):
        m = TEXT_LINE.match(line)
        assert m, line
        offset, rtype, sid, block, page, kind, fill, _delta = m.groups()
        assert int(offset, 16) == obj["offset"] and int(page, 16) == obj["page_offset"]
        assert "section_" + rtype.lower() == obj["record"] and int(sid) == obj["section_id"]
        assert block == printable(obj["block"]) and KIND[kind] == obj["kind"]
        assert (fill is not None) == (obj["kind"] == "zero") and (fill is None or int(fill, 16) == obj["fill"])
    if name == CASES[0]:
        assert text[0] == "0x000000c6  PART id 1  pc.ram  0x00000000  normal"
        assert text[1] == "0x000010d5  PART id 1  pc.ram  0x00001000  zero  fill 0x00"


def test_sections_xbzrle_continue_and_odd_names() -> None:
    """Records in START, several PARTs and END, XBZRLE, a fill byte, CONTINUE across sections."""
    blocks = [("pc.ram", 8 * PS), ("odd name\x00\udcff", 2 * PS)]
    data = synthetic(blocks,
                     [page_run("pc.ram", 0, b"a" * PS, b"b" * PS), zero_run("pc.ram", 2 * PS, 3)],
                     [zero_run("pc.ram", 5 * PS, named=False), xbzrle_run("pc.ram", 0, b"\x00\x02zz")],
                     [page_run("odd name\x00\udcff", PS, b"c" * PS), zero_run("pc.ram", 7 * PS, fill=0x42)])
    lines = [json.loads(line) for line in listing(data, True).splitlines()]
    assert [(r["record"], r["block"], r["page_offset"] // PS, r["kind"]) for r in lines] == [
        ("section_part", "pc.ram", 0, "page"), ("section_part", "pc.ram", 1, "page"),
        ("section_part", "pc.ram", 2, "zero"), ("section_part", "pc.ram", 3, "zero"),
        ("section_part", "pc.ram", 4, "zero"),
        ("section_part", "pc.ram", 5, "zero"), ("section_part", "pc.ram", 0, "xbzrle"),
        ("section_end", "odd name\x00\udcff", 1, "page"), ("section_end", "pc.ram", 7, "zero")]
    sections = decode(data).sections
    parts = [s.span.offset for s in sections if s.type == "section_part"]
    assert lines[0]["offset"] < parts[1] < lines[5]["offset"]
    for rec in lines:
        check_record(data, rec, sections)
    assert lines[-1]["fill"] == 0x42 and lines[6]["delta_length"] == 4
    text = listing(data, False).splitlines()
    assert text[6].endswith("  xbzrle  delta 4 bytes") and "odd name\\x00\\xff" in text[7]
    assert text[8].endswith("zero  fill 0x42")


def test_multi_pass_capture_lists_repeated_pages() -> None:
    data = BOOTED.read_bytes()
    crafted = with_part_before_end(data, [page_run("pc.ram", 0, b"\x01" * PS), zero_run("pc.ram", 0)])
    lines = [json.loads(line) for line in listing(crafted, True).splitlines()]
    assert len(lines) == records_of(data) + 2
    again = [r for r in lines if r["block"] == "pc.ram" and r["page_offset"] == 0]
    assert [r["kind"] for r in again] == ["page", "page", "zero"]
    sections = decode(crafted).sections
    for rec in again:
        check_record(crafted, rec, sections)


def test_binary_output_and_count(tmp_path: Path) -> None:
    out = io.BytesIO()
    n = write_page_list(str(BOOTED), out, as_json=False)
    assert n == records_of(BOOTED.read_bytes()) == out.getvalue().count(b"\n")


def test_truncated_stream_writes_nothing(tmp_path: Path) -> None:
    data = BOOTED.read_bytes()
    out = io.StringIO()
    from vfio_ramfb_mig import Source

    with pytest.raises(TruncatedError):
        write_page_list(Source.from_bytes(data[:600_000]), out)
    assert out.getvalue() == ""


def test_no_ram_lists_nothing() -> None:
    from vfio_ramfb_mig import Source, encode_bytes
    from vfio_ramfb_mig.model import Eof, Header, MigrationStream

    data = encode_bytes(MigrationStream((Header(magic=0x5145564D, version=3), Eof()), 0))
    out = io.StringIO()
    assert write_page_list(Source.from_bytes(data), out) == 0 and out.getvalue() == ""


def test_decode_pages_option() -> None:
    """`vmig decode --pages` (and with --json)."""
    result = CliRunner().invoke(cli, ["decode", "--pages", str(BOOTED)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == listing(BOOTED.read_bytes(), False).splitlines()
    result = CliRunner().invoke(cli, ["decode", "--pages", "--json", str(BOOTED)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == listing(BOOTED.read_bytes(), True).splitlines()
