"""Hostile RAM in tiny inputs (issue 16): huge block lengths, page offsets far past a block's end,
page runs of absurd counts in a JSON document. Each is refused with one line and exit 2 (or, for
`vmig check`, QEMU's own refusal), in little memory and time, leaving no file behind.

QEMU's facts: a page whose offset is at or past its block's used_length is refused by the loader
("Illegal RAM offset", migration/ram.c host_from_ram_block_offset); the block list alone
allocates nothing in vmig, and pages are bounded by what the stream can hold (ram/limits.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_one_error_line, synthetic, zero_run

from vfio_ramfb_mig import Source, decode
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.errors import CorruptError, LimitError
from vfio_ramfb_mig.golden import golden_of_path
from vfio_ramfb_mig.ram.extract import extract_ram
from vfio_ramfb_mig.ram.limits import check_claim, parse_size

PS = 4096


def vmig(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def tiny(used_length: int, offset: int = 0) -> bytes:
    """Header, RAM START listing one block 'pc.ram' of `used_length`, one ZERO record at `offset`
    in a RAM END, EOF: a few dozen bytes."""
    return synthetic([("pc.ram", used_length)], [zero_run("pc.ram", offset)])


def peak_rss_kib(code: str, *args: str) -> tuple[int, str]:
    """Run `code` in a fresh interpreter: (its peak RSS growth in KiB, its stderr)."""
    wrapped = ("import resource, sys\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
               f"try:\n" + "".join(f"    {line}\n" for line in code.splitlines()) +
               "except Exception as exc:\n    print(type(exc).__name__, exc, file=sys.stderr)\n"
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    result = subprocess.run([sys.executable, "-c", wrapped, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]), result.stderr


@pytest.mark.parametrize("used_length", [1 << 63, 1 << 43], ids=["2^63", "2^43"])
def test_extract_of_a_huge_block_in_a_tiny_stream_is_refused(tmp_path: Path, used_length: int) -> None:
    stream = tmp_path / "tiny.bin"
    stream.write_bytes(tiny(used_length))
    assert stream.stat().st_size < 100
    out = tmp_path / "out"
    result = vmig("ram", "extract", str(stream), str(out))
    assert result.exit_code == 2, result.output
    line = assert_one_error_line(result.stderr, wants="claim")
    assert "more than this" in line and "byte stream can hold" in line and "--max-ram" in result.stderr
    assert not out.exists()


def test_extract_limit_can_be_raised_and_lowered(tmp_path: Path) -> None:
    stream = tmp_path / "tiny.bin"
    stream.write_bytes(tiny(1 << 30, offset=PS))
    # 1 GiB is within the default limit: a sparse file of the block's length
    result = vmig("ram", "extract", str(stream), str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "pc.ram.bin").stat().st_size == 1 << 30
    result = vmig("ram", "extract", "--max-ram", "512M", str(stream), str(tmp_path / "b"))
    assert result.exit_code == 2 and "limit of 512 MiB" in result.stderr and not (tmp_path / "b").exists()
    result = vmig("ram", "extract", str(stream), str(tmp_path / "c"), env={"VMIG_MAX_RAM": "256M"})
    assert result.exit_code == 2 and "limit of 256 MiB" in result.stderr
    result = vmig("ram", "extract", "--max-ram", "lots", str(stream), str(tmp_path / "d"))
    assert result.exit_code == 2 and "not a size" in result.stderr


def test_limits() -> None:
    assert parse_size("64G") == 64 << 30 and parse_size("512m") == 512 << 20 and parse_size("4096") == 4096
    assert parse_size("1TiB") == 1 << 40
    with pytest.raises(ValueError):
        parse_size("-1G")
    check_claim(1000, PS, 9000, 0, "x")  # 9000 bytes hold 1000 records
    check_claim(10, PS, 0, 10 * PS, "x")  # within the limit
    with pytest.raises(LimitError, match="x 40 KiB"):
        check_claim(10, PS, 80, 9 * PS, "x")


@pytest.mark.parametrize("shift", [41, 46])
def test_page_offset_far_past_the_block(tmp_path: Path, shift: int) -> None:
    """A page record at 2^41 (or 2^46) in a 16 MiB block: diff, golden and extract refuse it in
    little memory (a page table was sized by the offset: 4 GiB, or a MemoryError); check says QEMU
    refuses it as QEMU does."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(tiny(16 << 20, offset=1 << shift))
    good = tmp_path / "good.bin"
    good.write_bytes(tiny(16 << 20))
    result = vmig("diff", str(good), str(bad))
    assert result.exit_code == 2, result.output
    line = assert_one_error_line(result.stderr, wants="past the end of block 'pc.ram'")
    assert f"Illegal RAM offset {1 << shift:x}" in line
    result = vmig("check", "--target", "pc-q35-10.0", str(bad))
    assert result.exit_code == 1, result.output
    assert f"Illegal RAM offset {1 << shift:x}" in result.stdout
    with pytest.raises(CorruptError, match="past the end of block"):
        golden_of_path(bad)
    with pytest.raises(CorruptError, match="past the end of block"):
        extract_ram(str(bad), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    grown, err = peak_rss_kib("from vfio_ramfb_mig.cli.main import cli\n"
                              "cli(['diff', sys.argv[1], sys.argv[2]], standalone_mode=False)", str(good), str(bad))
    assert "past the end of block" in err and grown < 64 * 1024


def test_continue_records_past_a_small_block_are_refused(tmp_path: Path) -> None:
    """One record names a 4 KiB block and 999 more CONTINUE it (the walk put them all in that
    block): the first at 0x1000 is QEMU's "Illegal RAM offset 1000" for diff, golden, extract and
    check, and decode still shows every record."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(synthetic([("pc.ram", 16 << 20), ("/rom@etc/acpi/rsdp", PS)],
                              [zero_run("pc.ram", 0), zero_run("/rom@etc/acpi/rsdp", 0, count=1000)]))
    good = tmp_path / "good.bin"
    good.write_bytes(synthetic([("pc.ram", 16 << 20), ("/rom@etc/acpi/rsdp", PS)],
                               [zero_run("pc.ram", 0), zero_run("/rom@etc/acpi/rsdp", 0)]))
    result = vmig("diff", str(good), str(bad))
    assert result.exit_code == 2, result.output
    line = assert_one_error_line(result.stderr, wants="past the end of block '/rom@etc/acpi/rsdp'")
    assert "1000 zero page(s) at 0x0" in line and "Illegal RAM offset 1000" in line
    result = vmig("check", "--target", "pc-q35-10.0", str(bad))
    assert result.exit_code == 1 and "Illegal RAM offset 1000" in result.stdout, result.output
    assert "Illegal RAM offset" not in vmig("check", "--target", "pc-q35-10.0", str(good)).stdout
    with pytest.raises(CorruptError, match="Illegal RAM offset 1000"):
        golden_of_path(bad)
    with pytest.raises(CorruptError, match="Illegal RAM offset 1000"):
        extract_ram(str(bad), str(tmp_path / "out"))
    runs = [i for s in decode(bad.read_bytes()).sections for i in s.body.items if getattr(i, "block", "") ==
            "/rom@etc/acpi/rsdp" and hasattr(i, "count")]
    assert [(r.offset, r.count) for r in runs] == [(0, 1000)]


def test_encode_of_an_absurd_page_run_is_refused_before_writing(tmp_path: Path) -> None:
    data = tiny(1 << 60)
    stream = tmp_path / "s.bin"
    stream.write_bytes(data)
    doc = json.loads(vmig("decode", "--json", str(stream)).stdout)
    run = next(item for r in doc["records"] if r.get("decoder") == "ram" for item in r["ram"]["items"]
               if item["kind"] == "zero")
    run["count"] = 1 << 39
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(doc))
    out = tmp_path / "out.bin"
    grown, err = peak_rss_kib("from vfio_ramfb_mig.cli.main import cli\n"
                              "cli(['encode', '--from-json', sys.argv[1], '-o', sys.argv[2]], standalone_mode=False)",
                              str(source), str(out))
    assert "the page runs write 2048 TiB" in err and grown < 64 * 1024
    result = vmig("encode", "--from-json", str(source), "-o", str(out))
    assert result.exit_code == 2 and "more than this" in assert_one_error_line(result.stderr, wants="page runs")
    assert set(os.listdir(tmp_path)) == {"s.bin", "doc.json"}  # no output, no temporary file
    run["count"], run["page_offset"] = 1, -PS
    source.write_text(json.dumps(doc))
    result = vmig("encode", "--from-json", str(source), "-o", str(out))
    assert result.exit_code == 2 and set(os.listdir(tmp_path)) == {"s.bin", "doc.json"}


def test_stream_with_pages_past_the_end_still_decodes() -> None:
    """decode stays lossless: the records are there to see; only what needs the final page state
    refuses them."""
    data = tiny(16 << 20, offset=1 << 41)
    stream = decode(data)
    assert stream.error is None
    from vfio_ramfb_mig.ram.state import PageState

    state = PageState.of(stream, Source.from_bytes(data))
    assert state.illegal and state.illegal[0].page_offset == 1 << 41
    assert state.blocks["pc.ram"].table is None  # nothing was allocated for it
