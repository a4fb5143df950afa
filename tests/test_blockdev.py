"""Block-layer sections (fixtures/blockdev, made by tools/captures/make_blockdev.py with real QEMU):
the "dirty-bitmap" section of the `dirty-bitmaps` capability, decoded chunk by chunk, and 7.2's
"block" section (block migration, gone in 9.1), kept opaque. What each chunk must hold comes from
how the disk was made (qemu-img bitmap -g 64K, qemu-io writes), what `vmig check` must say from
which QEMU loaded the stream (the sidecars' `qemu_loads`)."""

from __future__ import annotations

import functools
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
from paths import BLOCKDEV
from schemacheck import assert_schema

from vfio_ramfb_mig import decode, encode_bytes
from vfio_ramfb_mig.codec import jsonform
from vfio_ramfb_mig.model import OpaqueBody, Section, VmstateBody
from vfio_ramfb_mig.qemu import QemuBinary, load
from vfio_ramfb_mig.source import Source

VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]
METAS = sorted(BLOCKDEV.glob("*.meta.json"))
IDS = [p.name.removesuffix(".meta.json") for p in METAS]
BITMAPS = [m for m in METAS if "dirty-bitmap" in m.name]
BLOCK = next(m for m in METAS if m.name.endswith("__block.meta.json"))
#: what make_blockdev.py wrote through qemu-io: 64 KiB at 0 and 192 KiB at 3 MiB, with a 64 KiB granularity
GRANULARITY = 64 << 10
DIRTY = {0} | {(3 << 20) // GRANULARITY + i for i in range(3)}
SECTORS = (8 << 20) // 512


def meta_of(path: Path) -> dict:
    return json.loads(path.read_text())


def stored(meta_path: Path) -> Path:
    return meta_path.parent / meta_of(meta_path)["stored_as"]["file"]


@functools.lru_cache(maxsize=None)
def decoded(meta_path: Path):
    """Each capture decoded once for the tests that only read it."""
    return decode(str(stored(meta_path)))


def bitmap_sections(stream) -> list[Section]:
    return [s for s in stream.sections if s.idstr == "dirty-bitmap"]


@pytest.mark.parametrize("meta_path", METAS, ids=IDS)
def test_decodes_whole_and_round_trips(meta_path: Path) -> None:
    data = lzma.decompress(stored(meta_path).read_bytes())
    assert len(data) == meta_of(meta_path)["size"]
    with Source.open(str(stored(meta_path))) as src:
        stream = decode(src)
        assert stream.error is None
        assert encode_bytes(stream, src) == data
        text = jsonform.dumps(stream)
        assert encode_bytes(jsonform.loads(text), src) == data
    assert_schema("decode", json.loads(text))
    opaque = {s.idstr for s in stream.sections if isinstance(s.body, OpaqueBody)}
    if meta_path in BITMAPS:
        assert opaque == set() and stream.warnings == ()
        assert all(isinstance(s.body, VmstateBody) and s.body.origin == "builtin" for s in bitmap_sections(stream))
    else:  # 7.2's block migration: a format of its own, no vmdesc entry; warned about once
        assert opaque == {"block"}
        assert [w.split(" (id")[0] for w in stream.warnings] == ["section block"]


@pytest.mark.parametrize("meta_path", BITMAPS, ids=[p.name.removesuffix(".meta.json") for p in BITMAPS])
def test_the_bitmap_is_the_one_qemu_io_dirtied(meta_path: Path) -> None:
    sections = bitmap_sections(decoded(meta_path))
    assert [s.type for s in sections[:1] + sections[-1:]] == ["section_start", "section_end"]
    chunks = [[f.info for f in s.body.fields] for s in sections]
    for record in chunks:  # every record's chunks end at the first EOS, and only there
        assert [c["eos"] for c in record] == [False] * (len(record) - 1) + [True]
    flat = [c for record in chunks for c in record]
    starts = [c for c in flat if c["kind"] == "start"]
    assert starts == [{"kind": "start", "eos": False, "node_alias": "d0", "bitmap_alias": "bm0",
                       "granularity": GRANULARITY, "enabled": True, "persistent": True}]
    # the END record: the bits of the whole disk, then COMPLETE, then EOS
    end = [c["kind"] for c in chunks[-1]]
    assert end == ["bits", "complete", "none"]
    bits_field = next(f for f in sections[-1].body.fields if f.info["kind"] == "bits")
    values = {f.name: f.value for f in bits_field.value.fields}
    assert (values["start_sector"], values["nr_sectors"]) == (0, SECTORS)
    assert values["buf_size"] == len(values["bits"]) and values["buf_size"] % 32 == 0  # QEMU pads to 4 longs
    as_int = int.from_bytes(values["bits"], "little")
    assert {i for i in range(len(values["bits"]) * 8) if as_int >> i & 1} == DIRTY
    assert chunks[-1][0]["bits_set"] == len(DIRTY)


def test_the_tree_says_each_chunk_in_words() -> None:
    out = subprocess.run([*VMIG, "decode", str(stored(BITMAPS[0]))], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "chunk  struct  START node 'd0' bitmap 'bm0': granularity 65536 bytes, enabled, persistent" in out.stdout
    assert f"chunk  struct  BITS: sectors 0..{SECTORS - 1}, 4 bits set" in out.stdout
    assert "chunk  struct  COMPLETE" in out.stdout and "chunk  struct  end of section" in out.stdout


@pytest.mark.parametrize("meta_path", METAS, ids=IDS)
def test_check_agrees_with_the_qemu_that_loaded_it(meta_path: Path) -> None:
    """Every QEMU has the dirty-bitmap entry (registered at start-up); 7.2 also the block one, 10.0 not."""
    meta = meta_of(meta_path)
    for loaded in meta["qemu_loads"]:
        series = ".".join(loaded["qemu"].split(".")[:2])
        result = subprocess.run([*VMIG, "check", "--json", "--qemu", series, "--device", "virtio-blk-pci",
                                 "-m", "16M", str(stored(meta_path))], capture_output=True, text=True, timeout=120)
        verdict = json.loads(result.stdout)
        assert verdict["loadable"] is loaded["accepted"], (loaded, result.stdout)
        assert result.returncode == (0 if loaded["accepted"] else 1)
        if not loaded["accepted"]:
            assert verdict["qemu_output"] == loaded["errors"]
            assert verdict["findings"][0]["summary"].endswith("(the block capability, migration/block.c), which "
                                                              "QEMU removed in 9.1")


def cut_at(meta_path: Path, tmp_path: Path, offset: int) -> Path:
    cut = tmp_path / "cut.bin"
    cut.write_bytes(lzma.decompress(stored(meta_path).read_bytes())[:offset])
    return cut


def one_line_error(args: list[str]) -> str:
    result = subprocess.run([*VMIG, *args], capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_cut_chunk_and_an_absurd_buffer_size_are_one_line(tmp_path: Path) -> None:
    stream = decoded(BITMAPS[0])
    start = bitmap_sections(stream)[0]
    chunk = start.body.fields[0]
    granularity = next(f for f in chunk.value.fields if f.name == "granularity")
    # cut inside the START chunk's granularity
    line = one_line_error(["decode", str(cut_at(BITMAPS[0], tmp_path, granularity.span.offset + 2))])
    assert line.endswith(f"stream ends inside a dirty bitmap chunk at offset {granularity.span.offset + 2} "
                         f"({granularity.span.offset + 2:#x}) in /records/{stream.records.index(start)}/fields/0/granularity")
    # the END record's BITS chunk claiming 16 MiB of bits: QEMU refuses it before reading a byte
    end = bitmap_sections(stream)[-1]
    size_field = next(f for f in end.body.fields[0].value.fields if f.name == "buf_size")
    data = bytearray(lzma.decompress(stored(BITMAPS[0]).read_bytes()))
    data[size_field.span.offset:size_field.span.offset + 8] = (16 << 20).to_bytes(8, "big")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(data)
    line = one_line_error(["decode", str(bad)])
    assert f"offset {size_field.span.offset}" in line and "/fields/0/buf_size" in line
    assert "too large" in line and "10240" in line


@pytest.mark.qemu
@pytest.mark.parametrize("meta_path", BITMAPS, ids=[p.name.removesuffix(".meta.json") for p in BITMAPS])
def test_real_qemu_loads_the_reencoded_stream(request: pytest.FixtureRequest, tmp_path: Path, meta_path: Path) -> None:
    meta = meta_of(meta_path)
    qemu: QemuBinary = request.getfixturevalue("qemu10" if meta["qemu"]["version"].startswith("10.") else "qemu72")
    with Source.open(str(stored(meta_path))) as src:
        stream = jsonform.loads(jsonform.dumps(decode(src)))
        out = tmp_path / "again.bin"
        out.write_bytes(encode_bytes(stream, src))
    disk = tmp_path / "dst.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), str(8 << 20)], check=True)
    recipe = meta["made_by"]["recipe"]
    result = load(qemu, out, recipe["machine"], devices=recipe["devices"], memory=recipe["memory"],
                  extra_args=["-drive", f"if=none,id=d0,format=qcow2,file={disk}"])
    assert result.accepted, result.errors


def with_long_flags(meta_path: Path) -> tuple[bytes, list[list[int]]]:
    """The stream with the end flags of its START and END records (their last chunks) written in
    QEMU's longer flag forms (0x80 then the flags: two bytes; 0x80 0x80 then a be16: four): its
    reader takes them, though its writer sends one byte. Returns the bytes and the flag bytes."""
    doc = json.loads(jsonform.dumps(decoded(meta_path)))
    records = [r for r in doc["records"] if r.get("idstr") == "dirty-bitmap"]
    forms = [[0x80, 0x01], [0x80, 0x80, 0x00, 0x01]]
    for record, form in zip((records[0], records[-1]), forms):
        names, types = ["flags", "flags_extra", "flags_more"], ["uint8", "uint8", "uint16"]
        values = form[:2] + ([form[2] << 8 | form[3]] if len(form) == 4 else [])
        chunk = record["fields"][-1]["value"]
        assert [f["name"] for f in chunk["fields"]] == ["flags"]  # an end of section
        chunk["fields"] = [{"name": n, "type": t, "value": v} for n, t, v in zip(names, types, values)]
    with Source.open(str(stored(meta_path))) as src:
        return encode_bytes(jsonform.loads(json.dumps(doc)), src), forms


def test_the_longer_flag_forms_qemu_reads_decode() -> None:
    data, forms = with_long_flags(BITMAPS[-1])
    sections = bitmap_sections(decode(data))
    for section, form in zip((sections[0], sections[-1]), forms):
        chunk = section.body.fields[-1]
        assert chunk.span.length == len(form) and chunk.info == {"kind": "none", "eos": True}
        assert [f.name for f in chunk.value.fields] == ["flags", "flags_extra", "flags_more"][:min(len(form), 3)]
    assert sections[-1].body.fields[-2].span.length == 1  # COMPLETE, as QEMU wrote it


@pytest.mark.qemu
def test_real_qemu_loads_the_longer_flag_forms(qemu72: QemuBinary, tmp_path: Path) -> None:
    data, _ = with_long_flags(BITMAPS[-1])
    (tmp_path / "long.bin").write_bytes(data)
    disk = tmp_path / "dst.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), str(8 << 20)], check=True)
    recipe = meta_of(BITMAPS[-1])["made_by"]["recipe"]
    result = load(qemu72, tmp_path / "long.bin", recipe["machine"], devices=recipe["devices"], memory=recipe["memory"],
                  extra_args=["-drive", f"if=none,id=d0,format=qcow2,file={disk}"])
    assert result.accepted, result.errors
