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

Imports: errors, model, screen.config/pixels/compare, PIL; the ram package for guest RAM.
References: hw/display/ramfb.c, ui/ui-qmp-cmds.c (qmp_screendump).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

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

    @property
    def cfg(self) -> RamfbConfig:
        return self.display.cfg

    def missing_words(self) -> str:
        if not self.missing:
            return ""
        total = sum(length for _, length in self.missing)
        return (f"{self.missing_pixels:,} pixels drawn as missing: the stream holds no page for {total:,} bytes "
                f"of the framebuffer ({len(self.missing)} range(s) from {self.missing[0][0]:#x})")


def draw(display: Display, read: GuestRead) -> Screen:
    """The display's picture from guest memory read through `read` (after checking its config)."""
    cfg = display.cfg
    cfg.check(display)
    data, missing = read(cfg.addr, cfg.size)
    image = framebuffer_image(data, cfg)
    mask, count = missing_mask(cfg, [(addr - cfg.addr, length) for addr, length in missing])
    return Screen(display, mark_missing(image, mask), tuple(missing), count)


__all__ = ["Display", "GuestRead", "RamfbConfig", "Screen", "choose_display", "draw", "find_displays"]
