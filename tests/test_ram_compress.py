"""COMPRESS_PAGE records: QEMU <= 9.0's `compress` capability (fixtures/compress, made by
tools/captures/make_compress.py with real QEMU 7.2).

What the tests expect comes from QEMU: the RAM its destinations held after loading the
streams (the sidecar's hashes, and loads done here), its verdicts and error messages, and the
facts of QEMU 7.2's loader (migration/ram.c ram_load_precopy, qemu_uncompress_data): a length
above compressBound(page) or negative is refused, data that does not end its zlib stream within
one page is refused, data that ends it early is loaded over the page as it was.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import struct
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import assert_one_error_line, assert_same_bytes, ram_stream
from paths import COMPRESS
from schemacheck import assert_schema

from vfio_ramfb_mig import decode, encode_bytes, jsonform
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.compat.check import check_stream, destination_for
from vfio_ramfb_mig.errors import CorruptError, TruncatedError
from vfio_ramfb_mig.golden import golden_of_path
from vfio_ramfb_mig.model import Blob, MigrationStream, RamBody, RamPages, Section
from vfio_ramfb_mig.qemu import load, sha256_file
from vfio_ramfb_mig.ram import PageState
from vfio_ramfb_mig.source import Source
from vfio_ramfb_mig.wire.ram import compress_bound

META_PATH = COMPRESS / "qemu-7.2.22__pc-q35-7.2__booted+compress.meta.json"
META: dict[str, Any] = json.loads(META_PATH.read_text())
RAW = lzma.decompress((COMPRESS / META["stored_as"]["file"]).read_bytes())
PS = 4096


def runs(stream: MigrationStream) -> list[tuple[int, int, RamPages]]:
    """(record index, item index, run) of every page run."""
    return [(i, k, item) for i, r in enumerate(stream.records) if isinstance(r, Section) and isinstance(r.body, RamBody)
            for k, item in enumerate(r.body.items) if isinstance(item, RamPages)]


def compressed(stream: MigrationStream) -> list[RamPages]:
    return [run for _, _, run in runs(stream) if run.kind == "compressed"]


def replaced(stream: MigrationStream, edit) -> MigrationStream:
    """The stream with each page run `edit(run)` returns in its place (a run, or a list of them)."""
    records = list(stream.records)
    for i, r in enumerate(records):
        if isinstance(r, Section) and isinstance(r.body, RamBody):
            items = []
            for item in r.body.items:
                new = edit(item) if isinstance(item, RamPages) else item
                items.extend(new if isinstance(new, list) else [new])
            records[i] = replace(r, body=replace(r.body, items=tuple(items), counts=None))
    return replace(stream, records=tuple(records))


def encoded(stream: MigrationStream) -> bytes:
    """The stream's bytes; what its runs leave in the capture (pages, zlib data) is read from it."""
    return encode_bytes(stream, Source.from_bytes(RAW))


def written(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def main_ram_of_extract(path: Path, tmp_path: Path) -> tuple[str, int]:
    """sha256 and non-zero pages of pc.ram as `vmig ram extract` writes it."""
    out = tmp_path / f"{path.stem}-ram"
    result = CliRunner().invoke(cli, ["ram", "extract", "-q", "--block", "pc.ram", str(path), str(out)])
    assert result.exit_code == 0, result.output
    data = (out / "pc.ram.bin").read_bytes()
    zero = bytes(PS)
    return hashlib.sha256(data).hexdigest(), sum(data[i:i + PS] != zero for i in range(0, len(data), PS))


# ---------------------------------------------------------------- the capture


def test_capture_is_compressed_records_the_walk_inflates() -> None:
    """Every compressed record continues its block (QEMU sends a block's first page whole), its
    length is within compressBound, and its data is a zlib stream of exactly one page."""
    with Source.open(str(COMPRESS / META["stored_as"]["file"])) as src:
        stream = decode(src, strict=True)
        found = compressed(stream)
        assert len(found) >= 100
        for run in found:
            assert run.count == 1 and not run.named and run.span is not None
            (data,) = run.data
            (length,) = struct.unpack_from(">I", RAW, data.offset - 4)
            assert length == data.length <= compress_bound(PS)
            assert run.span.end == data.offset + data.length
            assert len(zlib.decompress(RAW[data.offset:data.offset + data.length])) == PS


def test_decode_views_count_compressed_pages() -> None:
    path = str(COMPRESS / META["stored_as"]["file"])
    runner = CliRunner()
    n = len(compressed(decode(path)))
    info = runner.invoke(cli, ["info", "--json", path])
    assert info.exit_code == 0, info.output
    assert json.loads(info.output)["stream"]["ram"]["pages"]["compressed"] == n
    tree = runner.invoke(cli, ["decode", path])
    assert tree.exit_code == 0 and " compressed pages" in tree.output
    pages = runner.invoke(cli, ["decode", "--pages", "--json", path])
    lines = [json.loads(line) for line in pages.output.splitlines()]
    comp = [line for line in lines if line["kind"] == "compressed"]
    assert len(comp) == n
    for line in comp:
        (length,) = struct.unpack_from(">I", RAW, line["offset"] + 8)
        assert line["data_length"] == length and line["length"] == 8 + 4 + length


def test_json_outputs_match_their_schemas(tmp_path: Path) -> None:
    path = str(COMPRESS / META["stored_as"]["file"])
    runner = CliRunner()
    assert_schema("info", json.loads(runner.invoke(cli, ["info", "--json", path]).output))
    result = runner.invoke(cli, ["ram", "extract", "-q", path, str(tmp_path / "ram")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ram" / "manifest.json").read_text())
    assert_schema("ram-manifest", manifest)
    assert {b["idstr"]: b["records"].get("compressed", 0) for b in manifest["blocks"]}["pc.ram"] > 0
    verdict = json.loads(runner.invoke(cli, ["check", "--json", "--qemu", "10.0", path]).output)
    assert_schema("check", verdict)
    assert verdict["findings"][0]["rule"] == "compressed-page"
    raw = written(tmp_path, "raw.bin", RAW)
    plain = written(tmp_path, "plain.bin", encoded(uncompressed(decode(RAW))))
    assert_schema("diff", json.loads(runner.invoke(cli, ["diff", "--json", str(raw), str(plain)]).output))


def test_json_round_trip(tmp_path: Path) -> None:
    """decode --json carries the zlib data itself (hex, as an XBZRLE delta): encode --from-json
    gives the same bytes."""
    path = str(written(tmp_path, "raw.bin", RAW))
    doc = tmp_path / "doc.json"
    result = CliRunner().invoke(cli, ["decode", "--json", path, "-o", str(doc)])
    assert result.exit_code == 0, result.output
    items = [item for r in json.loads(doc.read_text())["records"] if r.get("ram")
             for item in r["ram"]["items"] if item["kind"] == "compressed"]
    assert items and all("hex" in item["data"] for item in items)
    out = tmp_path / "again.bin"
    result = CliRunner().invoke(cli, ["encode", "--from-json", str(doc), "--source", path, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert_same_bytes(out.read_bytes(), RAW)


def test_page_state_is_qemus_memory() -> None:
    """The final page state, page by page, is the RAM QEMU 7.2's destination held."""
    want = META["destination_guest_ram"]
    assert want["sha256"] == META["guest_ram"]["sha256"]
    with Source.open(str(COMPRESS / META["stored_as"]["file"])) as src:
        state = PageState(src)
        decode(src, ram_runs=False, on_ram_item=state.feed)
        state.check()
        pages = state.blocks["pc.ram"]
        kinds = {pages.page(i).kind for i in range(pages.pages)}
        assert "compressed" in kinds
        digest = hashlib.sha256()
        for i in range(pages.pages):
            digest.update(state.read_page(pages, i) or bytes(PS))
    assert digest.hexdigest() == want["sha256"]


def test_guest_physical_reads_see_the_inflated_pages() -> None:
    """pc-q35 maps pc.ram at guest-physical 0 (below 4 GiB): a read there of a compressed page
    gives the page its data inflates to (what the screen and report read)."""
    from vfio_ramfb_mig.ram.guest import open_guest_memory

    with Source.open(str(COMPRESS / META["stored_as"]["file"])) as src:
        stream = decode(src)
        run = next(r for r in compressed(stream) if r.block == "pc.ram")
        data = run.data[0]
        want = zlib.decompress(RAW[data.offset:data.offset + data.length])
        memory = open_guest_memory(stream, src)
        got, missing = memory.read(run.offset, PS)
    assert got == want and not missing


# ---------------------------------------------------------------- the same memory, sent whole


def uncompressed(stream: MigrationStream) -> MigrationStream:
    """The stream with each compressed record replaced by a normal page of what it inflates to."""
    def edit(run: RamPages) -> RamPages:
        if run.kind != "compressed":
            return run
        (data,) = run.data
        page = zlib.decompress(RAW[data.offset:data.offset + data.length])
        return replace(run, kind="page", data=(Blob(0, PS, page),), span=None)
    return replaced(stream, edit)


def test_golden_hashes_a_compressed_page_as_the_page_it_holds(tmp_path: Path) -> None:
    stream = decode(RAW)
    plain = written(tmp_path, "plain.bin", encoded(uncompressed(stream)))
    original = written(tmp_path, "compressed.bin", RAW)
    a = {e.path: e.value for e in golden_of_path(original).entries if e.path.startswith("ram/")}
    b = {e.path: e.value for e in golden_of_path(plain).entries if e.path.startswith("ram/")}
    per_block: dict[str, int] = {}
    for run in compressed(stream):
        per_block[run.block] = per_block.get(run.block, 0) + 1
    for block, n in per_block.items():
        key = f"ram/{block}" if not block.startswith("/") else f"ram/{block}"
        assert a[f"{key}/pages/compressed"] == str(n) and f"{key}/pages/compressed" not in b
        assert int(b[f"{key}/pages/normal"]) == int(a[f"{key}/pages/normal"]) + n
        assert a[f"{key}/sha256"] == b[f"{key}/sha256"]
    assert {k for k in a if k.endswith("/sha256")} == {k for k in b if k.endswith("/sha256")}
    assert all(a[k] == b[k] for k in a if k.endswith("/sha256"))
    # and the checked-in golden holds, from the compressed stream
    result = CliRunner().invoke(cli, ["golden", "check", str(COMPRESS)])
    assert result.exit_code == 0, result.output


def test_golden_digest_of_compressed_pages_in_address_order(tmp_path: Path) -> None:
    """Pages set once, in address order, are hashed beside the walk (ram.summary.StreamSummaries):
    compressed ones go to the final page state instead, and the digest is the documented one (per
    page: be64 offset, 'P', the inflated page), the same as for the pages sent whole."""
    pages = [bytes([i + 1]) * 1000 + bytes(PS - 1000) for i in range(4)]
    expected = hashlib.sha256(b"".join(struct.pack(">QB", i * PS, ord("P")) + page for i, page in enumerate(pages)))
    comp = written(tmp_path, "c.bin", ram_stream([("compressed", i, zlib.compress(p)) for i, p in enumerate(pages)]))
    plain = written(tmp_path, "p.bin", ram_stream([("page", i, p) for i, p in enumerate(pages)]))
    for path, kind in ((comp, "compressed"), (plain, "normal")):
        entries = {e.path: e.value for e in golden_of_path(path).entries}
        assert entries["ram/pc.ram/sha256"] == expected.hexdigest()
        assert entries[f"ram/pc.ram/pages/{kind}"] == "4"


def test_diff_sees_the_same_memory(tmp_path: Path) -> None:
    stream = decode(RAW)
    plain = written(tmp_path, "plain.bin", encoded(uncompressed(stream)))
    original = written(tmp_path, "compressed.bin", RAW)
    result = CliRunner().invoke(cli, ["diff", "--json", str(original), str(plain)])
    doc = json.loads(result.output)
    assert not [d for d in doc["changes"] if d["kind"].startswith("ram")], doc["changes"]
    # one page changed in B is found, at its block offset
    victim = 5
    run = compressed(stream)[victim]
    page = bytearray(zlib.decompress(RAW[run.data[0].offset:run.data[0].offset + run.data[0].length]))
    page[100] ^= 0xFF
    other = written(tmp_path, "other.bin", encoded(with_data(stream, {victim: zlib.compress(bytes(page))})))
    result = CliRunner().invoke(cli, ["diff", "--json", str(original), str(other)])
    doc = json.loads(result.output)
    ram = [d for d in doc["changes"] if d["kind"] == "ram_pages"]
    assert len(ram) == 1 and ram[0]["count"] == 1 and f"{run.offset:#x}" in json.dumps(ram[0]), ram


# ---------------------------------------------------------------- real QEMU 7.2 loads what vmig writes


def with_data(stream: MigrationStream, victims: dict[int, bytes]) -> MigrationStream:
    """The stream with the zlib data of the compressed runs at these indices replaced."""
    order = {id(run): n for n, run in enumerate(compressed(stream))}

    def edit(run: RamPages) -> RamPages:
        n = order.get(id(run))
        if n is None or n not in victims:
            return run
        return replace(run, data=(Blob(0, len(victims[n]), victims[n]),), span=None)
    return replaced(stream, edit)


@pytest.mark.qemu
def test_qemu_loads_compressed_records_vmig_wrote(qemu72, tmp_path: Path) -> None:
    """Compressed records vmig encodes load into QEMU 7.2 with compress on, and the RAM it then
    holds is what `vmig ram extract` and the final page state say: new data of other lengths, a
    record that names its block (QEMU's never do; its loader reads the name all the same), and a
    zlib stream that ends after 100 bytes, over a page a normal record wrote just before (QEMU
    keeps the rest of that page)."""
    stream = decode(RAW)
    found = compressed(stream)
    pc = [n for n, run in enumerate(found) if run.block == "pc.ram"]
    whole = bytes(range(256)) * (PS // 256)
    victims = {pc[0]: zlib.compress(whole, 9), pc[1]: zlib.compress(b"\x5a" * 100, 1),
               pc[2]: zlib.compress(bytes(PS), 9), pc[3]: zlib.compress(whole[::-1], 6)}
    short, named = found[pc[1]], found[pc[3]]
    before = bytes([0xA5]) * PS
    edited = with_data(stream, victims)
    # the short one comes after a normal page of 0xa5 at its offset; pc[3] names its block
    edited = replaced(edited, lambda run: [RamPages("page", run.block, run.offset, 1, True,
                                                    data=(Blob(0, PS, before),)), replace(run, named=False)]
                      if run.kind == "compressed" and run.offset == short.offset and run.block == short.block
                      else replace(run, named=True) if run.kind == "compressed" and run.offset == named.offset
                      and run.block == named.block else run)
    path = written(tmp_path, "edited.bin", encoded(edited))
    again = decode(str(path))
    assert [r.named for r in compressed(again) if r.offset == named.offset and r.block == named.block] == [True]
    verdict = load(qemu72, path, META["machine"], devices=META["devices"], capabilities=["compress"],
                   memory=META["memory"], hash_ram=True, timeout=60)
    assert verdict.accepted, verdict.errors
    got, nonzero = main_ram_of_extract(path, tmp_path)
    assert (got, nonzero) == (verdict.guest_ram["sha256"], verdict.guest_ram["nonzero_pages"])
    with Source.open(str(path)) as src:
        state = PageState(src)
        decode(src, ram_runs=False, on_ram_item=state.feed)
        pages = state.blocks["pc.ram"]
        assert state.read_page(pages, short.offset // PS) == b"\x5a" * 100 + before[100:]
        assert pages.page(short.offset // PS).kind == "compressed"
        assert state.read_page(pages, named.offset // PS) == whole[::-1]
    # without compress QEMU 7.2 refuses it as it refused the capture
    refused = load(qemu72, path, META["machine"], devices=META["devices"], memory=META["memory"], timeout=60)
    assert not refused.accepted and refused.errors[:1] == ["Received an unexpected compressed page"]


# ---------------------------------------------------------------- vmig check against QEMU's verdicts


@pytest.mark.parametrize("entry", META["qemu_loads"], ids=lambda e: f"{e.get('qemu', '7.2')}{e['capabilities']}")
def test_check_gives_qemus_verdict(entry: dict[str, Any]) -> None:
    """Each load the capture script recorded (QEMU 7.2 with and without compress, QEMU 10.0):
    `vmig check` gives the same verdict and QEMU's own first messages."""
    stream = decode(RAW)
    qemu = entry.get("qemu", META["qemu"]["version"])
    dest = destination_for(stream, machine=META["machine"], qemu=".".join(qemu.split(".")[:2]),
                           devices=META["devices"], capabilities=entry["capabilities"])
    verdict = check_stream(stream, dest)
    assert verdict.loadable == entry["accepted"], verdict.findings
    if not entry["accepted"]:
        assert verdict.first.rule_id == "compressed-page"
        assert list(verdict.qemu_output[:2]) == entry["errors"][:2]


def test_check_cli_against_a_newer_destination() -> None:
    result = CliRunner().invoke(cli, ["check", "-q", "--brief", "--qemu", "10.0",
                                      str(COMPRESS / META["stored_as"]["file"])])
    assert result.exit_code == 1
    assert "Unknown combination of migration flags: 0x120" in result.output


# ---------------------------------------------------------------- what QEMU's loader refuses


def record_at(n: int = 0) -> tuple[RamPages, int, int]:
    """The n-th compressed run, the offset of its length word and of its data."""
    run = compressed(decode(RAW))[n]
    (data,) = run.data
    return run, data.offset - 4, data.offset


def set_length(data: bytes, at: int, length: int) -> bytes:
    return data[:at] + struct.pack(">I", length) + data[at + 4:]


@pytest.mark.parametrize("length,shown", [(compress_bound(PS) + 1, compress_bound(PS) + 1), (0x80000000, -(1 << 31)),
                                          (0xFFFFFFFF, -1)])
def test_length_qemu_refuses(length: int, shown: int) -> None:
    _, at, _ = record_at()
    with pytest.raises(CorruptError) as exc:
        decode(set_length(RAW, at, length))
    assert exc.value.offset == at and exc.value.path[-1] == "length"
    assert f"Invalid compressed data length: {shown}" in str(exc.value)


def test_length_at_the_bound_is_read() -> None:
    """compressBound(4096) = 4110 bytes is the most QEMU takes: a record that long is read (its
    zlib stream padded with bytes after its end, which zlib ignores)."""
    stream = decode(RAW)
    padded = zlib.compress(bytes(PS), 9)
    padded += bytes(compress_bound(PS) - len(padded))
    again = decode(encoded(with_data(stream, {0: padded})))
    assert compressed(again)[0].data[0].length == compress_bound(PS) == 4110


@pytest.mark.parametrize("data,message", [
    pytest.param(b"\x00" * 64, "is not zlib data", id="not-zlib"),
    pytest.param(zlib.compress(bytes(PS + 1)), "inflates to more than one 4096-byte page", id="more-than-a-page"),
    pytest.param(zlib.compress(bytes(range(256)) * 16)[:-6], "ends before its zlib stream does", id="stream-not-ended"),
    pytest.param(b"", "ends before its zlib stream does", id="empty"),
    pytest.param(zlib.compress(bytes(PS))[:-1] + b"\x00", "is not zlib data", id="bad-checksum"),
])
def test_data_qemu_refuses(data: bytes, message: str) -> None:
    stream = decode(RAW)
    blob = encoded(with_data(stream, {3: data}))
    at = compressed(decode(RAW))[3].span.offset
    with pytest.raises(CorruptError) as exc:
        decode(blob)
    assert message in str(exc.value) and "decompress data failed" in str(exc.value)
    assert exc.value.offset == at + 12 and exc.value.path[-1] == "data"


def test_short_inflate_is_loaded() -> None:
    """A zlib stream that ends before a full page is what QEMU loads (only the bytes it holds are
    written): the walk takes it."""
    stream = decode(RAW)
    blob = encoded(with_data(stream, {3: zlib.compress(b"abc")}))
    assert compressed(decode(blob))[3].data[0].length == len(zlib.compress(b"abc"))


@pytest.mark.parametrize("cut,message", [(2, "expected its 4-byte length"), (4 + 10, "expected")])
def test_truncated_record(cut: int, message: str, tmp_path: Path) -> None:
    run, at, data_at = record_at()
    with pytest.raises(TruncatedError) as exc:
        decode(RAW[:at + cut])
    assert message in str(exc.value) and "compressed page" in str(exc.value)
    # the CLI: one line, exit status 2
    path = written(tmp_path, "cut.bin", RAW[:at + cut])
    result = CliRunner().invoke(cli, ["decode", str(path)])
    assert result.exit_code == 2
    assert_one_error_line(result.stderr if hasattr(result, "stderr") else result.output)


def test_cli_refuses_bad_length_in_one_line(tmp_path: Path) -> None:
    _, at, _ = record_at()
    path = written(tmp_path, "bad.bin", set_length(RAW, at, 5000))
    result = CliRunner().invoke(cli, ["decode", str(path)])
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr if hasattr(result, "stderr") else result.output)
    assert "Invalid compressed data length: 5000" in line and f"{at:#x}" in line
