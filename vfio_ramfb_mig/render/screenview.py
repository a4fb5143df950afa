"""The guest's screen in a terminal: two pixels per character cell with the upper half block.

Each cell is "▀" with the upper pixel as foreground colour and the lower one as
background, so a terminal cell (about twice as tall as wide) holds two square
pixels. The picture is scaled down, keeping its aspect ratio, to the width the
console offers and to the console's height less `reserve` lines (the geometry line
and the prompt); it is never scaled up.

Imports: PIL, rich, screen (its types only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

UPPER_HALF = "\u2580"


@dataclass
class ScreenPreview:
    """A rich renderable of an image, scaled to fit."""

    image: Image.Image
    #: console lines left free below the picture; None: the height is not limited
    reserve: int | None = 2

    def fit(self, max_width: int, max_height: int | None) -> tuple[int, int]:
        """(columns, pixel rows) of the scaled picture: at most max_width columns and, when given,
        max_height lines of two pixel rows each."""
        width, height = self.image.size
        scale = min(1.0, max_width / width)
        if max_height is not None:
            scale = min(scale, 2 * max_height / height)
        columns = max(1, round(width * scale))
        rows = max(2, round(height * scale))
        return columns, rows + rows % 2

    def _size(self, console: Console, options: ConsoleOptions) -> tuple[int, int]:
        lines = None
        if self.reserve is not None:
            lines = max(1, (options.height or console.height) - self.reserve)
        return self.fit(options.max_width, lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns, rows = self._size(console, options)
        if options.ascii_only:
            # no half block in the terminal's encoding: one pixel per cell, a space on its colour,
            # at half the height (a cell is about twice as tall as wide)
            rows //= 2
            picture = self.image.convert("RGB").resize((columns, max(1, rows)), Image.Resampling.BOX)
            yield from self._cells(picture)
            return
        picture = self.image.convert("RGB").resize((columns, rows), Image.Resampling.BOX)
        yield from self._segments(picture)

    @staticmethod
    def _segments(picture: Image.Image) -> Iterator[Segment]:
        columns, rows = picture.size
        pixels = picture.load()
        styles: dict[tuple[tuple[int, int, int], tuple[int, int, int]], Style] = {}
        for y in range(0, rows, 2):
            for x in range(columns):
                pair = (pixels[x, y], pixels[x, y + 1])
                style = styles.get(pair)
                if style is None:
                    style = styles[pair] = Style(color=Color.from_rgb(*pair[0]), bgcolor=Color.from_rgb(*pair[1]))
                yield Segment(UPPER_HALF, style)
            yield Segment.line()

    @staticmethod
    def _cells(picture: Image.Image) -> Iterator[Segment]:
        columns, rows = picture.size
        pixels = picture.load()
        styles: dict[tuple[int, int, int], Style] = {}
        for y in range(rows):
            for x in range(columns):
                colour = pixels[x, y]
                style = styles.get(colour)
                if style is None:
                    style = styles[colour] = Style(bgcolor=Color.from_rgb(*colour))
                yield Segment(" ", style)
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        columns, _ = self._size(console, options)
        return Measurement(columns, columns)


def geometry_line(device: str, words: str, missing: str = "") -> Text:
    """The line above the preview: which display, its geometry, and what is missing."""
    text = Text.assemble((device, "vmig.name"), ": ", words)
    if missing:
        text.append(f"  {missing}", style="vmig.warn")
    return text
