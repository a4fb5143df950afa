"""Absurd lengths and counts: a named error, with time and memory bounded by the input.

Each case patches a real capture in one place (a length, a count, a nesting) and
checks that `vmig decode` exits 2 with one error line, that decoding it allocates
only a few MB (tracemalloc) and finishes in seconds (the bounds are generous: they
tell "bounded" from "allocates the claimed size" or "spins for minutes"), and, for
a few, that the real `vmig` process's peak RSS stays near that of a trivial run.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from vfio_ramfb_mig import Source, decode, encode_bytes, jsonform
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.errors import (
    CorruptError,
    DecodeError,
    JsonFormError,
    TruncatedError,
    VmdescError,
    VmigError,
)
from vfio_ramfb_mig.model import RamMemSize

import helpers as h
from helpers import assert_one_error_line

VMIG = str(Path(sys.executable).parent / "vmig")
#: Python heap a failed decode of a ~330 KB capture may use (it parses the 44 KB vmdesc JSON), plus
#: PEAK_PER_BYTE per input byte: the model's objects grow with the input, never with a claimed length
PEAK_LIMIT = 8 << 20
PEAK_PER_BYTE = 16
#: seconds of this process's CPU time (not wall time: the machine may be busy with other work):
#: a bounded decode takes well under one
TIME_LIMIT = 10.0


def vmdesc_length_4gib() -> bytes:
    return h.patched(h.WITH_VMDESC, h.vmdesc_record(h.WITH_VMDESC).span.offset + 1, ">I", 0xFFFF_FFFF)


def ram_total_2_63() -> bytes:
    start = h.section(h.WITH_VMDESC, "ram", "section_start")
    mem = next(i for i in start.body.items if isinstance(i, RamMemSize))
    return h.patched(h.WITH_VMDESC, mem.span.offset, ">Q", (1 << 63) | 0x04)  # | RAM_SAVE_FLAG_MEM_SIZE


def vmdesc_array_len_2_40() -> bytes:
    def edit(doc: dict) -> None:
        next(f for f in h.vmdesc_device(doc, "cpu")["fields"] if "array_len" in f)["array_len"] = 1 << 40
    return h.with_vmdesc_doc(h.WITH_VMDESC, edit)


def vmdesc_nested_100000() -> bytes:
    return h.with_vmdesc_text(h.WITH_VMDESC, b'{"devices": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}")


def vmdesc_nested_empty_arrays() -> bytes:
    """70000 x 70000 buffers of size 0: each array fits `count <= bytes left`, the product does not."""
    def edit(doc: dict) -> None:
        inner = {"vmsd_name": "inner", "version": 1,
                 "fields": [{"name": "z", "type": "buffer", "size": 0, "array_len": 70_000}]}
        h.vmdesc_device(doc, "timer")["fields"].insert(
            0, {"name": "outer", "type": "struct", "size": 0, "array_len": 70_000, "struct": inner})
    return h.with_vmdesc_doc(h.WITH_VMDESC, edit)


def empty_fields_in_many_sections() -> bytes:
    """2000 fields of no bytes in the timer description, and the timer section 300 times."""
    timer = h.section(h.WITH_VMDESC, "timer")
    copy = h.data(h.WITH_VMDESC)[timer.span.offset:timer.span.end]

    def edit(doc: dict) -> None:
        h.vmdesc_device(doc, "timer")["fields"] += [{"name": f"e{i}", "type": "buffer", "size": 0}
                                                     for i in range(2000)]
    return h.rebuilt(h.WITH_VMDESC, before_eof=copy * 300, edit=edit)


def idstr_255_of_junk() -> bytes:
    """The first FULL section's idstr length set to 255: the name swallows the payload after it."""
    first = h.section(h.WITH_VMDESC, "timer")
    return h.patched(h.WITH_VMDESC, first.span.offset + 5, ">B", 255)


def vfio_data_2_63() -> bytes:
    body = struct.pack(">QQ", h.VFIO_DEV_DATA_STATE, 1 << 63) + b"\xa5" * 64
    return h.insert_before_eof(h.WITH_VMDESC, h.full_section(99, b"0000:00:02.0/vfio", body))


def configuration_name_4gib() -> bytes:
    return h.patched(h.WITH_VMDESC, h.stream(h.WITH_VMDESC).configuration.span.offset + 1, ">I", 0xFFFF_FFFF)


def packaged_command_4gib() -> bytes:
    packaged = struct.pack(">BHHI", 0x08, 7, 4, 0xFFFF_FFFF)  # MIG_CMD_PACKAGED, be32 length of what follows
    return h.insert_before_eof(h.WITH_VMDESC, packaged)


def old_style_size_2_62() -> bytes:
    def edit(doc: dict) -> None:
        timer = h.vmdesc_device(doc, "timer")
        for key in ("vmsd_name", "version", "fields", "subsections"):
            timer.pop(key, None)
        timer["size"] = 1 << 62
    return h.with_vmdesc_doc(h.WITH_VMDESC, edit)


CASES: dict[str, tuple[Callable[[], bytes], type[VmigError], str]] = {
    "vmdesc-length-4GiB": (vmdesc_length_4gib, TruncatedError, "header says 4294967295 bytes"),
    "ram-total-2^63": (ram_total_2_63, CorruptError, "announced total 0x8000000000000000"),
    "vmdesc-array_len-2^40": (vmdesc_array_len_2_40, DecodeError, "1099511627776 elements cannot fit"),
    "vmdesc-nested-100000": (vmdesc_nested_100000, VmdescError, "nested too deeply"),
    "vmdesc-nested-empty-arrays": (vmdesc_nested_empty_arrays, DecodeError, "without bytes"),
    "empty-fields-in-many-sections": (empty_fields_in_many_sections, DecodeError, "without bytes"),
    "idstr-255-of-junk": (idstr_255_of_junk, DecodeError, "section"),
    "vfio-data-2^63": (vfio_data_2_63, TruncatedError, "expected 9223372036854775808 bytes"),
    "configuration-name-4GiB": (configuration_name_4gib, CorruptError, "configuration record"),
    "packaged-command-4GiB": (packaged_command_4gib, TruncatedError, "packaged records"),
    "old-style-size-2^62": (old_style_size_2_62, DecodeError, "old-style section timer"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_absurd_length_is_a_bounded_named_error(tmp_path: Path, case: str) -> None:
    build, error, words = CASES[case]
    target = tmp_path / f"{case}.bin"
    target.write_bytes(build())
    size = target.stat().st_size

    tracemalloc.start()
    began = time.process_time()
    try:
        with pytest.raises(error) as info:
            decode(str(target))  # mapped, as the CLI reads it
        elapsed = time.process_time() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert words in str(info.value)
    assert info.value.offset is not None and 0 <= info.value.offset <= size
    assert peak < PEAK_LIMIT + PEAK_PER_BYTE * size, f"decode allocated {peak} bytes at its peak for a {size}-byte input"
    assert elapsed < TIME_LIMIT, f"decode took {elapsed:.1f} s"

    result = CliRunner().invoke(cli, ["decode", str(target)])
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr)


@pytest.mark.parametrize("case", ["vmdesc-length-4GiB", "vmdesc-array_len-2^40", "vfio-data-2^63",
                                  "vmdesc-nested-empty-arrays"])
def test_real_process_memory_stays_flat(tmp_path: Path, case: str) -> None:
    """Peak RSS of `vmig decode` on the hostile file stays near that of a run on 8 bytes."""
    def peak_rss(path: Path) -> tuple[int, int, str]:
        with open(tmp_path / "err.txt", "wb") as err:
            child = subprocess.Popen([VMIG, "decode", "--summary", str(path)], stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        return child.returncode, usage.ru_maxrss * 1024, (tmp_path / "err.txt").read_text()

    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"QEVM\x00\x00\x00\x03")
    _, baseline, _ = peak_rss(tiny)
    target = tmp_path / "hostile.bin"
    target.write_bytes(CASES[case][0]())
    status, peak, stderr = peak_rss(target)
    assert status == 2
    assert_one_error_line(stderr)
    assert peak < baseline + (48 << 20), f"peak RSS {peak >> 20} MiB against {baseline >> 20} MiB for 8 bytes"


# ---------------------------------------------------------------- no quadratic walks


def test_many_sections_and_vmdesc_entries_decode_in_linear_time() -> None:
    """Regression: the vmdesc entry of each section was found by a scan over all entries, so
    40000 sections against 40000 entries took minutes."""
    n = 40_000
    sections = b"".join(h.full_section(1000 + i, b"x", b"", instance_id=i) for i in range(n))

    def edit(doc: dict) -> None:
        doc["devices"] += [{"name": "x", "instance_id": i, "vmsd_name": "x", "version": 1, "fields": []}
                           for i in range(n)]
    blob = h.rebuilt(h.WITH_VMDESC, before_eof=sections, edit=edit)
    began = time.process_time()
    stream = decode(blob)
    assert time.process_time() - began < 20.0
    assert sum(1 for s in stream.sections if s.idstr == "x") == n


def test_repeated_subsections_decode_in_linear_time() -> None:
    """Regression: each subsection on the wire was looked up by a scan over its description's
    subsections, so 30000 repeats of the last of 30000 described ones took minutes."""
    n = 30_000
    last = f"x/s{n - 1:06d}".encode()
    payload = (b"\x05" + bytes([len(last)]) + last + struct.pack(">I", 1)) * n

    def edit(doc: dict) -> None:
        doc["devices"].append({"name": "x", "instance_id": 0, "vmsd_name": "x", "version": 1, "fields": [],
                               "subsections": [{"vmsd_name": f"x/s{i:06d}", "version": 1, "fields": []}
                                               for i in range(n)]})
    blob = h.rebuilt(h.WITH_VMDESC, before_eof=h.full_section(1000, b"x", payload), edit=edit)
    began = time.process_time()
    stream = decode(blob)
    assert time.process_time() - began < 20.0
    section = next(s for s in stream.sections if s.idstr == "x")
    assert len(section.body.subsections) == n


def test_vmdesc_description_depth_limit() -> None:
    """64 levels of nested structs decode (and round-trip through JSON); 65 are a VmdescError."""
    def nest(depth: int) -> Callable[[dict], None]:
        def edit(doc: dict) -> None:
            fields = h.vmdesc_device(doc, "timer")["fields"]
            node = fields[0]
            for i in range(depth):
                node = {"name": f"s{i}", "type": "struct", "size": 8,
                        "struct": {"vmsd_name": f"n{i}", "version": 1, "fields": [node]}}
            fields[0] = node
        return edit

    blob = h.with_vmdesc_doc(h.WITH_VMDESC, nest(64))
    stream = decode(blob)
    assert encode_bytes(jsonform.loads(jsonform.dumps(stream)), Source.from_bytes(blob)) == blob
    with pytest.raises(VmdescError, match="nested deeper than 64"):
        decode(h.with_vmdesc_doc(h.WITH_VMDESC, nest(65)))


def test_json_reader_rejects_what_would_overflow_encode() -> None:
    """Arrays of structs 64 deep (what a vmdesc may describe) are read; past the limit (~68) a
    JsonFormError, long before the stack would overflow."""
    field: dict = {"name": "leaf", "type": "uint8", "value": 1}
    for depth in range(1, 101):
        field = {"name": "s", "type": "struct", "value": [{"vmsd_name": "s", "version": 1, "fields": [field]}]}
        doc = {"records": [{"type": "section_full", "section_id": 1, "idstr": "x", "instance_id": 0, "version_id": 1,
                            "decoder": "vmdesc", "vmsd_name": "x", "version": 1, "fields": [field]}]}
        if depth <= 64:
            jsonform.from_json(doc)
        elif depth >= 70:
            with pytest.raises(JsonFormError, match="nested deeper"):
                jsonform.from_json(doc)


def test_allowance_is_per_decode_not_per_source() -> None:
    """Fields without bytes are charged to an allowance the Source carries; decoding the same
    Source again starts afresh (8000 such fields, four times, is over one allowance)."""
    def edit(doc: dict) -> None:
        h.vmdesc_device(doc, "timer")["fields"] += [{"name": f"e{i}", "type": "buffer", "size": 0}
                                                     for i in range(8000)]
    source = Source.from_bytes(h.with_vmdesc_doc(h.WITH_VMDESC, edit))
    for _ in range(4):
        assert len(decode(source).sections) == len(h.stream(h.WITH_VMDESC).sections)
