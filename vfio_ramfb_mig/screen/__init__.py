"""The guest's screen: the ramfb config a stream carries, drawn from the guest RAM it carries.

    from vfio_ramfb_mig.screen import screenshot
    screen = screenshot("vm.bin")            # or screenshot(path, device="0000:00:02.0/vfio")
    screen.image.save("screen.png")          # a PIL image, RGB, as QEMU's screendump shows it
    print(screen.display.cfg.words(), screen.missing_words())

Steps: find the config (config.py: the `ramfb-dev` section or the VFIO device's
`VFIOPCIDevice/VFIODisplay` subsection), check it as QEMU does, read the
framebuffer's bytes at its guest-physical address from the final content of each
page (the ram package: every pass, XBZRLE, mapped-ram, multifd, zero pages), and
convert them (pixels.py). Pages the stream does not hold are drawn as missing
and counted.

Imports: errors, model, source, codec (decode), ram (guest-physical reads), screen.config/pixels, PIL.
References: hw/display/ramfb.c, ui/ui-qmp-cmds.c (qmp_screendump).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..errors import RamfbConfigError, ScreenError
from ..model import MigrationStream
from ..source import Source
from .compare import ScreenDiff
from .config import Display, RamfbConfig, choose_display, find_displays
from .pixels import framebuffer_image, mark_missing, missing_mask

#: reads `length` bytes of guest-physical memory at `addr`: (the bytes, with zeros where the stream
#: holds nothing; the (address, length) ranges it holds nothing for)
GuestRead = Callable[[int, int], tuple[bytes, Sequence[tuple[int, int]]]]


@dataclass(frozen=True)
class Screen:
    """One display's picture."""

    display: Display
    #: RGB, the display's width x height; pixels the stream holds no bytes for are a checkerboard
    image: Image.Image
    #: guest-physical (address, length) ranges of the framebuffer that no page of the stream holds
    missing: tuple[tuple[int, int], ...] = ()
    missing_pixels: int = 0
    #: why pages may be missing: the decode error that cut the stream short, if any
    cut: str | None = None

    @property
    def cfg(self) -> RamfbConfig:
        return self.display.cfg

    def missing_words(self) -> str:
        if not self.missing:
            return ""
        total = sum(length for _, length in self.missing)
        return (f"{self.missing_pixels:,} pixels drawn as missing: the stream holds no page for {total:,} bytes "
                f"of the framebuffer ({len(self.missing)} range(s) from {self.missing[0][0]:#x})"
                + (f"; the stream is cut short: {self.cut}" if self.cut else ""))


#: a stride at least this much longer than a row is read row by row, so memory holds the pixels only
#: (at most QEMU's 16000 x 12000 x 4 bytes), never the padding between rows
ROW_BY_ROW_PADDING = 64 << 10


def draw(display: Display, read: GuestRead) -> Screen:
    """The display's picture from guest memory read through `read` (after checking its config)."""
    cfg = display.cfg
    cfg.check(display)
    if cfg.line_stride - cfg.row_bytes < ROW_BY_ROW_PADDING:
        data, missing = read(cfg.addr, cfg.size)
        image = framebuffer_image(data, cfg)
        mask, count = missing_mask(cfg, [(addr - cfg.addr, length) for addr, length in missing])
        return Screen(display, mark_missing(image, mask), tuple(missing), count)
    # rows far apart: read each row's pixels into one packed buffer
    packed = RamfbConfig(0, cfg.fourcc, cfg.flags, cfg.width, cfg.height, cfg.row_bytes)
    rows = bytearray()
    missing = []
    packed_missing = []
    for y in range(cfg.height):
        start = cfg.addr + y * cfg.line_stride
        data, gone = read(start, cfg.row_bytes)
        rows += data
        missing.extend(gone)
        packed_missing.extend((y * cfg.row_bytes + addr - start, length) for addr, length in gone)
    image = framebuffer_image(rows, packed)
    mask, count = missing_mask(packed, packed_missing)
    return Screen(display, mark_missing(image, mask), tuple(missing), count)


def _check_in_ram(display: Display, regions: Sequence[Any]) -> None:
    """The whole framebuffer must lie in one stretch of guest RAM: QEMU maps it in one piece
    (cpu_physical_memory_map) and shows nothing when it cannot."""
    cfg = display.cfg
    ram = sum(r.length for r in regions)
    if cfg.size > ram:
        key = "stride" if cfg.stride else "height"
        raise RamfbConfigError(f"ramfb cfg {key} {getattr(cfg, key)}: a framebuffer of {cfg.size:,} bytes is "
                               f"larger than the guest's RAM ({ram:,} bytes)",
                               offset=display.field_offset(key), path=(*display.path, key))
    where = ", ".join(f"{r.start:#x}-{r.end - 1:#x} ({r.block})" for r in regions)
    for region in regions:
        if region.start <= cfg.addr < region.end:
            if cfg.addr + cfg.size <= region.end:
                return
            raise ScreenError(f"the framebuffer at {cfg.addr:#x} ({cfg.size:,} bytes) runs past the end of guest "
                              f"RAM at {region.end:#x}: QEMU cannot map it and shows no screen; guest RAM is {where}",
                              offset=display.field_offset("addr"), path=(*display.path, "addr"))
    raise ScreenError(f"ramfb cfg addr {cfg.addr:#x} is outside guest RAM ({where}): QEMU shows no screen",
                      offset=display.field_offset("addr"), path=(*display.path, "addr"))


def screen_of(stream: MigrationStream, source: Source, device: str | None = None, *, state: Any = None) -> Screen:
    """The screen of a decoded stream; `source` is the input it was decoded from. `state`: the
    ram.PageState that decode fed (on_ram_item), so the pages are not walked again; it is closed."""
    from .. import ram  # guest RAM: the ram package's final page state and memory maps

    try:
        display = choose_display(stream, device)
    except ScreenError as err:
        if stream.error and not find_displays(stream):
            err.message += f"; the stream is cut short ({stream.error}), before its device state"
        raise
    display.cfg.check(display)
    with ram.open_guest_memory(stream, source, state=state) as memory:
        _check_in_ram(display, memory.map.regions)
        screen = draw(display, memory.read)
    if stream.error and screen.missing:
        screen = Screen(screen.display, screen.image, screen.missing, screen.missing_pixels, stream.error)
    return screen


def screenshot(stream: str | Source | bytes, *, device: str | None = None) -> Screen:
    """The guest's screen as a stream leaves it: a path ('-' for stdin), a Source or the bytes.

    `device` picks a display when the stream has several (its idstr, a glob or a substring).
    Raises ScreenError when there is no screen to draw (no ramfb state: QEMU 7.2, machine types up
    to 8.1; a config still all zero; a framebuffer outside guest RAM) and RamfbConfigError for a
    config QEMU would refuse or that cannot be a framebuffer. A stream cut short is drawn from the
    pages it has, the others marked missing (`Screen.missing`)."""
    from ..codec.decode import decode
    from ..ram.state import PageState

    if isinstance(stream, (bytes, bytearray, memoryview)):
        src = Source.from_bytes(bytes(stream))
    elif isinstance(stream, str):
        with Source.open(stream) as opened:
            return screenshot(opened, device=device)
    else:
        src = stream
    # one walk: the decode feeds the final page state as it passes the pages
    state = PageState(src.sibling())
    try:
        decoded = decode(src.sibling(), ram_runs=False, partial=True, on_ram_item=state.feed)
        return screen_of(decoded, src, device, state=state)
    finally:
        state.close()


@dataclass(frozen=True)
class ScreenComparison:
    """Two streams' screens: both drawn (`diff` says how they differ), or why one is not."""

    a: Screen | None
    b: Screen | None
    diff: ScreenDiff | None
    #: why A / B has no screen (the ScreenError or RamfbConfigError in words)
    a_error: str | None = None
    b_error: str | None = None

    @property
    def compared(self) -> bool:
        return self.diff is not None


def compare_streams(a: MigrationStream, source_a: Source, b: MigrationStream, source_b: Source,
                    device: str | None = None) -> ScreenComparison | None:
    """The screens of two decoded streams, compared pixel by pixel. None when neither stream has a
    display to draw from (no ramfb state on either side: nothing to say about screens)."""
    from ..errors import VmigError
    from .compare import compare_images

    if not find_displays(a) and not find_displays(b):
        return None
    screens: list[Screen | None] = []
    errors: list[str | None] = []
    for stream, source in ((a, source_a), (b, source_b)):
        try:
            screens.append(screen_of(stream, source, device))
            errors.append(None)
        except VmigError as err:
            screens.append(None)
            errors.append(str(err))
    sa, sb = screens
    diff = compare_images(sa.image, sb.image) if sa is not None and sb is not None else None
    return ScreenComparison(sa, sb, diff, errors[0], errors[1])


__all__ = ["Display", "GuestRead", "RamfbConfig", "Screen", "ScreenComparison", "choose_display", "compare_streams",
           "draw", "find_displays", "screen_of", "screenshot"]
