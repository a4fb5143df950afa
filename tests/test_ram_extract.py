"""`vmig ram extract`: block files equal what a loader would hold, holes where nothing is set,
safe names from hostile idstrs, nothing written outside DIR, nothing left behind on error.

The expected RAM is computed here, independently of vfio_ramfb_mig.ram (extract and the final
page state): the model's runs (a decode that keeps them) are applied in stream order to one
bytearray per block, reading page payloads with RamPages.payload_offset and XBZRLE deltas with
wire.xbzrle.xbzrle_apply.
Streams with repeated pages, ZERO-after-PAGE, XBZRLE, hostile names and mapped-ram are
crafted (no capture has them): from a real capture plus one more RAM section, or built
whole from the model with codec.encode.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import (
    PAGE as PS,
    assert_one_error_line,
    mapped_ram_stream,
    page_run,
    synthetic,
    with_part_before_end,
    write_big_stream,
    xbzrle_run,
    zero_run,
)
from paths import CAPTURES

from vfio_ramfb_mig import Source, decode, encode_bytes
from vfio_ramfb_mig.ram import extract as ramextract
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.errors import CorruptError, InputError, TruncatedError, VmigError
from vfio_ramfb_mig.model import (
    Eof,
    Header,
    MigrationStream,
    RamBody,
    RamMemSize,
    RamPages,
)
from vfio_ramfb_mig.ram.extract import MANIFEST, extract_ram, file_names
from vfio_ramfb_mig.ram.state import bit_runs
from vfio_ramfb_mig.wire.xbzrle import apply_delta as xbzrle_decode
from vfio_ramfb_mig.wire.xbzrle import xbzrle_apply

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
CAPTURE_CASES = [
    "qemu-10.0.2__pc-q35-8.2__ramfb+booted",
    "qemu-7.2.22__pc-q35-7.2__ramfb+booted",
    "qemu-10.0.2__pc-q35-10.0__ramfb+cap-x-ignore-shared",
    "qemu-10.0.2__pc-q35-10.0__ramfb+novmdesc",
    "qemu-10.0.2__pc-i440fx-8.1__plain",
]
SAFE_NAME = re.compile(r"^[A-Za-z0-9@+_][A-Za-z0-9._@+-]*\.bin$")


def vmig(*args: str):
    """Run the CLI (its `ram` group is registered by main)."""
    return CliRunner().invoke(cli, list(args))


# ---------------------------------------------------------------- the independent oracle


def expected_ram(data: bytes) -> tuple[dict[str, bytearray], dict[str, dict[int, str]]]:
    """Each block's final contents, and the kind of the last record of every page sent."""
    stream = decode(data)
    ram: dict[str, bytearray] = {}
    last: dict[str, dict[int, str]] = {}
    for section in stream.sections:
        if not isinstance(section.body, RamBody):
            continue
        ps = section.body.page_size
        for item in section.body.items:
            if isinstance(item, RamMemSize):
                for block in item.blocks:
                    ram[block.idstr] = bytearray(block.used_length)
                    last[block.idstr] = {}
            elif isinstance(item, RamPages):
                mem = ram[item.block]
                for i in range(item.count):
                    at = item.offset + i * ps
                    if item.kind == "page":
                        src = item.payload_offset(i, ps)
                        mem[at:at + ps] = data[src:src + ps]
                    elif item.kind == "zero":
                        mem[at:at + ps] = bytes((item.fill,)) * ps
                    else:
                        mem[at:at + ps] = xbzrle_apply(bytes(mem[at:at + ps]), item.delta)
                    last[item.block][at // ps] = item.kind
    return ram, last


def data_pages(path: Path) -> set[int]:
    """Pages of a file that hold data (not holes), by SEEK_DATA/SEEK_HOLE."""
    pages: set[int] = set()
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            pages.update(range(start // PS, -(-end // PS)))
            pos = end
    finally:
        os.close(fd)
    return pages


@pytest.fixture(scope="module")
def holes_seen(tmp_path_factory) -> bool:
    """Does this file system report holes page by page?"""
    if not hasattr(os, "SEEK_DATA"):
        return False
    probe = tmp_path_factory.mktemp("probe") / "sparse"
    with open(probe, "wb") as f:
        f.seek(PS * 8)
        f.write(b"x" * PS)
        f.truncate(PS * 16)
    return data_pages(probe) == {8}


def check_extract(data: bytes, out: Path, holes: bool, blocks: tuple[str, ...] = ()) -> dict:
    """The files in `out` are the oracle's RAM: sizes, contents, holes; returns the manifest."""
    ram, last = expected_ram(data)
    manifest = json.loads((out / MANIFEST).read_text())
    chosen = [b for b in ram if not blocks or b in blocks]
    assert [b["idstr"] for b in manifest["blocks"]] == chosen
    assert sorted(os.listdir(out)) == sorted([MANIFEST] + [b["file"] for b in manifest["blocks"]])
    for entry in manifest["blocks"]:
        path = out / entry["file"]
        mem = ram[entry["idstr"]]
        assert path.stat().st_size == entry["used_length"] == len(mem)
        assert path.read_bytes() == mem, entry["idstr"]
        if holes:
            have = data_pages(path)
            sent = {page for page, kind in last[entry["idstr"]].items() if kind in ("page", "xbzrle")}
            assert sent <= have, f"{entry['idstr']}: pages with data are holes: {sorted(sent - have)[:5]}"
            assert not have - sent, f"{entry['idstr']}: zero/unsent pages hold data: {sorted(have - sent)[:5]}"
    return manifest


# ---------------------------------------------------------------- captures


@pytest.mark.parametrize("name", CAPTURE_CASES)
def test_extract_capture(tmp_path: Path, holes_seen: bool, name: str) -> None:
    path = CAPTURES / f"{name}.bin"
    out = tmp_path / "ram"
    result = vmig("ram", "extract", str(path), str(out))
    assert result.exit_code == 0, result.output
    manifest = check_extract(path.read_bytes(), out, holes_seen)
    counts = {}
    for s in decode(str(path)).sections:
        if isinstance(s.body, RamBody):
            for block, per in s.body.block_counts().items():
                for kind, n in per.items():
                    counts.setdefault(block, {"page": 0, "zero": 0, "xbzrle": 0})[kind] += n
    for entry in manifest["blocks"]:
        assert entry["records"] == counts.get(entry["idstr"], {"page": 0, "zero": 0, "xbzrle": 0})
    assert manifest["page_size"] == PS and manifest["mapped_ram"] is False
    assert manifest["source"]["size"] == path.stat().st_size


def test_capture_names_and_cli_summary(tmp_path: Path) -> None:
    result = vmig("ram", "extract", str(BOOTED), str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "pc.ram -> pc.ram.bin  16,777,216 bytes  (148 normal, 3948 zero)" in result.stdout
    assert "/rom@etc/acpi/tables -> rom@etc_acpi_tables.bin" in result.stdout
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        ["manifest.json", "pc.ram.bin", "rom@etc_acpi_tables.bin", "pc.bios.bin", "pc.rom.bin",
         "rom@etc_table-loader.bin", "rom@etc_acpi_rsdp.bin"])
    quiet = vmig("ram", "extract", "--quiet", "--force", str(BOOTED), str(tmp_path / "out"))
    assert quiet.exit_code == 0 and quiet.stdout == result.stdout and quiet.stderr == ""


def test_progress_reaches_the_end(tmp_path: Path) -> None:
    for data in (BOOTED.read_bytes(), mapped_ram_stream([("pc.ram", 64 * PS, {1: b"x" * PS, 9: b"y" * PS}, set())])):
        seen: list[int] = []
        extract_ram(Source.from_bytes(data), str(tmp_path / f"out{len(data)}"), progress=seen.append)
        assert seen and seen == sorted(seen) and seen[-1] == len(data)


def test_block_option(tmp_path: Path, holes_seen: bool) -> None:
    out = tmp_path / "out"
    result = vmig("ram", "extract", "--block", "pc.bios", "--block", "/rom@etc/acpi/rsdp", str(BOOTED), str(out))
    assert result.exit_code == 0, result.output
    check_extract(BOOTED.read_bytes(), out, holes_seen, blocks=("pc.bios", "/rom@etc/acpi/rsdp"))
    result = vmig("ram", "extract", "--block", "nope", str(BOOTED), str(tmp_path / "other"))
    assert result.exit_code == 2
    assert "no RAM block 'nope'" in assert_one_error_line(result.stderr, wants="nope")
    assert "pc.ram" in result.stderr  # the hint lists the blocks
    assert not (tmp_path / "other").exists()


def test_source_closes_after_extract(tmp_path: Path) -> None:
    """No view of the mapped input outlives the extract, done or failed mid-walk (a live view
    would keep the Source from closing, and that error would hide the real one)."""
    with Source.open(str(BOOTED)) as src:
        extract_ram(src, str(tmp_path / "a"))
        with pytest.raises(VmigError):
            extract_ram(src, str(tmp_path / "a"))  # exists: fails after the layout pass
    assert src.buf.closed
    cut = tmp_path / "cut.bin"
    cut.write_bytes(BOOTED.read_bytes()[:500_000])
    with pytest.raises(TruncatedError), Source.open(str(cut)) as src:
        extract_ram(src, str(tmp_path / "b"))
    assert src.buf.closed and not (tmp_path / "b").exists()


# ---------------------------------------------------------------- crafted: repeats, ZERO after PAGE, XBZRLE


def normal_pages(data: bytes, block: str) -> list[int]:
    _, last = expected_ram(data)
    return sorted(page * PS for page, kind in last[block].items() if kind == "page")


def test_multi_pass_stream(tmp_path: Path, holes_seen: bool) -> None:
    data = BOOTED.read_bytes()
    normal = normal_pages(data, "pc.ram")
    p0, p1, p2, p3 = normal[:4]
    old, _ = expected_ram(data)
    zeroed = next(p * PS for p in range(4096) if p * PS not in normal)
    delta = b"\x0a\x05HELLO" + b"\x64\x03abc"  # keep 10, write 5; keep 100, write 3
    runs = [
        page_run("pc.ram", p0, b"\xa5" * PS),  # a page sent again: the later record wins
        zero_run("pc.ram", p1),  # ZERO after PAGE: the page reads zero again (and is a hole)
        xbzrle_run("pc.ram", p2, delta),  # applied to the page as the first pass left it
        page_run("pc.ram", zeroed, b"\x11" * PS, b"\x22" * PS),  # data over zero pages
        page_run("pc.ram", p3, b"\x33" * PS),  # twice in one section: the second wins
        page_run("pc.bios", 0, b"\x44" * PS),
        page_run("pc.ram", p3, b"\x55" * PS),
        zero_run("pc.ram", zeroed + PS, named=False),  # CONTINUE: the block of the record before
    ]
    crafted = with_part_before_end(data, runs)
    path = tmp_path / "multi.bin"
    path.write_bytes(crafted)
    out = tmp_path / "out"
    result = vmig("ram", "extract", str(path), str(out))
    assert result.exit_code == 0, result.output
    check_extract(crafted, out, holes_seen)
    ram = (out / "pc.ram.bin").read_bytes()
    assert ram[p0:p0 + PS] == b"\xa5" * PS
    assert ram[p1:p1 + PS] == bytes(PS) and old["pc.ram"][p1:p1 + PS] != bytes(PS)
    want = bytearray(old["pc.ram"][p2:p2 + PS])
    want[10:15], want[115:118] = b"HELLO", b"abc"
    assert ram[p2:p2 + PS] == want
    assert ram[zeroed:zeroed + 2 * PS] == b"\x11" * PS + bytes(PS)
    assert ram[p3:p3 + PS] == b"\x55" * PS
    assert (out / "pc.bios.bin").read_bytes()[:PS] == b"\x44" * PS
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["blocks"][0]["records"] == {"page": 148 + 5, "zero": 3948 + 2, "xbzrle": 1}
    if holes_seen:
        assert p1 // PS not in data_pages(out / "pc.ram.bin")


def test_zero_record_with_fill_byte(tmp_path: Path) -> None:
    """QEMU only sends fill 0 now; an older stream's fill byte is what the page holds."""
    data = BOOTED.read_bytes()
    p0 = normal_pages(data, "pc.ram")[0]
    crafted = with_part_before_end(data, [zero_run("pc.ram", p0, 2, fill=0x5A)])
    extract_ram(Source.from_bytes(crafted), str(tmp_path / "out"))
    ram = (tmp_path / "out" / "pc.ram.bin").read_bytes()
    assert ram[p0:p0 + 2 * PS] == b"\x5a" * 2 * PS
    check_extract(crafted, tmp_path / "out", holes=False)


# ---------------------------------------------------------------- synthetic streams


HOSTILE = [
    "../../etc/passwd", "", ".", "..", "/", "a/../../b", "x" * 255, "x" * 254 + "y",
    "nul\x00byte\x1b[31m\n", "\udcff\udcfe", "pc.bios", "PC.BIOS", "a:b", "a_b", "a/b",
    "manifest.json", "manifest", ".hidden", "hidden", "-rf", "CON", "é",
]


def test_hostile_block_names(tmp_path: Path, holes_seen: bool) -> None:
    blocks = [(name, 2 * PS) for name in HOSTILE]
    runs = [page_run(name, PS * (k % 2), bytes([k + 1]) * PS) for k, name in enumerate(HOSTILE)]
    data = synthetic(blocks, runs[:10], runs[10:])
    path = tmp_path / "hostile.bin"
    path.write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    before = {str(p) for p in tmp_path.rglob("*")}
    out = work / "out"
    result = vmig("ram", "extract", str(path), str(out))
    assert result.exit_code == 0, result.output
    manifest = check_extract(data, out, holes_seen)
    files = [b["file"] for b in manifest["blocks"]]
    assert [b["idstr"] for b in manifest["blocks"]] == HOSTILE  # JSON keeps every name exactly
    assert len({f.lower() for f in files}) == len(files)
    for name in files:
        assert SAFE_NAME.match(name) and len(name.encode()) <= 255 and "/" not in name, name
    for k, entry in enumerate(manifest["blocks"]):
        content = (out / entry["file"]).read_bytes()
        assert content[PS * (k % 2):PS * (k % 2) + PS] == bytes([k + 1]) * PS
    after = {str(p) for p in tmp_path.rglob("*")}
    assert after - before == {str(out)} | {str(out / f) for f in files + [MANIFEST]}
    assert not (tmp_path / "etc").exists() and not (work / "etc").exists()
    # same list, same names: the mapping does not depend on which blocks are asked for
    assert file_names(HOSTILE) == {b["idstr"]: b["file"] for b in manifest["blocks"]}
    again = tmp_path / "again"
    assert vmig("ram", "extract", "--block", "..", "--block", "\udcff\udcfe", str(path), str(again)).exit_code == 0
    picked = json.loads((again / MANIFEST).read_text())["blocks"]
    assert [b["file"] for b in picked] == [file_names(HOSTILE)[".."], file_names(HOSTILE)["\udcff\udcfe"]]


def test_file_names_rules() -> None:
    names = file_names(["pc.ram", "/rom@etc/acpi/tables", "0000:00:02.0/e1000e.rom", "", ".", "x" * 255])
    assert names["pc.ram"] == "pc.ram.bin"
    assert names["/rom@etc/acpi/tables"] == "rom@etc_acpi_tables.bin"
    assert names["0000:00:02.0/e1000e.rom"] == "0000_00_02.0_e1000e.rom.bin"
    assert names[""] != names["."] and names[""].startswith("block-") and names["."].startswith("block-")
    assert len(names["x" * 255]) == 120 + 11 + 4 and re.fullmatch(r"x{120}-[0-9a-f]{10}\.bin", names["x" * 255])
    assert file_names(["a:b", "a_b"]) == {"a:b": "a_b-" + ramextract._digest("a:b") + ".bin",
                                          "a_b": "a_b-" + ramextract._digest("a_b") + ".bin"}


def test_xbzrle_decode_matches_and_refuses() -> None:
    page = bytes(range(256)) * 16
    for delta in (b"\x00\x02ab", b"\x0a\x05HELLO\x64\x03abc", b"\x80\x1f\x01Z", b"\x00\x80\x20" + b"q" * 4096):
        mine = bytearray(page)
        xbzrle_decode(mine, delta)
        assert bytes(mine) == xbzrle_apply(page, delta)
    bad = [
        b"\x05",  # a run length with nothing after it
        b"\x05\x00",  # an empty run of new bytes
        b"\x00\x02ab\x00\x01c",  # an empty run of kept bytes after the first pair
        b"\x80\x80\x01",  # a run length over 14 bits
        b"\x80\x21\x01z",  # keeps past the page (0x1080 > 4096)
        b"\x00\x05abc",  # new bytes past the delta
        b"\xff\x1f\x02ab",  # new bytes past the page
    ]
    for delta in bad:
        with pytest.raises(ValueError):
            xbzrle_decode(bytearray(page), delta)


def test_bad_xbzrle_and_page_past_block_end_leave_nothing(tmp_path: Path) -> None:
    blocks = [("a", 4 * PS), ("b", 2 * PS)]
    good = [page_run("a", 0, b"\x01" * PS, b"\x02" * PS), page_run("b", 0, b"\x03" * PS)]
    for late, error, words in (
            (xbzrle_run("a", 0, b"\x00\x09abc"), CorruptError, "bad XBZRLE delta"),
            (page_run("b", PS, b"\x04" * PS, b"\x05" * PS), CorruptError, "run past the end of block 'b'")):
        data = synthetic(blocks, good, [late])
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        with pytest.raises(error, match=words):
            extract_ram(Source.from_bytes(data), str(out))
        assert os.listdir(out) == []


def test_mapped_ram_stream(tmp_path: Path, holes_seen: bool) -> None:
    present = {0: b"\x01" * PS, 1: b"\x02" * PS, 7: b"\x07" * PS, 8: b"\x08" * PS, 70: b"\x46" * PS}
    data = mapped_ram_stream([("pc.ram", 80 * PS, present, {3, 71}), ("/rom@etc/x", PS, {0: b"r" * PS}, set()),
                              ("empty", 2 * PS, {}, {1})])
    stream = decode(data)
    assert stream.configuration.machine == "pc-q35-10.0"
    assert [f.value for sub in stream.configuration.subsections for f in sub.fields] == [1, ["mapped-ram"]]
    (tmp_path / "m.bin").write_bytes(data)
    out = tmp_path / "out"
    result = vmig("ram", "extract", str(tmp_path / "m.bin"), str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["mapped_ram"] is True
    assert [(b["idstr"], b["file"], b["records"]) for b in manifest["blocks"]] == [
        ("pc.ram", "pc.ram.bin", {"present": 5}), ("/rom@etc/x", "rom@etc_x.bin", {"present": 1}),
        ("empty", "empty.bin", {"present": 0})]
    ram = (out / "pc.ram.bin").read_bytes()
    want = bytearray(80 * PS)
    for p, content in present.items():
        want[p * PS:(p + 1) * PS] = content
    assert ram == want  # stale pages (bit clear) read as zero
    assert (out / "rom@etc_x.bin").read_bytes() == b"r" * PS
    assert (out / "empty.bin").read_bytes() == bytes(2 * PS)
    if holes_seen:
        assert data_pages(out / "pc.ram.bin") == set(present)
        assert data_pages(out / "empty.bin") == set()


def _set_ranges(bitmap: bytes, count: int) -> list[tuple[int, int]]:
    return [(a, b) for a, b, bit in bit_runs(bitmap, count) if bit]


def test_set_ranges() -> None:
    bits = [0, 1, 2, 7, 8, 9, 15, 16, 40, 63, 64, 65]
    bitmap = sum(1 << b for b in bits).to_bytes(16, "little")
    ranges = list(_set_ranges(bitmap, 66))
    assert [p for a, b in ranges for p in range(a, b)] == bits
    assert list(_set_ranges(b"\xff" * 8, 10)) == [(0, 10)]  # bits past the pages ignored
    assert list(_set_ranges(b"\x00\x00\xff", 16)) == []


@pytest.mark.qemu
def test_mapped_ram_capture_equals_plain_capture(tmp_path: Path, qemu10) -> None:
    """A VM that never ran holds the same RAM in two runs: its mapped-ram stream and its plain
    stream must extract to the same files."""
    from vfio_ramfb_mig.qemu import capture

    capture(qemu10, tmp_path / "mapped.bin", machine="pc-q35-10.0", capabilities=["mapped-ram"])
    capture(qemu10, tmp_path / "plain.bin", machine="pc-q35-10.0")
    for name in ("mapped", "plain"):
        assert vmig("ram", "extract", str(tmp_path / f"{name}.bin"), str(tmp_path / name)).exit_code == 0
    mapped = json.loads((tmp_path / "mapped" / MANIFEST).read_text())
    assert mapped["mapped_ram"] is True
    for entry in mapped["blocks"]:
        assert (tmp_path / "mapped" / entry["file"]).read_bytes() == (tmp_path / "plain" / entry["file"]).read_bytes()
    check_extract((tmp_path / "plain.bin").read_bytes(), tmp_path / "plain", holes=False)


# ---------------------------------------------------------------- the output directory


def test_truncated_stream_leaves_no_files(tmp_path: Path) -> None:
    data = BOOTED.read_bytes()
    stream = decode(data)
    part = next(s for s in stream.sections if s.idstr == "ram" and s.type == "section_part")
    start = next(s for s in stream.sections if s.idstr == "ram" and s.type == "section_start")
    eof = next(r for r in stream.records if isinstance(r, Eof))
    for cut in (start.span.offset + 40, part.span.offset + 20, part.span.offset + part.span.length // 2,
                part.span.end - 3, eof.span.offset):
        path = tmp_path / f"cut-{cut}.bin"
        path.write_bytes(data[:cut])
        fresh, existing = tmp_path / f"fresh-{cut}", tmp_path / f"existing-{cut}"
        existing.mkdir()
        (existing / "keep.txt").write_text("mine")
        for out in (fresh, existing):
            result = vmig("ram", "extract", str(path), str(out))
            assert result.exit_code == 2, result.output
            assert_one_error_line(result.stderr)
        assert not fresh.exists()
        assert os.listdir(existing) == ["keep.txt"]


def test_existing_files_need_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert vmig("ram", "extract", str(BOOTED), str(out)).exit_code == 0
    (out / "pc.rom.bin").write_bytes(b"mine")
    listing = sorted(os.listdir(out))
    result = vmig("ram", "extract", str(BOOTED), str(out))
    assert result.exit_code == 2
    assert "exists" in assert_one_error_line(result.stderr, wants="exists") and "--force" in result.stderr
    assert sorted(os.listdir(out)) == listing and (out / "pc.rom.bin").read_bytes() == b"mine"
    result = vmig("ram", "extract", "--force", str(BOOTED), str(out))
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == listing and (out / "pc.rom.bin").stat().st_size == 128 * 1024


def test_file_made_during_the_walk_is_kept_and_the_rest_undone(tmp_path: Path, monkeypatch) -> None:
    """A file that appears under a target name while the stream is walked is not replaced (no
    --force), and the files this run had already put in place are taken back."""
    out = tmp_path / "out"
    out.mkdir()
    real = ramextract._Writer.block

    def block(self, pages, target):
        if not (out / "pc.rom.bin").exists():
            (out / "pc.rom.bin").write_bytes(b"theirs")
        real(self, pages, target)

    monkeypatch.setattr(ramextract._Writer, "block", block)
    with pytest.raises(InputError, match="exists"):
        extract_ram(str(BOOTED), str(out))
    assert os.listdir(out) == ["pc.rom.bin"] and (out / "pc.rom.bin").read_bytes() == b"theirs"


def test_symlinks_are_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    result = vmig("ram", "extract", str(BOOTED), str(link))
    assert result.exit_code == 2 and "symbolic link" in assert_one_error_line(result.stderr, wants="symbolic")
    assert os.listdir(elsewhere) == []

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (out / "pc.ram.bin").symlink_to(victim)
    for extra in ((), ("--force",)):
        result = vmig("ram", "extract", *extra, str(BOOTED), str(out))
        assert result.exit_code == 2 and "symbolic link" in result.stderr
        assert victim.read_bytes() == b"precious" and sorted(os.listdir(out)) == ["pc.ram.bin"]
    (out / "pc.ram.bin").unlink()
    (out / MANIFEST).mkdir()
    result = vmig("ram", "extract", "--force", str(BOOTED), str(out))
    assert result.exit_code == 2 and "not a file" in result.stderr
    assert os.listdir(out) == [MANIFEST]


def test_dir_is_a_file_or_has_no_parent(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for target in (tmp_path / "file", tmp_path / "no" / "such" / "dir"):
        result = vmig("ram", "extract", str(BOOTED), str(target))
        assert result.exit_code == 2
        assert_one_error_line(result.stderr, wants=str(target))
    assert not (tmp_path / "no").exists()


def test_not_a_stream_and_no_ram(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a migration stream at all")
    result = vmig("ram", "extract", str(junk), str(tmp_path / "out"))
    assert result.exit_code == 2 and "QEVM" in result.stderr
    no_ram = tmp_path / "noram.bin"
    no_ram.write_bytes(encode_bytes(MigrationStream((Header(magic=0x5145564D, version=3), Eof()), 0)))
    result = vmig("ram", "extract", str(no_ram), str(tmp_path / "out"))
    assert result.exit_code == 2 and "no RAM block list" in result.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- memory


MEASURE = """
import resource, sys
from vfio_ramfb_mig.ram.listing import write_page_list
from vfio_ramfb_mig.ram.extract import extract_ram
from vfio_ramfb_mig import decode
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1].startswith("extract"):
    extract_ram(sys.argv[2], sys.argv[3])
else:
    with open(sys.argv[3], "w") as out:
        write_page_list(sys.argv[2], out, sys.argv[1] == "json")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("what", ["extract", "extract-mapped", "text", "json"])
def test_memory_stays_flat(tmp_path: Path, what: str) -> None:
    """A 160 MiB stream is walked (twice, for the listing) with well under that much memory:
    walked pages are let go, and no view of the input outlives its run."""
    import subprocess
    import sys

    path = tmp_path / "big.bin"
    write_big_stream(path, 40960, mapped=what == "extract-mapped")
    target = tmp_path / ("out" if what.startswith("extract") else "list.txt")
    result = subprocess.run([sys.executable, "-c", MEASURE, what, str(path), str(target)], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    grown_kib = int(result.stdout)
    assert grown_kib < 48 * 1024, f"{what}: peak memory grew by {grown_kib} KiB for a 160 MiB stream"
    if what.startswith("extract"):
        assert (target / "pc.ram.bin").stat().st_size == 40960 * PS
        with open(target / "pc.ram.bin", "rb") as f:
            f.seek(12345 * PS)
            assert f.read(PS) == bytes([12345 % 251 + 1]) * PS
    else:
        with open(target) as f:
            assert sum(1 for _ in f) == 40960
