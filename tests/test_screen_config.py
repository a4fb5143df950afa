"""screen.config: finding the ramfb config in real streams and QEMU's checks on it;
screen.pixels and screen.compare on pixels made here."""

from __future__ import annotations

import struct

import pytest
from PIL import Image

from helpers import with_ramfb_cfg
from paths import CAPTURES
from vfio_ramfb_mig.codec.decode import decode
from vfio_ramfb_mig.devstream import DeviceRequest, build_device_stream
from vfio_ramfb_mig.errors import RamfbConfigError, ScreenError, pointer
from vfio_ramfb_mig.model import Section
from vfio_ramfb_mig.screen.compare import compare_images, side_by_side
from vfio_ramfb_mig.screen.config import CFG_OFFSETS, RamfbConfig, choose_display, find_displays
from vfio_ramfb_mig.screen.pixels import MISSING_COLOURS, framebuffer_image, mark_missing, missing_mask
from vfio_ramfb_mig.wire.ramfb import RAMFB_FORMATS, fourcc_code

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"


def booted_display():
    data = BOOTED.read_bytes()
    stream = decode(data, ram_runs=False)
    return data, stream, choose_display(stream)


def test_booted_capture_has_the_standalone_display() -> None:
    data, stream, display = booted_display()
    assert display.device == "ramfb-dev" and display.kind == "ramfb-dev"
    cfg = display.cfg
    # the offset points at the 28 big-endian bytes the values came from
    assert struct.unpack_from(">QIIIII", data, display.offset) == (cfg.addr, cfg.fourcc, cfg.flags, cfg.width,
                                                                    cfg.height, cfg.stride)
    assert cfg.configured and cfg.format is RAMFB_FORMATS[cfg.fourcc_text]
    cfg.check(display)
    assert pointer(display.path).startswith(f"/records/{display.record}/fields/0/value/fields/0/value")


def test_vfio_display_subsection_is_found() -> None:
    built = build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True))
    stream = decode(built.data)
    (display,) = find_displays(stream)
    assert display.kind == "vfio" and display.device.endswith("/vfio")
    assert "/subsections/0/" in pointer(display.path)
    assert built.data[display.offset:display.offset + 28] == bytes(28)
    with pytest.raises(ScreenError, match="all zero"):
        display.cfg.check(display)


@pytest.mark.parametrize("capture, words", [
    ("qemu-10.0.2__pc-q35-8.1__ramfb.bin", "no ramfb state"),  # hw_compat_8_1: x-migrate=off
    ("qemu-7.2.22__pc-q35-7.2__ramfb+booted.bin", "no ramfb state"),  # 7.2 has no ramfb-dev vmstate
    ("qemu-10.0.2__pc-q35-8.2__plain.bin", "no ramfb state"),
])
def test_streams_without_ramfb_state(capture: str, words: str) -> None:
    stream = decode(str(CAPTURES / capture), ram_runs=False)
    with pytest.raises(ScreenError, match=words) as info:
        choose_display(stream)
    assert stream.configuration.machine in str(info.value)


def test_unconfigured_display_is_all_zero() -> None:
    stream = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"), ram_runs=False)
    display = choose_display(stream)
    with pytest.raises(ScreenError, match="all zero: the guest firmware has not set a display mode"):
        display.cfg.check(display)


@pytest.mark.parametrize("values, field, words", [
    ({"fourcc": fourcc_code("RG16")}, "fourcc", "0x36314752 (RG16) is not a format QEMU's ramfb accepts"),
    ({"fourcc": fourcc_code("BX24")}, "fourcc", "(BX24) is not a format"),
    ({"width": 15}, "width", "width 15 is outside what QEMU shows (16..16000)"),
    ({"width": 16001}, "width", "width 16001 is outside"),
    ({"height": 12001}, "height", "height 12001 is outside what QEMU shows (16..12000)"),
    ({"stride": 4092}, "stride", "stride 4092 is shorter than a row of 1024 XR24 pixels (4096 bytes)"),
    ({"stride": 4098}, "stride", "stride 4098 is not a multiple of 4"),
    ({"fourcc": fourcc_code("RG24"), "width": 17, "stride": 0}, "stride", "rows of 51 bytes) is not a multiple of 4"),
    ({"stride": 0xFFFFFFFC}, "stride", "spans 3294239917060 bytes, past 4 GiB"),
    ({"addr": (1 << 64) - 4096}, "addr", "wraps past 2^64"),
])
def test_bad_configs_name_the_field_and_value(values: dict[str, int], field: str, words: str) -> None:
    data, _, display = booted_display()
    bad = decode(with_ramfb_cfg(data, display.offset, **values), ram_runs=False)
    shown = choose_display(bad)
    with pytest.raises(RamfbConfigError) as info:
        shown.cfg.check(shown)
    err = info.value
    assert words in err.message
    assert err.path[-1] == field and err.offset == display.offset + CFG_OFFSETS[field]
    assert pointer(err.path).endswith(f"/value/{field}")


def test_stride_zero_means_packed_rows() -> None:
    cfg = RamfbConfig(0x1000, fourcc_code("RG24"), 0, 20, 16, 0)
    cfg.check()
    assert cfg.line_stride == 60 and cfg.size == 60 * 16


def test_several_displays_need_a_choice() -> None:
    vfio = decode(build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True)).data)
    booted = decode(BOOTED.read_bytes(), ram_runs=False)
    both = type(booted)(booted.records[:-2] + vfio.sections + booted.records[-2:], booted.size)
    # the booted ramfb-dev is the only configured one, so it is chosen
    assert choose_display(both).device == "ramfb-dev"
    assert choose_display(both, "*vfio").kind == "vfio"
    assert choose_display(both, "0000:00:01.0/vfio").kind == "vfio"
    with pytest.raises(ScreenError, match="no display 'virtio' in this stream; it has ramfb-dev, 0000:00:01.0/vfio"):
        choose_display(both, "virtio")
    two_zero = type(booted)(vfio.sections + decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"),
                                                   ram_runs=False).sections, booted.size)
    with pytest.raises(ScreenError, match="has 2 displays") as info:
        choose_display(two_zero)
    assert "--device" in info.value.hint


# ---------------------------------------------------------------- pixels (bytes made here)

PIXEL = (0x11, 0x22, 0x33)  # R, G, B


@pytest.mark.parametrize("fourcc, pixel_bytes", [
    # drm_fourcc.h: little-endian words, so the lowest byte is the last-named channel
    ("XR24", bytes([0x33, 0x22, 0x11, 0x99])),
    ("AR24", bytes([0x33, 0x22, 0x11, 0x00])),  # alpha 0 still shows the colour: screendump drops alpha
    ("XB24", bytes([0x11, 0x22, 0x33, 0x99])),
    ("AB24", bytes([0x11, 0x22, 0x33, 0x7f])),
    ("RG24", bytes([0x33, 0x22, 0x11])),
])
def test_every_ramfb_format_with_a_wide_stride(fourcc: str, pixel_bytes: bytes) -> None:
    width, height, pad = 16, 16, 12
    row = pixel_bytes * width + b"\xee" * pad  # padding between rows is never shown
    cfg = RamfbConfig(0, fourcc_code(fourcc), 0, width, height, len(row))
    cfg.check()
    data = row * (height - 1) + pixel_bytes * width  # the last row has no padding after it
    assert len(data) == cfg.size
    image = framebuffer_image(data, cfg)
    assert image.mode == "RGB" and image.size == (width, height)
    assert image.getcolors() == [(width * height, PIXEL)]


def test_missing_pages_are_drawn_and_counted() -> None:
    cfg = RamfbConfig(0, fourcc_code("XR24"), 0, 64, 32, 512)  # 256 bytes of pixels, 256 of padding per row
    image = framebuffer_image(bytes(cfg.size), cfg)
    # bytes 100..1124: row 0 from pixel 25 (bytes 100..103), row 1 whole, row 2 bytes 0..99 = pixels 0..24;
    # bytes 5000..5300: row 9 (4608..) only in its padding, row 10 (5120..) bytes 0..179 = pixels 0..44
    mask, count = missing_mask(cfg, [(100, 1024), (1124, 0), (5000, 300)])
    assert count == 39 + 64 + 25 + 45
    marked = mark_missing(image, mask)
    assert marked.getpixel((24, 0)) == (0, 0, 0) and marked.getpixel((25, 0)) in MISSING_COLOURS
    assert marked.getpixel((10, 1)) in MISSING_COLOURS
    assert marked.getpixel((24, 2)) in MISSING_COLOURS and marked.getpixel((25, 2)) == (0, 0, 0)
    assert all(marked.getpixel((x, 9)) == (0, 0, 0) for x in range(64))
    assert marked.getpixel((44, 10)) in MISSING_COLOURS and marked.getpixel((45, 10)) == (0, 0, 0)
    assert missing_mask(cfg, []) == (None, 0)


def test_compare_counts_pixels_and_boxes_them() -> None:
    a = Image.new("RGB", (40, 30), (0, 0, 0))
    b = a.copy()
    assert compare_images(a, b).same
    b.putpixel((5, 7), (0, 0, 1))
    b.putpixel((20, 9), (255, 0, 0))
    diff = compare_images(a, b)
    assert diff.pixels == 2 and diff.bbox == (5, 7, 21, 10)
    assert "2 pixels, within 16x3 at (5, 7)" in diff.words()
    picture = side_by_side(a, b, diff)
    assert picture.width == 3 * 40 + 16
    wider = Image.new("RGB", (50, 30))
    diff = compare_images(a, wider)
    assert diff.pixels == 10 * 30 and diff.bbox == (40, 0, 50, 30) and "sizes differ" in diff.words()


def test_vfio_display_is_drawn_like_the_standalone_one() -> None:
    """A VFIO device's VFIODisplay subsection with the booted guest's ramfb config, in a stream that
    carries the booted guest's RAM and no ramfb-dev section: the same screen as the standalone
    device's (which tests/test_screen_qemu.py compares with QEMU's screendump). No QEMU can write
    this stream without VFIO hardware, so vmig's encoder builds it from the real capture."""
    from dataclasses import replace

    from vfio_ramfb_mig.codec.encode import encode_bytes
    from vfio_ramfb_mig.screen import screenshot
    from vfio_ramfb_mig.source import Source

    with Source.open(str(BOOTED)) as src:
        booted = decode(src)
        cfg = choose_display(booted).cfg
        values = {k: getattr(cfg, k) for k in CFG_OFFSETS}
        vfio = decode(build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True)).data)
        vfio_sections = [_with_vfio_cfg(section, values) for section in vfio.sections]
        records = [r for r in booted.records if getattr(r, "idstr", None) != "ramfb-dev"]
        at = max(i for i, r in enumerate(records) if isinstance(r, Section))
        data = encode_bytes(replace(booted, records=tuple(records[:at + 1] + vfio_sections + records[at + 1:])), src)
    ours = screenshot(data)
    assert ours.display.kind == "vfio" and ours.display.device == "0000:00:01.0/vfio"
    assert ours.image.tobytes() == screenshot(str(BOOTED)).image.tobytes()


def _with_vfio_cfg(section, cfg: dict[str, int]):
    """The section with every ramfb cfg below it set to `cfg`."""
    from dataclasses import replace

    from vfio_ramfb_mig.model import StructValue, VfioBody

    def fields(items):
        out = []
        for f in items:
            if f.type == "ramfb cfg":
                f = replace(f, value=dict(cfg))
            elif isinstance(f.value, StructValue):
                f = replace(f, value=replace(f.value, fields=fields(f.value.fields),
                                             subsections=subs(f.value.subsections)))
            out.append(f)
        return tuple(out)

    def subs(items):
        return tuple(replace(s, fields=fields(s.fields), subsections=subs(s.subsections)) for s in items)

    body = section.body
    if isinstance(body, VfioBody):
        items = tuple(replace(i, config=replace(i.config, fields=fields(i.config.fields),
                                                subsections=subs(i.config.subsections)))
                      if i.config is not None else i for i in body.items)
        return replace(section, body=replace(body, items=items))
    return section


def test_rows_far_apart_are_read_row_by_row() -> None:
    """A stride far longer than a row: only the rows' pixels are read (memory holds no padding), and
    the picture and its missing pixels are those of one contiguous read."""
    from vfio_ramfb_mig.screen import ROW_BY_ROW_PADDING, draw

    memory = bytes((i * 7 + (i >> 12)) & 0xFF for i in range(1 << 21))
    holes = [(0x30000, 0x2000), (0x120000, 0x800)]  # guest-physical ranges the "stream" lacks

    def read(addr: int, length: int, log: list[int]) -> tuple[bytes, list[tuple[int, int]]]:
        log.append(length)
        data = bytearray(memory[addr:addr + length])
        gone = []
        for start, size in holes:
            lo, hi = max(start, addr), min(start + size, addr + length)
            if lo < hi:
                data[lo - addr:hi - addr] = bytes(hi - lo)
                gone.append((lo, hi - lo))
        return bytes(data), gone

    near, far = [], []
    cfg = RamfbConfig(0x1000, fourcc_code("XB24"), 0, 40, 24, 40 * 4 + ROW_BY_ROW_PADDING)
    display = choose_display(decode(BOOTED.read_bytes(), ram_runs=False))
    display = type(display)(display.device, display.instance_id, display.kind, cfg, display.record, display.offset,
                            display.path)
    by_rows = draw(display, lambda a, n: read(a, n, far))
    assert far == [160] * 24  # one read per row, of its pixels only
    whole = read(cfg.addr, cfg.size, near)
    expected = framebuffer_image(whole[0], cfg)
    mask, count = missing_mask(cfg, [(a - cfg.addr, n) for a, n in whole[1]])
    assert by_rows.image.tobytes() == mark_missing(expected, mask).tobytes()
    assert by_rows.missing_pixels == count > 0
    # missing: the lacking bytes among the rows' pixels (the padding between rows is never read)
    pixels_lacking = sum(max(0, min(a + n, row + 160) - max(a, row)) for a, n in holes
                         for row in (cfg.addr + y * cfg.stride for y in range(24)))
    assert sum(n for _, n in by_rows.missing) == pixels_lacking > 0


def test_any_config_is_drawn_or_refused_in_words() -> None:
    """Whatever six numbers a stream carries, vmig draws a picture of the configured size or raises
    one of its two errors; it never reads past the guest's RAM or allocates more than it holds."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from vfio_ramfb_mig.ram.guest import Region
    from vfio_ramfb_mig.screen import _check_in_ram, draw

    ram = 1 << 20
    regions = [Region(0, ram, "pc.ram", 0)]
    memory = bytes(range(256)) * (ram // 256)
    display = choose_display(decode(BOOTED.read_bytes(), ram_runs=False))
    codes = [fourcc_code(c) for c in RAMFB_FORMATS] + [0, fourcc_code("RG16"), 0xFFFFFFFF]
    u32 = st.one_of(st.integers(0, 64), st.integers(0, 2000), st.integers(0, (1 << 32) - 1))

    @settings(max_examples=300, deadline=None)
    @given(addr=st.one_of(st.integers(0, ram), st.integers(0, (1 << 64) - 1)), fourcc=st.sampled_from(codes),
           width=u32, height=u32, stride=st.one_of(st.just(0), u32))
    def check(addr: int, fourcc: int, width: int, height: int, stride: int) -> None:
        cfg = RamfbConfig(addr, fourcc, 0, width, height, stride)
        shown = type(display)(display.device, display.instance_id, display.kind, cfg, display.record,
                              display.offset, display.path)

        def read(at: int, length: int) -> tuple[bytes, list[tuple[int, int]]]:
            assert 0 <= at and at + length <= ram, "read outside guest RAM"
            return memory[at:at + length], []

        try:
            cfg.check(shown)
            _check_in_ram(shown, regions)
        except (RamfbConfigError, ScreenError) as err:
            assert err.path[:len(display.path)] == display.path
            return
        screen = draw(shown, read)
        assert screen.image.size == (width, height) and screen.missing_pixels == 0

    check()
