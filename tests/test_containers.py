"""Streams inside containers: libvirt save images and qcow2 snapshots made by real libvirt 9.0 and
QEMU 10.0 (fixtures/containers, with the scripts that made them in tools/captures), compressed
input, and every verb on them.

Expected values come from the files' makers: the libvirt header fields from libvirt's layout
read with struct here (not with vmig), the qcow2 snapshot table from `qemu-img snapshot -l`
(recorded in each image's .meta.json), and the stream inside a raw save is the file's tail.
"""

from __future__ import annotations

import gzip
import json
import lzma
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import assert_same_bytes
from paths import FIXTURES
from schemacheck import assert_schema
from vfio_ramfb_mig import Source, decode, encode_bytes, jsonform
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.errors import BadMagicError, ContainerError

CONTAINERS = FIXTURES / "containers"
SAVES = {p.stem.split("__")[-1]: p for p in sorted(CONTAINERS.glob("libvirt-*.save"))}
QCOW2_V3 = CONTAINERS / "qemu-10.0.2__pc-q35-8.2__v3-snapshots.qcow2"
QCOW2_V2 = CONTAINERS / "qemu-10.0.2__pc-q35-8.2__v2-snapshot.qcow2"


def libvirt_fields(path: Path) -> dict[str, int]:
    """The header as libvirt lays it out (qemu_saveimage.h), read independently of vmig."""
    raw = path.read_bytes()[:92]
    version, data_len, was_running, compressed, cookie = struct.unpack_from("<5I", raw, 16)
    return {"version": version, "data_len": data_len, "was_running": was_running, "compressed": compressed,
            "cookie_offset": cookie}


def raw_payload() -> bytes:
    data = SAVES["raw"].read_bytes()
    return data[92 + libvirt_fields(SAVES["raw"])["data_len"]:]


def run(*args: str) -> "object":
    return CliRunner().invoke(cli, list(args))


def test_fixtures_are_there() -> None:
    # libvirt 9.0 writes raw, gzip, bzip2, xz and lzop (its save formats 0-4)
    assert set(SAVES) == {"raw", "gzip", "bzip2", "xz", "lzop"}
    assert QCOW2_V3.exists() and QCOW2_V2.exists()


@pytest.mark.parametrize("fmt", sorted(SAVES))
def test_libvirt_save_decodes_whole(fmt: str) -> None:
    with Source.open(str(SAVES[fmt])) as src:
        stream = decode(src)
        assert stream.error is None and stream.vmdesc is not None
        assert stream.configuration is not None and stream.configuration.machine == "pc-q35-8.2"
        layer = src.container["layers"][-1]
        fields = libvirt_fields(SAVES[fmt])
        assert layer["type"] == "libvirt-save"
        assert layer["compression"] == fmt and layer["compressed"] == fields["compressed"]
        assert layer["data_len"] == fields["data_len"] and layer["was_running"] == fields["was_running"] == 1
        assert layer["payload_offset"] == 92 + fields["data_len"]
        assert "<name>vmig-save</name>" in layer["xml"] and layer["cookie"].startswith("<cookie>")
        # the stream is every byte of it: decode -> encode gives the same bytes
        assert encode_bytes(stream, src) == bytes(src.buf)


def test_raw_save_is_read_in_place_and_equals_its_tail() -> None:
    with Source.open(str(SAVES["raw"])) as src:
        assert src.spooled == 0 and isinstance(src.buf, memoryview)
        assert_same_bytes(bytes(src.buf), raw_payload())


@pytest.mark.parametrize("fmt", ["gzip", "bzip2", "xz", "lzop"])
def test_compressed_save_diff_against_raw_payload_of_same_guest_decodes(fmt: str, tmp_path: Path) -> None:
    """A compressed save against its own payload written out: identical (exit 0)."""
    with Source.open(str(SAVES[fmt])) as src:
        payload = tmp_path / "payload.bin"
        payload.write_bytes(bytes(src.buf))
    result = run("diff", str(SAVES[fmt]), str(payload), "--brief")
    assert result.exit_code == 0, result.output


def test_diff_container_against_stream_inside_is_identical(tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(raw_payload())
    result = run("diff", str(SAVES["raw"]), str(payload))
    assert result.exit_code == 0, result.output
    packed = tmp_path / "payload.bin.xz"
    packed.write_bytes(lzma.compress(raw_payload()))
    assert run("diff", str(packed), str(SAVES["raw"]), "--brief").exit_code == 0


def qemu_img_snapshots(path: Path) -> list[tuple[str, str, str]]:
    """(id, tag, VM size column) from the `qemu-img snapshot -l` listing in the sidecar."""
    listing = json.loads(path.with_suffix(".meta.json").read_text())["snapshot_list"]
    rows = []
    for line in listing.splitlines()[2:]:
        parts = line.split()
        if parts:
            rows.append((parts[0], parts[1], " ".join(parts[2:4])))
    return rows


def test_qcow2_snapshot_table_matches_qemu_img() -> None:
    from vfio_ramfb_mig.source.qcow2 import Qcow2Image

    data = QCOW2_V3.read_bytes()
    image = Qcow2Image.read(data, len(data))
    expected = qemu_img_snapshots(QCOW2_V3)
    assert [(s.id, s.name) for s in image.snapshots] == [(i, t) for i, t, _ in expected]
    for snap, (_, _, size) in zip(image.snapshots, expected):
        if size == "0 B":
            assert snap.vm_state_size == 0
        else:  # qemu-img prints sizes like "664 KiB" / "1.27 MiB"
            number, unit = size.split()
            scale = {"KiB": 1 << 10, "MiB": 1 << 20}[unit]
            decimals = len(number.partition(".")[2])
            assert abs(snap.vm_state_size / scale - float(number)) <= 0.5 * 10 ** -decimals
    assert image.version == 3 and Qcow2Image.read(QCOW2_V2.read_bytes(), QCOW2_V2.stat().st_size).version == 2


@pytest.mark.parametrize("wanted", ["first", "1", "second", "2"])
def test_qcow2_snapshot_by_name_or_id(wanted: str) -> None:
    with Source.open(str(QCOW2_V3), snapshot=wanted) as src:
        stream = decode(src)
        assert stream.error is None and stream.vmdesc is not None
        assert encode_bytes(stream, src) == bytes(src.buf)
        chosen = src.container["layers"][0]["snapshot"]
        assert wanted in (chosen["id"], chosen["name"])


def test_qcow2_with_several_vm_states_needs_snapshot() -> None:
    result = run("decode", "--summary", str(QCOW2_V3))
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "--snapshot" in line and "'first'" in line and "'second'" in line and "'disk-only'" in line
    assert "\n" not in line


def test_qcow2_disk_only_snapshot_and_unknown_name() -> None:
    with pytest.raises(ContainerError, match="no VM state"):
        Source.open(str(QCOW2_V3), snapshot="disk-only")
    with pytest.raises(ContainerError, match="no snapshot with the id or name 'nosuch'"):
        Source.open(str(QCOW2_V3), snapshot="nosuch")


def test_qcow2_v2_single_snapshot_is_the_default() -> None:
    with Source.open(str(QCOW2_V2)) as src:
        assert decode(src).error is None
        assert src.container["layers"][0]["snapshot"]["name"] == "only"


def test_snapshot_option_on_a_non_qcow2_is_refused() -> None:
    result = run("decode", "--summary", "--snapshot", "x", str(SAVES["raw"]))
    assert result.exit_code == 2 and "applies to qcow2 images" in result.stderr


def test_unknown_file_says_what_it_found_and_what_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(100))
    with pytest.raises(BadMagicError) as err:
        Source.open(str(path))
    text = str(err.value)
    assert "an ELF executable" in text and "libvirt save image" in text and "qcow2" in text and "zstd" in text


@pytest.mark.parametrize("fmt", sorted(SAVES))
def test_encode_from_json_rebuilds_the_save_image(fmt: str, tmp_path: Path) -> None:
    doc = tmp_path / "d.json"
    out = tmp_path / "out.save"
    assert run("decode", "--json", str(SAVES[fmt]), "-o", str(doc)).exit_code == 0
    assert json.loads(doc.read_text())["container"]["layers"][-1]["type"] == "libvirt-save"
    result = run("encode", "--from-json", str(doc), "-o", str(out))
    assert result.exit_code == 0, result.output
    original = SAVES[fmt].read_bytes()
    rebuilt = out.read_bytes()
    prefix = 92 + libvirt_fields(SAVES[fmt])["data_len"]
    assert rebuilt[:prefix] == original[:prefix]  # header, XML, cookie, padding
    if fmt in ("raw", "bzip2", "xz"):  # same compressor settings as libvirt's tools: same bytes
        assert_same_bytes(rebuilt, original)
    with Source.open(str(out)) as a, Source.open(str(SAVES[fmt])) as b:
        assert bytes(a.buf) == bytes(b.buf)
    bare = tmp_path / "bare.bin"
    assert run("encode", "--from-json", str(doc), "--bare", "-o", str(bare)).exit_code == 0
    assert bare.read_bytes()[:4] == b"QEVM"


def test_encode_of_a_qcow2_snapshot_writes_the_bare_stream(tmp_path: Path) -> None:
    doc, out = tmp_path / "d.json", tmp_path / "out.bin"
    assert run("decode", "--json", "--snapshot", "second", str(QCOW2_V3), "-o", str(doc)).exit_code == 0
    result = run("encode", "--from-json", str(doc), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "bare stream" in result.stderr
    with Source.open(str(QCOW2_V3), snapshot="second") as src:
        assert_same_bytes(out.read_bytes(), bytes(src.buf))


def test_info_libvirt(tmp_path: Path) -> None:
    result = run("info", "--json", str(SAVES["gzip"]))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    fields = libvirt_fields(SAVES["gzip"])
    lv = doc["libvirt"]
    assert doc["layers"] == ["libvirt-save", "gzip", "qemu"]
    assert lv["header_version"] == fields["version"] == 2 and lv["compression"] == "gzip"
    assert lv["xml_length"] == fields["data_len"] and lv["was_running"] is True
    assert lv["domain"]["name"] == "vmig-save" and lv["domain"]["machine"] == "pc-q35-8.2"
    assert "video ramfb" in lv["domain"]["devices"]
    assert doc["stream"]["machine"] == "pc-q35-8.2" and doc["stream"]["header_version"] == 3
    xml = run("info", "--xml", str(SAVES["gzip"]))
    assert xml.exit_code == 0 and xml.stdout.startswith("<domain type='qemu'")
    text = run("info", str(SAVES["gzip"]))
    assert text.exit_code == 0 and "libvirt save image" in text.stdout and "vmig-save" in text.stdout


def test_info_qcow2_lists_snapshots_without_choosing() -> None:
    result = run("info", "--json", str(QCOW2_V3))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [s["name"] for s in doc["qcow2"]["snapshots"]] == ["first", "second", "disk-only"]
    assert doc["stream"]["read"] is False and "--snapshot" in doc["stream"]["reason"]
    chosen = json.loads(run("info", "--json", "--snapshot", "2", str(QCOW2_V3)).stdout)
    assert [s["read"] for s in chosen["qcow2"]["snapshots"]] == [False, True, False]
    assert chosen["stream"]["read"] is True


def test_golden_finds_streams_by_content(tmp_path: Path) -> None:
    (tmp_path / "a.save").write_bytes(SAVES["xz"].read_bytes())
    (tmp_path / "weird-name.dat").write_bytes(gzip.compress(raw_payload()))
    (tmp_path / "notes.json.gz").write_bytes(gzip.compress(b'{"not": "a stream"}'))
    (tmp_path / "readme.txt").write_text("hello")
    result = run("golden", "update", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.golden.txt")) == ["a.golden.txt", "weird-name.golden.txt"]
    assert run("golden", "check", str(tmp_path)).exit_code == 0


def test_ram_extract_from_a_qcow2_snapshot(tmp_path: Path) -> None:
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert run("ram", "extract", "--snapshot", "first", str(QCOW2_V3), str(out_a)).exit_code == 0
    with Source.open(str(QCOW2_V3), snapshot="first") as src:
        plain = tmp_path / "first.bin"
        plain.write_bytes(bytes(src.buf))
    assert run("ram", "extract", str(plain), str(out_b)).exit_code == 0
    blocks = sorted(out_b.glob("*.bin"))
    assert blocks and [f.name for f in blocks] == sorted(f.name for f in out_a.glob("*.bin"))
    for f in blocks:
        assert (out_a / f.name).read_bytes() == f.read_bytes()


def test_json_container_survives_loads() -> None:
    with Source.open(str(SAVES["raw"])) as src:
        text = jsonform.dumps(decode(src), source=src)
    assert jsonform.loads(text).container["layers"][0]["type"] == "libvirt-save"


@pytest.mark.parametrize("path", [*SAVES.values(), QCOW2_V2, QCOW2_V3, FIXTURES / "captures" /
                                  "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"], ids=lambda p: p.name)
def test_info_json_follows_its_schema(path: Path) -> None:
    for args in ([], ["--snapshot", "first"]) if path == QCOW2_V3 else ([],):
        result = run("info", "--json", *args, str(path))
        assert result.exit_code == 0, result.output
        assert_schema("info", json.loads(result.stdout))


def test_screenshot_reads_containers(tmp_path: Path) -> None:
    from vfio_ramfb_mig.screen import screenshot

    with Source.open(str(SAVES["lzop"])) as src:
        plain = tmp_path / "payload.bin"
        plain.write_bytes(bytes(src.buf))
        inside = screenshot(src)
    alone = screenshot(str(plain))
    assert inside.image.tobytes() == alone.image.tobytes()
    out = tmp_path / "s.png"
    result = run("screenshot", "--snapshot", "second", str(QCOW2_V3), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fmt", ["gzip", "bzip2", "xz", "lzop"])
def test_rebuilt_payload_is_what_libvirts_decompressor_reads(fmt: str, tmp_path: Path) -> None:
    """`virsh restore` pipes the payload through `FMT -dc` (lzop: `lzop -dc --ignore-warn`): the
    real tool must give back the stream vmig decoded."""
    import shutil
    import subprocess

    if shutil.which(fmt) is None:
        pytest.skip(f"{fmt} is not installed (Debian package {'xz-utils' if fmt == 'xz' else fmt})")
    doc, out = tmp_path / "d.json", tmp_path / "out.save"
    assert run("decode", "--json", str(SAVES[fmt]), "-o", str(doc)).exit_code == 0
    assert run("encode", "--from-json", str(doc), "-o", str(out)).exit_code == 0
    rebuilt = out.read_bytes()
    payload = rebuilt[92 + libvirt_fields(out)["data_len"]:]
    args = [fmt, "-dc"] + (["--ignore-warn"] if fmt == "lzop" else [])
    unpacked = subprocess.run(args, input=payload, capture_output=True, timeout=60, check=True).stdout
    with Source.open(str(SAVES[fmt])) as src:
        assert_same_bytes(unpacked, bytes(src.buf))


def test_forward_only_source_keeps_a_window_of_temp_space(tmp_path: Path) -> None:
    """Source.open(seek=False) on compressed data: bytes are copied as they are asked for, and
    the disk behind release() is given back; a 256 MiB stream never holds more than a window."""
    from vfio_ramfb_mig.source import ForwardSource

    head = FIXTURES.joinpath("captures", "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin").read_bytes()[:64]
    body = bytes(range(256)) * 4096  # 1 MiB, not all zeros: it must really be written out
    packed = tmp_path / "big.gz"
    with gzip.open(packed, "wb", compresslevel=1) as f:
        f.write(head)
        for _ in range(256):
            f.write(body)
    total = 64 + (256 << 20)
    with Source.open(str(packed), seek=False) as src:
        assert isinstance(src, ForwardSource) and not src.complete and not src.seekable
        peak, pos = 0, 0
        while not src.complete:
            pos = src.ensure(pos + (1 << 20))
            assert src.buf[pos - 1] == (pos - 1 - 64) % 256  # the byte just read is the right one
            src.release(pos)
            peak = max(peak, src.disk_used())
        assert src.size == total and pos == total
        assert peak <= 40 << 20, f"the spool held {peak >> 20} MiB at once"
    with Source.open(str(packed)) as whole:  # seek=True (the default): all of it, complete at once
        assert whole.complete and whole.size == total and whole.spooled == total


def test_golden_of_a_qcow2_with_several_vm_states_is_one_per_snapshot(tmp_path: Path) -> None:
    image = tmp_path / "vm.qcow2"
    image.write_bytes(QCOW2_V3.read_bytes())
    result = run("golden", "update", str(tmp_path))
    assert result.exit_code == 0, result.output
    # 'disk-only' has no VM state: no golden
    assert sorted(p.name for p in tmp_path.glob("*.golden.txt")) == ["vm@first.golden.txt", "vm@second.golden.txt"]
    first = (tmp_path / "vm@first.golden.txt").read_text()
    with Source.open(str(QCOW2_V3), snapshot="first") as src:
        plain = tmp_path / "sub" / "first.bin"
        plain.parent.mkdir()
        plain.write_bytes(bytes(src.buf))
    assert run("golden", "update", str(plain)).exit_code == 0
    assert (plain.parent / "first.golden.txt").read_text() == first  # the same stream, the same golden
    check = run("golden", "check", str(tmp_path))
    assert check.exit_code == 0, check.output
    assert "no stream beside it" not in check.stderr
