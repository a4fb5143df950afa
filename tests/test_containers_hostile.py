"""Hostile and broken containers (issue 13 "Bad input", issue 16 "Hostile input", source side).

Every case: exit status 2, one line naming the offset and what was expected, no output file
left, memory and temp space bounded. The broken files are the real fixtures with one field
changed (offsets from the formats' own layouts, computed here with struct), so each case is
one fault in an otherwise real file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import assert_one_error_line
from paths import CAPTURES, FIXTURES
from vfio_ramfb_mig import Source
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.errors import VmigError

CONTAINERS = FIXTURES / "containers"
RAW_SAVE = CONTAINERS / "libvirt-9.0.0__pc-q35-8.2__raw.save"
XZ_SAVE = CONTAINERS / "libvirt-9.0.0__pc-q35-8.2__xz.save"
QCOW2_V3 = CONTAINERS / "qemu-10.0.2__pc-q35-8.2__v3-snapshots.qcow2"
QCOW2_V2 = CONTAINERS / "qemu-10.0.2__pc-q35-8.2__v2-snapshot.qcow2"
PLAIN = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]


#: address space a refusing vmig may use: the interpreter and libraries take ~300 MiB of it; a
#: bomb that got through (a 2 GiB xz dictionary, a spooled or inflated GiB) would not fit
ADDRESS_SPACE = 1 << 30


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_bounded(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """vmig in a child whose address space is bounded (the spool reserves no more than 64 MiB)."""
    return subprocess.run([*VMIG, *args], capture_output=True, text=True, timeout=120, preexec_fn=_bounded,
                          env={**os.environ, "VMIG_SPOOL_LIMIT": "64M", **(env or {})})


def refused(path: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`vmig decode --json -o OUT PATH` exits 2 with one line and leaves no OUT, in a bounded
    address space."""
    out = tmp_path / "out.json"
    result = run_bounded(["decode", "--json", "-o", str(out), *args, str(path)], env)
    assert result.returncode == 2, result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.json.*"))
    return assert_one_error_line(result.stderr, wants="")


# ---------------------------------------------------------------- pipes, FIFOs, devices


def test_fifo_is_opened_once(tmp_path: Path) -> None:
    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)
    data = PLAIN.read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = subprocess.run([*VMIG, "decode", "--summary", str(fifo)], capture_output=True, text=True, timeout=60)
    writer.join(5)
    assert result.returncode == 0, result.stderr
    assert "ramfb-dev" in result.stdout


def test_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    start = time.monotonic()
    line = refused(Path("/dev/zero"), tmp_path)
    assert "only zero bytes" in line and "QEVM" in line
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("fmt", ["gzip", "xz", "bzip2"])
def test_a_bomb_is_refused_on_its_first_bytes(tmp_path: Path, fmt: str) -> None:
    """256 MiB of zeros compressed to a few hundred KiB: refused before any of it is spooled."""
    zeros = bytes(256 << 20)
    packed = {"gzip": gzip.compress, "xz": lzma.compress, "bzip2": bz2.compress}[fmt](zeros, 1) \
        if fmt != "xz" else lzma.compress(zeros, preset=0)
    del zeros
    bomb = tmp_path / "bomb"
    bomb.write_bytes(packed)
    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    start = time.monotonic()
    line = refused(bomb, tmp_path, env={"TMPDIR": str(spool_dir)})
    assert f"inside {fmt} data" in line and "only zero bytes" in line
    assert time.monotonic() - start < 30
    result = run_bounded(["check", "--qemu", "10.0", str(bomb)], env={"TMPDIR": str(spool_dir)})
    assert result.returncode == 2 and "only zero bytes" in assert_one_error_line(result.stderr, wants="")
    assert not list(spool_dir.iterdir())


def test_spool_limit_is_said_and_can_be_raised(tmp_path: Path) -> None:
    packed = tmp_path / "s.bin.gz"
    packed.write_bytes(gzip.compress(PLAIN.read_bytes()))
    line = refused(packed, tmp_path, env={"VMIG_SPOOL_LIMIT": "256K"})
    assert "VMIG_SPOOL_LIMIT" in line and "256 KiB" in line
    result = subprocess.run([*VMIG, "decode", "--summary", str(packed)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "VMIG_SPOOL_LIMIT": "64M"})
    assert result.returncode == 0, result.stderr


def xz_with_dictionary(data: bytes, dict_props: int) -> bytes:
    """xz data whose block header claims another LZMA2 dictionary size (props byte; 40 = 4 GiB),
    with the block header's CRC32 made right again: what a hostile file does."""
    packed = bytearray(lzma.compress(data, preset=0))
    start = 12  # the stream header
    size = (packed[start] + 1) * 4
    header = packed[start:start + size]
    at = bytes(header).index(b"\x21\x01") + 2  # filter id LZMA2, one property byte
    header[at] = dict_props
    header[-4:] = struct.pack("<I", zlib.crc32(bytes(header[:-4])))
    packed[start:start + size] = header
    return bytes(packed)


def test_xz_dictionary_size_is_bounded(tmp_path: Path) -> None:
    bomb = tmp_path / "dict.xz"
    bomb.write_bytes(xz_with_dictionary(PLAIN.read_bytes(), 39))  # claims a 3 GiB dictionary
    line = refused(bomb, tmp_path)
    assert "VMIG_MEMORY_LIMIT" in line and "xz" in line
    ok = subprocess.run([*VMIG, "decode", "--summary", str(bomb)], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "VMIG_MEMORY_LIMIT": "4G"})
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("fmt", ["gzip", "xz", "bzip2", "zstd"])
def test_trailing_garbage_is_refused(tmp_path: Path, fmt: str) -> None:
    data = PLAIN.read_bytes()
    if fmt == "zstd":
        from vfio_ramfb_mig.source.reader import _zstd_module

        packed = _zstd_module().compress(data)
    else:
        packed = {"gzip": gzip.compress, "xz": lzma.compress, "bzip2": bz2.compress}[fmt](data)
    path = tmp_path / "s"
    path.write_bytes(packed + b"GARBAGE!")
    line = refused(path, tmp_path)
    assert "trailing garbage" in line and fmt in line and f"offset {len(packed)} " in line
    # two members (concatenated files) are fine, as the tools read them
    path.write_bytes(packed[:0] + (gzip.compress(data[:1000]) + gzip.compress(data[1000:]) if fmt == "gzip"
                                   else packed))
    assert subprocess.run([*VMIG, "decode", "--summary", str(path)], capture_output=True, timeout=120).returncode == 0


def test_cut_compressed_data_is_refused(tmp_path: Path) -> None:
    packed = XZ_SAVE.read_bytes()
    path = tmp_path / "cut.save"
    path.write_bytes(packed[:len(packed) // 2])
    line = refused(path, tmp_path)
    assert "cut short" in line and "xz" in line


# ---------------------------------------------------------------- libvirt headers


def patched(src: Path, tmp_path: Path, offset: int, value: bytes, name: str = "broken") -> Path:
    data = bytearray(src.read_bytes())
    data[offset:offset + len(value)] = value
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def test_libvirt_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short.save"
    path.write_bytes(RAW_SAVE.read_bytes()[:50])
    line = refused(path, tmp_path)
    assert "inside the libvirt save header" in line and "expected 92 bytes" in line and "at offset 50" in line


def test_libvirt_xml_length_past_the_end(tmp_path: Path) -> None:
    line = refused(patched(RAW_SAVE, tmp_path, 20, struct.pack("<I", 0x7FFFFFFF)), tmp_path)
    assert "XML length 2147483647 runs past the end of the file" in line and "at offset 20" in line


def test_libvirt_unknown_compression_number(tmp_path: Path) -> None:
    line = refused(patched(RAW_SAVE, tmp_path, 28, struct.pack("<I", 9)), tmp_path)
    assert "unknown libvirt save compression number 9" in line and "4 (lzop)" in line and "at offset 28" in line


def test_libvirt_header_version_too_new(tmp_path: Path) -> None:
    line = refused(patched(RAW_SAVE, tmp_path, 16, struct.pack("<I", 3)), tmp_path)
    assert "unsupported libvirt save header version 3" in line


def test_libvirt_payload_that_is_not_a_stream(tmp_path: Path) -> None:
    data_len = struct.unpack_from("<I", RAW_SAVE.read_bytes(), 20)[0]
    line = refused(patched(RAW_SAVE, tmp_path, 92 + data_len, b"JUNK"), tmp_path)
    assert "payload of libvirt save image" in line and "expected 'QEVM'" in line


def test_libvirt_partial_image_is_read_and_said(tmp_path: Path) -> None:
    path = patched(RAW_SAVE, tmp_path, 0, b"LibvirtQemudPart")
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "INCOMPLETE" in result.stdout


def test_libvirt_big_endian_header(tmp_path: Path) -> None:
    """A header written on a big-endian host: libvirt reads a too-large version as swapped."""
    data = bytearray(RAW_SAVE.read_bytes())
    fields = struct.unpack_from("<19I", data, 16)
    struct.pack_into(">19I", data, 16, *fields)
    path = tmp_path / "be.save"
    path.write_bytes(bytes(data))
    with Source.open(str(path)) as src:
        assert src.container["layers"][0]["byte_order"] == "big"
        assert bytes(src.buf[:4]) == b"QEVM"


# ---------------------------------------------------------------- qcow2


def qcow2_fields(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    cluster_bits, = struct.unpack_from(">I", data, 20)
    nb_snapshots, snapshots_offset = struct.unpack_from(">IQ", data, 60)
    l1_offset, = struct.unpack_from(">Q", data, snapshots_offset)
    return {"cluster_bits": cluster_bits, "nb_snapshots": nb_snapshots, "snapshots_offset": snapshots_offset,
            "snap_l1": l1_offset}


def test_qcow2_without_snapshots(tmp_path: Path) -> None:
    line = refused(patched(QCOW2_V2, tmp_path, 60, struct.pack(">I", 0)), tmp_path)
    assert "no internal snapshots" in line and "at offset 60" in line


def test_qcow2_snapshot_without_vm_state(tmp_path: Path) -> None:
    line = refused(QCOW2_V3, tmp_path, "--snapshot", "disk-only")
    assert "has no VM state" in line and "'first'" in line


def test_qcow2_snapshot_table_outside_the_file(tmp_path: Path) -> None:
    size = QCOW2_V2.stat().st_size
    line = refused(patched(QCOW2_V2, tmp_path, 64, struct.pack(">Q", (size + (1 << 20)) & ~0xFFFF)), tmp_path)
    assert "snapshot table offset" in line and "inside the file" in line and "at offset 64" in line


def test_qcow2_l1_entry_outside_the_file(tmp_path: Path) -> None:
    f = qcow2_fields(QCOW2_V2)
    # the VM state is described by the L1 entry after the disk's (1 MiB disk, 512 MiB per L2 table)
    entry = f["snap_l1"] + 8
    line = refused(patched(QCOW2_V2, tmp_path, entry, struct.pack(">Q", 1 << 40)), tmp_path)
    assert "an L2 table at 0x10000000000 lies outside the file" in line and f"at offset {entry} " in line


def test_qcow2_l2_entry_looping_back_into_metadata(tmp_path: Path) -> None:
    f = qcow2_fields(QCOW2_V2)
    data = QCOW2_V2.read_bytes()
    l2 = struct.unpack_from(">Q", data, f["snap_l1"] + 8)[0] & 0x00FF_FFFF_FFFF_FE00
    # the first data cluster of the VM state now "is" the snapshot's own L1 table: a loop
    line = refused(patched(QCOW2_V2, tmp_path, l2, struct.pack(">Q", f["snap_l1"] | 1 << 63)), tmp_path)
    assert "a loop in the cluster mapping" in line and f"at offset {l2} " in line
    line = refused(patched(QCOW2_V2, tmp_path, l2, struct.pack(">Q", l2 | 1 << 63)), tmp_path)
    assert "is the L2 table of L1 entry 1: a loop" in line


def test_qcow2_data_cluster_outside_the_file(tmp_path: Path) -> None:
    f = qcow2_fields(QCOW2_V2)
    data = QCOW2_V2.read_bytes()
    l2 = struct.unpack_from(">Q", data, f["snap_l1"] + 8)[0] & 0x00FF_FFFF_FFFF_FE00
    line = refused(patched(QCOW2_V2, tmp_path, l2 + 8, struct.pack(">Q", (1 << 40) | 1 << 63)), tmp_path)
    assert "a data cluster at 0x10000000000 lies outside the file" in line


def test_qcow2_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "cut.qcow2"
    path.write_bytes(QCOW2_V2.read_bytes()[:40])
    line = refused(path, tmp_path)
    assert "the file ends inside the qcow2 header" in line


# ---------------------------------------------------------------- fuzzing the headers


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_SAVE = RAW_SAVE.read_bytes()
_QCOW2 = QCOW2_V3.read_bytes()


def open_mutated(tmp_path: Path, data: bytes, **kwargs: object) -> None:
    path = tmp_path / "fuzz"
    path.write_bytes(data)
    try:
        with Source.open(str(path), **kwargs) as src:  # type: ignore[arg-type]
            bytes(src.buf[:16])
    except VmigError:
        pass  # refused in words: fine; anything else escaping is a bug


@FUZZ
@given(offset=st.integers(16, 91), value=st.binary(min_size=1, max_size=8))
def test_fuzz_libvirt_header(tmp_path: Path, offset: int, value: bytes) -> None:
    data = bytearray(_SAVE[:200_000])
    data[offset:offset + len(value)] = value
    open_mutated(tmp_path, bytes(data))


@FUZZ
@given(where=st.sampled_from(["header", "table", "l1", "l2"]), delta=st.integers(0, 63),
       value=st.binary(min_size=1, max_size=8), snapshot=st.sampled_from(["first", "second", None]))
def test_fuzz_qcow2_metadata(tmp_path: Path, where: str, delta: int, value: bytes, snapshot: str | None) -> None:
    snapshots_offset = struct.unpack_from(">Q", _QCOW2, 64)[0]
    snap_l1 = struct.unpack_from(">Q", _QCOW2, snapshots_offset)[0]
    l2 = struct.unpack_from(">Q", _QCOW2, snap_l1 + 8)[0] & 0x00FF_FFFF_FFFF_FE00
    base = {"header": 0, "table": snapshots_offset, "l1": snap_l1, "l2": l2}[where]
    data = bytearray(_QCOW2)
    data[base + delta:base + delta + len(value)] = value
    start = time.monotonic()
    open_mutated(tmp_path, bytes(data), snapshot=snapshot)
    assert time.monotonic() - start < 20


def test_check_schema_gzip_bomb_is_bounded(tmp_path: Path) -> None:
    """`check --schema FILE.gz`: a -dump-vmstate is a few MiB; a gzip bomb stops at 32 MiB out."""
    bomb = tmp_path / "dump.json.gz"
    bomb.write_bytes(gzip.compress(b" " * (512 << 20), 1))
    result = run_bounded(["check", "--schema", str(bomb), str(PLAIN)])
    assert result.returncode == 2, result.stderr
    assert "decompresses to more than 32 MiB" in assert_one_error_line(result.stderr, wants="")
