"""Broken and hostile streams made from real captures, for tests/test_broken_input.py,
tests/test_hostile_lengths.py and tests/fuzz/.

Every builder starts from a capture QEMU wrote and changes as little as it can, so
the decoder reaches the damaged spot through real records.
"""

from __future__ import annotations

import functools
import json
import struct
import tempfile
from pathlib import Path

from click.testing import CliRunner

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.model import Eof, MigrationStream, Section, Vmdesc

from paths import CAPTURES

#: a capture with footers and a vmdesc, one without a vmdesc, one without footers, one from QEMU 7.2
WITH_VMDESC = "qemu-10.0.2__pc-q35-10.0__ramfb"
NO_VMDESC = "qemu-10.0.2__pc-q35-10.0__ramfb+novmdesc"
NO_FOOTER = "qemu-10.0.2__pc-q35-10.0__ramfb+nofooter"
QEMU72 = "qemu-7.2.22__pc-q35-7.2__ramfb"
#: not a capture: a VFIO device stream from `vmig encode --machine`, with DATA chunks added
VFIO_DEVICE = "vfio-device"
SWEPT = (WITH_VMDESC, NO_VMDESC, NO_FOOTER, QEMU72, VFIO_DEVICE)

VFIO_DEV_DATA_STATE = 0xFFFFFFFFEF100004
VFIO_END_OF_STATE = 0xFFFFFFFFEF100001


def assert_one_error_line(stderr: str, *, wants: str = "offset") -> str:
    """stderr is one `vmig: error:` line (plus hint lines), naming an offset; no traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("vmig: error:")]
    assert len(errors) == 1, stderr
    assert all(line.startswith(("vmig: error:", "hint:", "vmig: warning:")) for line in lines), stderr
    assert wants in errors[0], errors[0]
    return errors[0]


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


def with_vmdesc_text(name: str, text: bytes) -> bytes:
    """The capture with its vmdesc JSON replaced by `text` (the be32 length follows it)."""
    vmdesc = vmdesc_record(name)
    return data(name)[:vmdesc.span.offset] + struct.pack(">BI", 0x06, len(text)) + text


def with_vmdesc_doc(name: str, edit) -> bytes:
    """The capture with its vmdesc document changed in place by `edit(doc)`."""
    doc = json.loads(json.dumps(vmdesc_record(name).document))
    edit(doc)
    return with_vmdesc_text(name, json.dumps(doc).encode())


def vmdesc_device(doc: dict, idstr: str) -> dict:
    return next(d for d in doc["devices"] if d["name"] == idstr)


def full_section(section_id: int, idstr: bytes, body: bytes, *, instance_id: int = 0, version_id: int = 1,
                 footer: bool = True) -> bytes:
    """A QEMU_VM_SECTION_FULL record (savevm.c save_section_header / save_section_footer)."""
    head = struct.pack(">BIB", 0x04, section_id, len(idstr)) + idstr + struct.pack(">II", instance_id, version_id)
    return head + body + (struct.pack(">BI", 0x7E, section_id) if footer else b"")


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
