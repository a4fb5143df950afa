"""vmig screenshot against real QEMU: the picture equals QEMU's own screendump of a destination
that loaded the same stream (paused, so the guest does not draw after the load).

The streams: every booted ramfb capture QEMU 10.0 wrote (SeaBIOS, x86; aarch64 UEFI; a guest
migrated while it rewrote the top of its framebuffer, and an aarch64 UEFI shell migrated while
it scrolled a hex dump over its whole screen: those screens come from XBZRLE records applied to
pages sent before), and the same
capture with its ramfb config changed to every pixel format QEMU's ramfb accepts,
strides wider than a row, an address inside a page, and a smaller mode. QEMU's
post_load builds the display surface from the loaded config and RAM, so its
screendump is the reference for each format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from helpers import with_ramfb_cfg
from paths import CAPTURES, FIXTURES
from vfio_ramfb_mig.codec.decode import decode
from vfio_ramfb_mig.errors import ScreenError
from vfio_ramfb_mig.qemu import QemuBinary, load
from vfio_ramfb_mig.screen import screenshot
from vfio_ramfb_mig.screen.config import choose_display
from vfio_ramfb_mig.wire.ramfb import RAMFB_FORMATS, fourcc_code

pytestmark = pytest.mark.qemu


def _stem(capture: Path) -> str:
    return capture.name.removesuffix(".xz").removesuffix(".bin")


def _meta(capture: Path) -> dict:
    return json.loads(capture.with_name(_stem(capture) + ".meta.json").read_text())


def _drawn(meta: dict) -> bool:
    """Captures QEMU 10.0 made of a guest that ran with a ramfb display (booted, or shown a screen):
    its firmware set a mode."""
    return (meta["qemu"]["version"].startswith("10.0") and meta.get("mode", "paused") != "paused"
            and any(d.split(",")[0] == "ramfb" for d in meta.get("devices", [])))


#: the bundled captures (fixtures/captures, and the bundles beside it: aarch64, live, ... some xz'd)
ALL_CAPTURES = sorted({*FIXTURES.glob("*/*.bin"), *FIXTURES.glob("*/*.bin.xz")})
BOOTED_10 = [c for c in ALL_CAPTURES if c.with_name(_stem(c) + ".meta.json").exists() and _drawn(_meta(c))]


def _plain(capture: Path, tmp_path: Path) -> Path:
    """The stream as QEMU reads it (xz undone)."""
    if capture.suffix != ".xz":
        return capture
    import lzma

    out = tmp_path / _stem(capture)
    out.write_bytes(lzma.decompress(capture.read_bytes()))
    return out


def qemu_screendump(qemu: QemuBinary, stream: Path, meta: dict, out: Path, firmware: Path | None = None
                    ) -> Image.Image:
    """What QEMU shows after loading `stream` into a destination made as the capture's source was."""
    result = load(qemu, stream, meta["machine"], devices=meta["devices"], globals_=meta.get("globals", []),
                  memory=meta["memory"], capabilities=meta.get("migration_capabilities_set", []),
                  extra_args=meta.get("extra_args", []), cpu=meta.get("cpu"), firmware=firmware,
                  timeout=120, screendump=out)
    assert result.accepted, result.stderr
    return Image.open(out).convert("RGB")


def assert_same_picture(ours: Image.Image, qemus: Image.Image) -> None:
    assert ours.size == qemus.size
    box = ImageChops.difference(ours, qemus).getbbox()
    assert box is None, f"pixels differ within {box}"


def test_bundled_captures_are_there() -> None:
    assert BOOTED_10, "no capture of a booted guest with ramfb by QEMU 10.0 in fixtures/captures"


def _framebuffer_records(capture: Path) -> dict[int, list[str]]:
    """The kinds of the page records (in stream order) of each page the framebuffer overlaps, by
    the page's offset in its RAM block (the machine's memory map places the config's guest-physical
    address: on x86 at the same offset of pc.ram, on aarch64 virt 1 GiB below it in mach-virt.ram)."""
    from vfio_ramfb_mig import ram
    from vfio_ramfb_mig.model import RamBody, RamMemSize, RamPages

    stream = decode(str(capture))
    cfg = choose_display(stream).cfg
    items = [i for s in stream.sections if isinstance(s.body, RamBody) for i in s.body.items]
    blocks = {b.idstr: b.used_length for i in items if isinstance(i, RamMemSize) for b in i.blocks}
    located = ram.memory_map(stream.configuration.machine, blocks).locate(cfg.addr)
    assert located is not None, f"{capture.name}: the framebuffer at {cfg.addr:#x} is in no RAM block"
    region, start = located
    first, end = start - start % 4096, start + cfg.size
    pages: dict[int, list[str]] = {}
    for run in items:
        if isinstance(run, RamPages) and run.block == region.block:
            for i in range(1 if run.kind == "xbzrle" else run.count):
                offset = run.offset + i * 4096
                if first <= offset < end:
                    pages.setdefault(offset, []).append(run.kind)
    return pages


LIVE_XBZRLE = [c for c in BOOTED_10 if _meta(c)["mode"] == "live" and "xbzrle" in _meta(c)["migration_capabilities_set"]]


def test_screens_drawn_from_xbzrle_records_are_compared() -> None:
    """Among the captures compared with QEMU's screendump, a running x86 guest's and a running
    aarch64 virt guest's (tools/captures/make_live.py and make_aarch64.py, live+xbzrle+ramfb)."""
    assert {_meta(c)["arch"] for c in LIVE_XBZRLE} == {"x86_64", "aarch64"}


@pytest.mark.parametrize("capture", LIVE_XBZRLE, ids=lambda p: p.parent.name)
def test_a_screen_drawn_from_xbzrle_and_resent_pages(capture: Path) -> None:
    """Framebuffer pages sent more than once, the last time as XBZRLE records: the screen comes from
    the final content of each page, a delta applied to the copy sent before."""
    pages = _framebuffer_records(capture)
    resent = [a for a, kinds in pages.items() if len(kinds) > 1]
    last_xbzrle = [a for a, kinds in pages.items() if kinds[-1] == "xbzrle"]
    assert resent and last_xbzrle
    if _meta(capture)["arch"] == "x86_64":  # the x86 guest rewrites 256 framebuffer pages, one row each
        assert len(resent) >= 256 and len(last_xbzrle) >= 256


@pytest.mark.parametrize("capture", BOOTED_10, ids=lambda p: p.stem)
def test_screenshot_equals_qemu_screendump(capture: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """x86 (SeaBIOS) and aarch64 virt (UEFI) captures: the screen equals the screendump of a
    destination that loaded the stream, and the source's own screendump where one was bundled."""
    meta = _meta(capture)
    arm = meta.get("arch") == "aarch64"
    qemu = request.getfixturevalue("qemu10_arm" if arm else "qemu10")
    firmware = request.getfixturevalue("aavmf") if arm and meta.get("firmware") else None
    machine_version = tuple(int(x) for x in meta["machine"].rsplit("-", 1)[1].split("."))
    if machine_version <= (8, 1):
        # hw_compat_8_1: ramfb's x-migrate is off, so the stream has no screen even though the guest had one
        with pytest.raises(ScreenError, match="no ramfb state"):
            screenshot(str(capture))
        return
    ours = screenshot(str(capture))
    assert not ours.missing
    assert len(ours.image.getcolors(1 << 24)) > 1  # the firmware wrote on it
    qemus = qemu_screendump(qemu, _plain(capture, tmp_path), meta, tmp_path / "dump.png", firmware)
    assert_same_picture(ours.image, qemus)
    source_dump = capture.with_name(_stem(capture) + ".screendump.png")
    if source_dump.exists():  # the source's own screen, taken just before it was saved
        assert_same_picture(ours.image, Image.open(source_dump).convert("RGB"))


VARIANTS = {
    # every format qemu_drm_format_to_pixman knows, over the same guest RAM
    **{f"{code}": {"fourcc": fourcc_code(code)} for code in RAMFB_FORMATS},
    "RG24-packed-rows": {"fourcc": fourcc_code("RG24"), "stride": 0},
    "XR24-stride-wider-than-a-row": {"width": 1000, "height": 700, "stride": 4096},
    "AB24-odd-stride": {"fourcc": fourcc_code("AB24"), "width": 640, "height": 480, "stride": 2600},
    "XR24-address-inside-a-page": {"addr": 0xC00000 + 0x124, "width": 800, "height": 600, "stride": 3300},
    "RG24-stride-0-small": {"fourcc": fourcc_code("RG24"), "width": 320, "height": 200, "stride": 0},
    # rows 65 KiB apart (read row by row), across the firmware's framebuffer and the RAM below it
    "XR24-rows-far-apart": {"addr": 0x900000, "width": 256, "height": 100, "stride": 0x10400},
}


def _coloured(data: bytes) -> bytes:
    """The stream with the contents of every pc.ram page it sends whole (PAGE records) replaced by
    bytes that differ from channel to channel: the firmware's text screen is grey (R = G = B),
    where a format read in the wrong byte order would still look right."""
    from vfio_ramfb_mig.model import RamBody, RamPages, Section

    out = bytearray(data)
    for record in decode(data).records:
        if isinstance(record, Section) and isinstance(record.body, RamBody):
            for run in record.body.items:
                if isinstance(run, RamPages) and run.kind == "page" and run.block == "pc.ram":
                    for i in range(run.count):
                        at = run.payload_offset(i, 4096)
                        out[at:at + 4096] = bytes((7 * k + 13 * (at >> 12) + (k >> 7)) & 0xFF for k in range(4096))
    return bytes(out)


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_every_format_and_stride_equals_qemu(variant: str, qemu10: QemuBinary, tmp_path: Path) -> None:
    capture = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
    data = _coloured(capture.read_bytes())
    display = choose_display(decode(data, ram_runs=False))
    stream = tmp_path / "variant.bin"
    stream.write_bytes(with_ramfb_cfg(data, display.offset, **VARIANTS[variant]))
    ours = screenshot(str(stream))
    assert ours.cfg.fourcc_text == (variant.split("-")[0])
    assert any(len(set(pixel)) == 3 for _, pixel in ours.image.getcolors(1 << 24))  # not only greys
    qemus = qemu_screendump(qemu10, stream, _meta(capture), tmp_path / "dump.png")
    assert_same_picture(ours.image, qemus)


def test_pages_the_stream_lacks_are_drawn_missing(qemu10: QemuBinary, tmp_path: Path) -> None:
    """The booted capture without the page records of part of the framebuffer (rebuilt by vmig's
    encoder, loaded by QEMU, which leaves those pages zero): vmig draws exactly the pixels in the
    missing pages as missing and every other pixel as QEMU shows it."""
    from dataclasses import replace

    from vfio_ramfb_mig.codec.encode import encode_bytes
    from vfio_ramfb_mig.model import RamBody, RamPages, Section
    from vfio_ramfb_mig.screen.pixels import MISSING_COLOURS
    from vfio_ramfb_mig.source import Source

    capture = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
    src = Source.open(str(capture))
    stream = decode(src)
    cfg = choose_display(stream).cfg
    # drop every run of pc.ram records that touches the framebuffer's middle third
    lo, hi = cfg.addr + cfg.size // 3, cfg.addr + 2 * cfg.size // 3
    dropped: list[tuple[int, int]] = []
    name_next = False  # a run that continued a dropped named run must name its block itself

    def kept(items: tuple) -> tuple:
        nonlocal name_next
        out = []
        for item in items:
            if isinstance(item, RamPages):
                end = item.offset + item.count * 4096
                if item.block == "pc.ram" and item.offset < hi and end > lo:
                    dropped.append((item.offset, end))
                    name_next = name_next or item.named
                    continue
                if name_next and not item.named:
                    item = replace(item, named=True)
                name_next = False
            out.append(item)
        return tuple(out)

    records = []
    for record in stream.records:
        if isinstance(record, Section) and isinstance(record.body, RamBody):
            record = replace(record, body=replace(record.body, items=kept(record.body.items)))
        records.append(record)
    assert dropped
    cut = tmp_path / "cut.bin"
    cut.write_bytes(encode_bytes(replace(stream, records=tuple(records)), src))
    src.close()
    ours = screenshot(str(cut))
    assert ours.missing and ours.missing_pixels
    qemus = qemu_screendump(qemu10, cut, _meta(capture), tmp_path / "dump.png")
    assert ours.image.size == qemus.size
    # the missing pixels: those whose bytes lie in a dropped page
    stride, bpp = cfg.line_stride, 4
    marked = 0
    for y in range(cfg.height):
        for x in range(cfg.width):
            addr = cfg.addr + y * stride + x * bpp
            gone = any(a <= addr < b for a, b in dropped)
            if gone:
                marked += 1
                assert ours.image.getpixel((x, y)) in MISSING_COLOURS
                assert qemus.getpixel((x, y)) == (0, 0, 0)  # QEMU's RAM there stayed zero
            elif ours.image.getpixel((x, y)) != qemus.getpixel((x, y)):
                raise AssertionError(f"pixel {(x, y)} differs outside the missing pages")
    assert marked == ours.missing_pixels
    # the missing ranges are the dropped pages, clipped to the framebuffer
    fb_end = cfg.addr + cfg.size
    expected = sorted((max(a, cfg.addr), min(b, fb_end)) for a, b in dropped if a < fb_end and b > cfg.addr)
    merged: list[list[int]] = []
    for a, b in expected:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    assert [(a, b - a) for a, b in merged] == list(ours.missing)


@pytest.mark.parametrize("capabilities", [("mapped-ram",), ("mapped-ram", "multifd")], ids="+".join)
def test_live_capture_with_capabilities(capabilities: tuple[str, ...], qemu10: QemuBinary, tmp_path: Path) -> None:
    """A guest booted for a few seconds and saved by QEMU 10.0 with these capabilities (pages at
    fixed offsets in the file, written by several channels): the screen equals the screendump of a
    destination that loads it with the same capabilities."""
    from vfio_ramfb_mig.qemu import capture

    stream = tmp_path / "live.bin"
    capture(qemu10, stream, "pc-q35-10.0", devices=["ramfb"], capabilities=capabilities, booted_seconds=4)
    from vfio_ramfb_mig.model import RamMemSize

    blocks = [b for r in decode(str(stream), ram_runs=False).sections if r.idstr == "ram"
              for i in r.body.items if isinstance(i, RamMemSize) for b in i.blocks]
    assert blocks and all(b.mapped_ram is not None for b in blocks)  # pages in the file's regions, not records
    ours = screenshot(str(stream))
    assert not ours.missing and len(ours.image.getcolors(1 << 24)) > 1
    result = load(qemu10, stream, "pc-q35-10.0", devices=["ramfb"], capabilities=capabilities,
                  screendump=tmp_path / "dump.png")
    assert result.accepted, result.stderr
    assert_same_picture(ours.image, Image.open(tmp_path / "dump.png").convert("RGB"))
