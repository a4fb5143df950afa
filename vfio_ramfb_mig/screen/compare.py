"""Two screens compared: how many pixels differ, where, and a picture of both with the
differences marked.

Pixels are compared as screendump writes them (8-bit R, G, B). Screens of two sizes
are compared over the area they share; every pixel only one of them has counts as
different too, and the box grows to cover it.

Imports: PIL.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFont

#: how differing pixels are shown in the third panel, and the box drawn on A and B
MARK = (255, 40, 40)
GAP = 8
LABEL_HEIGHT = 14


@dataclass(frozen=True, slots=True)
class ScreenDiff:
    size_a: tuple[int, int]
    size_b: tuple[int, int]
    #: pixels that differ (pixels one screen has and the other does not count too)
    pixels: int
    #: (left, top, right, bottom), right and bottom exclusive, of every differing pixel; None if same
    bbox: tuple[int, int, int, int] | None

    @property
    def same(self) -> bool:
        return self.pixels == 0

    def words(self) -> str:
        if self.same:
            return f"screens are the same ({self.size_a[0]}x{self.size_a[1]})"
        size = ("" if self.size_a == self.size_b
                else f"; sizes differ: {self.size_a[0]}x{self.size_a[1]} → {self.size_b[0]}x{self.size_b[1]}")
        assert self.bbox is not None
        left, top, right, bottom = self.bbox
        return (f"screens differ in {self.pixels:,} pixels, within {right - left}x{bottom - top} "
                f"at ({left}, {top}){size}")


def difference_mask(a: Image.Image, b: Image.Image) -> Image.Image:
    """Mode "L" over the shared area: 255 where any channel differs, else 0."""
    width, height = min(a.width, b.width), min(a.height, b.height)
    box = (0, 0, width, height)
    delta = ImageChops.difference(a.convert("RGB").crop(box), b.convert("RGB").crop(box))
    red, green, blue = (band.point(lambda v: 255 if v else 0) for band in delta.split())
    return ImageChops.lighter(ImageChops.lighter(red, green), blue)


def compare_images(a: Image.Image, b: Image.Image) -> ScreenDiff:
    mask = difference_mask(a, b)
    pixels = mask.histogram()[255]
    width, height = mask.size
    boxes = [mask.getbbox()]
    for image in (a, b):
        pixels += image.width * image.height - width * height
        if image.width > width:
            boxes.append((width, 0, image.width, image.height))
        if image.height > height:
            boxes.append((0, height, image.width, image.height))
    found = [box for box in boxes if box is not None]
    bbox = (min(x[0] for x in found), min(x[1] for x in found), max(x[2] for x in found),
            max(x[3] for x in found)) if found else None
    return ScreenDiff(a.size, b.size, pixels, bbox)


def screens_picture(images: tuple[Image.Image, ...] | list[Image.Image]) -> tuple[Image.Image, ScreenDiff | None]:
    """What `vmig screenshot` draws of one or two screens: one as it is; two side by side with their
    differences marked, and the comparison."""
    if len(images) == 1:
        return images[0], None
    a, b = images
    diff = compare_images(a, b)
    return side_by_side(a, b, diff), diff


def side_by_side(a: Image.Image, b: Image.Image, diff: ScreenDiff | None = None) -> Image.Image:
    """A, B and the differences, left to right, under one-line labels: the box around every
    differing pixel is drawn on A and B, and the third panel shows B dimmed with the differing
    pixels in red."""
    diff = diff or compare_images(a, b)
    a, b = a.convert("RGB"), b.convert("RGB")
    width, height = max(a.width, b.width), max(a.height, b.height)
    marked = b.convert("L").point(lambda v: v // 3).convert("RGB")
    mask = difference_mask(a, b)
    marked.paste(MARK, (0, 0, mask.width, mask.height), mask)
    if b.size != a.size:
        # what only one side has is all different
        outside = Image.new("L", b.size, 255)
        outside.paste(0, (0, 0, mask.width, mask.height))
        marked.paste(MARK, (0, 0), outside)
    panels = [("A", a), ("B", b), (diff.words(), marked)]
    canvas = Image.new("RGB", (3 * width + 2 * GAP, height + LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (label, panel) in enumerate(panels):
        x = i * (width + GAP)
        canvas.paste(panel, (x, LABEL_HEIGHT))
        draw.text((x + 2, 1), label, fill=(0, 0, 0), font=font)
        if diff.bbox is not None and i < 2:
            left, top, right, bottom = diff.bbox
            draw.rectangle((x + left, LABEL_HEIGHT + top, x + right - 1, LABEL_HEIGHT + bottom - 1), outline=MARK)
    return canvas
