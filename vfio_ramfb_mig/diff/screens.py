"""Screen comparison: the guest's ramfb screens of A and B, drawn and compared pixel by pixel.

One change when they differ (the number of differing pixels and the box around them); when
only one side can be drawn, why the other cannot. When neither can be drawn (say, both ramfb
configs still zero), the ramfb fields' changes say it all. The ``screen`` ignore pattern
skips the drawing altogether.

Imports: model, source, screen (compare_streams, when a comparison runs), diff.comparison.
"""

from __future__ import annotations

from ..source import Source
from .comparison import Comparison


def compare_screens(diff: Comparison, source_a: Source, source_b: Source) -> None:
    """Add the screen change of A and B (read from their sources) to `diff`, if any."""
    from ..screen import compare_streams

    if diff.ignore("screen"):
        return
    result = compare_streams(diff.a, source_a, diff.b, source_b)
    if result is None:
        return
    if result.diff is not None:
        if not result.diff.same:
            d = result.diff
            diff.add("screen", "screen", "screen", d.words(), old={"size": list(d.size_a), "bbox": list(d.bbox or ())},
                     new={"size": list(d.size_b), "bbox": list(d.bbox or ())}, count=d.pixels)
    elif result.a is not None or result.b is not None:
        side, why = ("B", result.b_error) if result.a is not None else ("A", result.a_error)
        diff.add("screen", "screen", "screen", f"only {'A' if side == 'B' else 'B'} has a screen; {side}: {why}",
                 old=None if side == "A" else {"size": list(result.a.image.size)},
                 new=None if side == "B" else {"size": list(result.b.image.size)})
