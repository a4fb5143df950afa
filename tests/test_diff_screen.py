"""`vmig diff A B` says whether the guests' screens differ: how many pixels, within which box."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from click.testing import CliRunner

from paths import CAPTURES
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.codec.decode import decode
from vfio_ramfb_mig.model import RamBody, RamPages, Section
from vfio_ramfb_mig.screen.config import CFG_OFFSETS, choose_display

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
UNBOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"


def diff_json(a: Path, b: Path, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["diff", "--json", *extra, str(a), str(b)])
    return result.exit_code, json.loads(result.stdout)


def screen_changes(doc: dict) -> list[dict]:
    return [c for c in doc["changes"] if c["group"] == "screen"]


def painted(tmp_path: Path) -> tuple[Path, int, int]:
    """The booted capture with the first 64 bytes of a framebuffer page the stream sends whole set
    to 0xff: (stream, the page's offset in the framebuffer, its offset in pc.ram)."""
    data = bytearray(BOOTED.read_bytes())
    stream = decode(bytes(data))
    cfg = choose_display(stream).cfg
    run = next(i for r in stream.records if isinstance(r, Section) and isinstance(r.body, RamBody)
               for i in r.body.items if isinstance(i, RamPages) and i.kind == "page" and i.block == "pc.ram"
               and cfg.addr <= i.offset < cfg.addr + cfg.size)
    at = run.payload_offset(0, 4096)
    data[at:at + 64] = b"\xff" * 64
    out = tmp_path / "painted.bin"
    out.write_bytes(bytes(data))
    return out, run.offset - cfg.addr, run.offset


def test_screens_that_differ(tmp_path: Path) -> None:
    b, fb_offset, _ = painted(tmp_path)
    status, doc = diff_json(BOOTED, b)
    assert status == 1
    (change,) = screen_changes(doc)
    # 64 bytes of XRGB8888 at a row start (the page offset is a multiple of the 4096-byte stride): 16 pixels
    row = fb_offset // 4096
    assert fb_offset % 4096 == 0 and change["count"] == 16
    assert change["new"]["bbox"] == [0, row, 16, row + 1] and change["new"]["size"] == [1024, 768]
    assert change["text"] == f"screens differ in 16 pixels, within 16x1 at (0, {row})"
    text = CliRunner().invoke(cli, ["diff", str(BOOTED), str(b)]).stdout
    assert f"screen  ~ screens differ in 16 pixels, within 16x1 at (0, {row})" in text


def test_same_screens_say_nothing_and_screen_can_be_ignored(tmp_path: Path) -> None:
    other = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+booted.bin"
    _, doc = diff_json(BOOTED, other)
    assert screen_changes(doc) == []  # the same firmware drew the same screen
    b, _, _ = painted(tmp_path)
    _, doc = diff_json(BOOTED, b, "--ignore", "screen")
    assert screen_changes(doc) == []


def test_one_side_without_a_screen(tmp_path: Path) -> None:
    status, doc = diff_json(UNBOOTED, BOOTED)
    (change,) = screen_changes(doc)
    assert change["text"].startswith("only B has a screen; A: the ramfb config of ramfb-dev is all zero")
    assert change["new"] == {"size": [1024, 768]} and "old" not in change
    data = bytearray(BOOTED.read_bytes())
    display = choose_display(decode(bytes(data), ram_runs=False))
    struct.pack_into(">I", data, display.offset + CFG_OFFSETS["fourcc"], 0x20203859)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    _, doc = diff_json(BOOTED, bad)
    (change,) = screen_changes(doc)
    assert change["text"].startswith("only A has a screen; B: ramfb cfg fourcc 0x20203859")


def test_no_ramfb_on_either_side_says_nothing() -> None:
    _, doc = diff_json(CAPTURES / "qemu-10.0.2__pc-q35-8.1__ramfb.bin", CAPTURES / "qemu-10.0.2__pc-q35-8.2__plain.bin")
    assert screen_changes(doc) == []
