"""wire/: each container schema, in construct's style: the bytes QEMU writes parse to the value,
and the value builds to the same bytes. The hex is written out from QEMU's save functions
(migration/savevm.c, migration/ram.c, hw/vfio/migration.c), not produced by vmig.

Then the decoder's use of them: command data the loader refuses is refused, with its offset.
"""

from __future__ import annotations

import struct

import pytest
from construct import ConstructError

import helpers as h
from vfio_ramfb_mig import Source, decode, encode_bytes
from vfio_ramfb_mig.errors import CorruptError
from vfio_ramfb_mig.model import Command
from vfio_ramfb_mig.wire.primitives import Str8
from vfio_ramfb_mig.wire.ram import MappedRamHeader, RamBlockEntry, XbzrleHeader, ram_block
from vfio_ramfb_mig.wire.stream import (
    CMD_LENGTHS,
    COMMAND_DATA,
    Cmd,
    ConfigurationMarker,
    EofMarker,
    FileHeader,
    Footer,
    LongHeader,
    ShortHeader,
    SubsectionHeader,
    VmdescHeader,
)
from vfio_ramfb_mig.wire.stream import Command as CommandRecord
from vfio_ramfb_mig.wire.vfio import DataChunkHeader, Marker

HUGE = frozenset({2 << 20})

# (schema, hex on the wire, value)
CASES = [
    ("file header", FileHeader, "5145564d 00000003", {"magic": 0x5145564D, "version": 3}),
    ("configuration marker", ConfigurationMarker, "07", 7),
    ("eof marker", EofMarker, "00", 0),
    ("section_start header", LongHeader, "01 00000002 03 72616d 00000000 00000004",
     {"type": 1, "section_id": 2, "idstr": b"ram", "instance_id": 0, "version_id": 4}),
    ("section_part header", ShortHeader, "02 00000002", {"type": 2, "section_id": 2}),
    ("footer", Footer, "7e 00000002", {"section_id": 2}),
    ("subsection header", SubsectionHeader, "05 08 6670752f66726167 00000001",
     {"name": b"fpu/frag", "version_id": 1}),
    ("command SWITCHOVER_START", CommandRecord, "08 000b 0000", {"cmd": 11, "data": b""}),
    ("command PING", CommandRecord, "08 0002 0004 0000002a", {"cmd": 2, "data": b"\x00\x00\x00\x2a"}),
    ("vmdesc header", VmdescHeader, "06 0000abcd", {"length": 0xABCD}),
    ("VFIO marker", Marker, "ffffffffef100001", 0xFFFFFFFFEF100001),
    ("VFIO data chunk", DataChunkHeader, "ffffffffef100004 0000000000001000", {"length": 0x1000}),
    ("str8", Str8, "06 70632e72616d", b"pc.ram"),
    ("XBZRLE header", XbzrleHeader, "01 0010", {"encoding": 1, "length": 16}),
    ("mapped-ram header", MappedRamHeader, "00000001 0000000000001000 0000000000000080 0000000000100000",
     {"version": 1, "page_size": 4096, "bitmap_offset": 0x80, "pages_offset": 0x100000}),
    # a block-list entry has the words the stream's setup adds (parsing) or the entry holds (building)
    ("block entry", RamBlockEntry, "06 70632e72616d 0000000001000000",
     {"idstr": b"pc.ram", "used_length": 16 << 20, "page_size": None, "addr": None, "mapped_ram": None}),
    ("block entry, x-ignore-shared", ram_block(ignore_shared=True),
     "06 70632e72616d 0000000001000000 00000000fee00000",
     {"idstr": b"pc.ram", "used_length": 16 << 20, "page_size": None, "addr": 0xFEE00000, "mapped_ram": None}),
    ("block entry, huge pages", ram_block(HUGE), "03 6d656d 0000000040000000 0000000000200000",
     {"idstr": b"mem", "used_length": 1 << 30, "page_size": 2 << 20, "addr": None, "mapped_ram": None}),
    ("block entry, mapped-ram", ram_block(mapped_ram=True),
     "03 6d656d 0000000000002000 00000001 0000000000001000 0000000000000080 0000000000100000",
     {"idstr": b"mem", "used_length": 0x2000, "page_size": None, "addr": None,
      "mapped_ram": {"version": 1, "page_size": 4096, "bitmap_offset": 0x80, "pages_offset": 0x100000}}),
    ("PING data", COMMAND_DATA[Cmd.MIG_CMD_PING], "0000002a", {"value": 42}),
    ("ADVISE data, postcopy-ram", COMMAND_DATA[Cmd.MIG_CMD_POSTCOPY_ADVISE], "0000000000201000 0000000000001000",
     {"page_sizes": {"pagesize_summary": 0x201000, "target_page_size": 0x1000}}),
    ("ADVISE data, without postcopy-ram", COMMAND_DATA[Cmd.MIG_CMD_POSTCOPY_ADVISE], "", {"page_sizes": None}),
    ("RAM_DISCARD data", COMMAND_DATA[Cmd.MIG_CMD_POSTCOPY_RAM_DISCARD],
     "00 06 70632e72616d 00 0000000000010000 0000000000002000",
     {"version": 0, "ramid": b"pc.ram", "nul": 0, "ranges": [{"start": 0x10000, "length": 0x2000}]}),
    ("PACKAGED data", COMMAND_DATA[Cmd.MIG_CMD_PACKAGED], "00100000", {"length": 0x100000}),
    ("RECV_BITMAP data", COMMAND_DATA[Cmd.MIG_CMD_RECV_BITMAP], "06 70632e72616d", {"ramid": b"pc.ram"}),
]


def _subset(value: object, expected: object) -> bool:
    """Every key of `expected` is in `value` with that value (construct adds its own keys)."""
    if isinstance(expected, dict):
        return all(_subset(value[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return len(value) == len(expected) and all(_subset(a, b) for a, b in zip(value, expected))
    return value == expected


@pytest.mark.parametrize(("name", "schema", "wire", "value"), CASES, ids=[c[0] for c in CASES])
def test_schema_parses_and_builds_the_wire_bytes(name: str, schema, wire: str, value: object) -> None:
    data = bytes.fromhex(wire.replace(" ", ""))
    assert _subset(schema.parse(data), value)
    assert schema.build(value) == data


def test_fixed_command_lengths_are_the_loaders() -> None:
    # mig_cmd_args: 0 for the commands without data, 4 for PING and PACKAGED
    assert CMD_LENGTHS == {Cmd.MIG_CMD_OPEN_RETURN_PATH: 0, Cmd.MIG_CMD_PING: 4, Cmd.MIG_CMD_POSTCOPY_LISTEN: 0,
                           Cmd.MIG_CMD_POSTCOPY_RUN: 0, Cmd.MIG_CMD_PACKAGED: 4, Cmd.MIG_CMD_ENABLE_COLO: 0,
                           Cmd.MIG_CMD_POSTCOPY_RESUME: 0, Cmd.MIG_CMD_SWITCHOVER_START: 0}


@pytest.mark.parametrize("data", ["", "00 06 70632e72616d 00", "00 00 00 0000000000010000 0000000000002000"],
                         ids=["empty", "no range", "no name"])
def test_discard_without_a_name_or_range_is_refused(data: str) -> None:
    """loadvm_postcopy_ram_handle_discard: at least 1 + 1 + 1 + 1 + 2 * 8 bytes, a name, a range."""
    with pytest.raises(ConstructError):
        COMMAND_DATA[Cmd.MIG_CMD_POSTCOPY_RAM_DISCARD].parse(bytes.fromhex(data.replace(" ", "")))


def _with_command(cmd: int, data: bytes) -> bytes:
    return h.insert_before_eof(h.WITH_VMDESC, struct.pack(">BHH", 0x08, cmd, len(data)) + data)


@pytest.mark.parametrize(("cmd", "data", "words"), [
    # loadvm_postcopy_handle_advise: "CMD_POSTCOPY_ADVISE invalid length (5)"
    (Cmd.MIG_CMD_POSTCOPY_ADVISE, bytes(5), "5 bytes after its data"),
    (Cmd.MIG_CMD_POSTCOPY_ADVISE, bytes(17), "1 bytes after its data"),
    # loadvm_postcopy_ram_handle_discard: "invalid length", "invalid version", "missing nil"
    (Cmd.MIG_CMD_POSTCOPY_RAM_DISCARD, b"\x00\x01a\x00" + bytes(20), "4 bytes after its data"),
    (Cmd.MIG_CMD_POSTCOPY_RAM_DISCARD, b"\x01\x01a\x00" + bytes(16), "not its data"),
    (Cmd.MIG_CMD_POSTCOPY_RAM_DISCARD, b"\x00\x01a\x07" + bytes(16), "not its data"),
    # loadvm_handle_recv_bitmap: "invalid payload length" (len != cnt + 1)
    (Cmd.MIG_CMD_RECV_BITMAP, b"\x01ab", "1 bytes after its data"),
    (Cmd.MIG_CMD_RECV_BITMAP, b"\x05ab", "not its data"),
])
def test_command_data_the_loader_refuses(cmd: int, data: bytes, words: str) -> None:
    blob = _with_command(cmd, data)
    with pytest.raises(CorruptError, match=words) as info:
        decode(blob)
    at = h.eof_offset(h.WITH_VMDESC)
    assert info.value.path[-1] == "data" and at + 5 <= info.value.offset <= at + 5 + len(data)


@pytest.mark.parametrize(("cmd", "data"), [
    (Cmd.MIG_CMD_PING, b"\x00\x00\x00\x07"),
    (Cmd.MIG_CMD_POSTCOPY_ADVISE, b""),
    (Cmd.MIG_CMD_POSTCOPY_ADVISE, struct.pack(">QQ", 0x1000, 0x1000)),
    (Cmd.MIG_CMD_POSTCOPY_RAM_DISCARD, b"\x00\x06pc.ram\x00" + struct.pack(">QQ", 0, 0x1000) * 2),
    (Cmd.MIG_CMD_RECV_BITMAP, b"\x06pc.ram"),
])
def test_command_data_the_loader_takes_round_trips(cmd: int, data: bytes) -> None:
    blob = _with_command(cmd, data)
    stream = decode(blob)
    command = [r for r in stream.records if isinstance(r, Command)][-1]  # the one before EOF
    assert (command.cmd, command.data) == (cmd, data) and command.span.end == h.eof_offset(h.WITH_VMDESC) + 5 + \
        len(data)
    assert encode_bytes(stream, Source.from_bytes(blob)) == blob
