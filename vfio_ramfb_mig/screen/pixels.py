"""Framebuffer bytes -> an RGB picture, as QEMU's screendump would write it.

QEMU keeps the guest's pixels as a pixman image over guest RAM and screendump
converts each row to 8-bit R, G, B (ui/ui-qmp-cmds.c png_save/ppm_save:
PIXMAN_BE_r8g8b8), so padding and alpha bytes are dropped, never blended. Pillow's
raw decoder does the same conversion from the format's byte order, with the stride
between rows.

Bytes of the framebuffer that no page of the stream holds (a cut stream, a block
the stream skipped) are drawn as a checkerboard no guest draws by chance, magenta
on dark grey, and counted.

Imports: PIL, screen.config.
References: ui/ui-qmp-cmds.c (png_save), ui/qemu-pixman.c (qemu_pixman_linebuf_fill),
include/drm/drm_fourcc.h.
"""

from __future__ import annotations

from collections.abc import Iterable

from PIL import Image, ImageDraw

from .config import RamfbConfig

#: the checkerboard that marks pixels whose bytes the stream does not hold
MISSING_COLOURS = ((255, 0, 255), (48, 48, 48))
MISSING_SQUARE = 8


def raw_mode(cfg: RamfbConfig) -> str:
    """Pillow's raw mode for the format: its byte order with alpha read as padding (screendump
    drops alpha)."""
    fmt = cfg.format
    assert fmt is not None, "check() the config first"
    return fmt.byte_order.replace("A", "X")


def framebuffer_image(data: bytes | bytearray | memoryview, cfg: RamfbConfig) -> Image.Image:
    """The picture in `data`, the cfg.size bytes that start at the framebuffer's address."""
    if len(data) < cfg.size:
        raise ValueError(f"framebuffer needs {cfg.size} bytes, got {len(data)}")
    stride = cfg.line_stride
    need = stride * cfg.height
    if len(data) < need:
        # Pillow's decoder reads whole strides; the bytes past the last row's pixels are not shown
        data = bytes(data) + bytes(need - len(data))
    return Image.frombytes("RGB", (cfg.width, cfg.height), data, "raw", raw_mode(cfg), stride, 1)


def missing_mask(cfg: RamfbConfig, missing: Iterable[tuple[int, int]]) -> tuple[Image.Image | None, int]:
    """A mask (mode "L", 255 where missing) of the pixels any of whose bytes lie in a missing range, and how many
    there are. `missing` holds (start, length) byte ranges relative to the framebuffer's address."""
    mask: Image.Image | None = None
    draw: ImageDraw.ImageDraw | None = None
    bpp, stride, row = cfg.format.bytes_per_pixel if cfg.format else 1, cfg.line_stride, cfg.row_bytes
    for start, end in merged_ranges(missing, cfg.size):
        first_row = start // stride
        last_row = min((end - 1) // stride, cfg.height - 1)
        for y in range(first_row, last_row + 1):
            row_start = y * stride
            lo, hi = max(start - row_start, 0), min(end - row_start, row)
            if lo >= hi:
                continue  # the range covers only the padding between rows
            if mask is None:
                mask = Image.new("L", (cfg.width, cfg.height), 0)
                draw = ImageDraw.Draw(mask)
            assert draw is not None
            draw.rectangle((lo // bpp, y, (hi - 1) // bpp, y), fill=255)
    if mask is None:
        return None, 0
    return mask, mask.histogram()[255]


def merged_ranges(ranges: Iterable[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """(start, length) ranges, clipped to 0..limit, as sorted, disjoint (start, end) pairs."""
    merged: list[tuple[int, int]] = []
    for start, length in sorted(ranges):
        start, end = max(start, 0), min(start + length, limit)
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def checkerboard(size: tuple[int, int]) -> Image.Image:
    square = MISSING_SQUARE
    strip = Image.new("RGB", (size[0], 2 * square), MISSING_COLOURS[1])
    draw = ImageDraw.Draw(strip)
    for x in range(0, size[0], 2 * square):
        draw.rectangle((x, 0, x + square - 1, square - 1), fill=MISSING_COLOURS[0])
        draw.rectangle((x + square, square, x + 2 * square - 1, 2 * square - 1), fill=MISSING_COLOURS[0])
    board = Image.new("RGB", size)
    for y in range(0, size[1], 2 * square):
        board.paste(strip, (0, y))
    return board


def mark_missing(image: Image.Image, mask: Image.Image | None) -> Image.Image:
    """The image with the masked pixels drawn as the missing-page checkerboard."""
    if mask is None:
        return image
    image = image.copy()
    image.paste(checkerboard(image.size), (0, 0), mask)
    return image
