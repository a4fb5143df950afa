"""What a report shows about a stream, gathered from the library: decode, final page state,
screen, and the diff of two streams. The page itself is laid out by this package's
__init__; the CLI only calls `build_report`.

A stream that fails to decode still gets a page: what decoded before the error, the
error itself, and whatever else could be made from it. A screen that cannot be drawn
is said in words (why: no ramfb state, no mode yet, outside RAM, a config QEMU refuses).

Imports: source, codec (decode), ram, screen, diff, errors.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import TYPE_CHECKING

from ...errors import VmigError
from ...source import Source

if TYPE_CHECKING:
    from ...ram.state import PageState
from . import MAP_CELLS, ReportSide, report_html


def _decoded(src: Source, name: str, stack: ExitStack) -> tuple[ReportSide, PageState]:
    """Decode `src` once, feeding its final page state as the walk goes (memory flat in the
    stream: no page runs kept); the state stays open in `stack` for the screen and the diff."""
    from ...codec.decode import decode
    from ...ram.blockmap import block_maps
    from ...ram.state import PageState

    state = stack.enter_context(PageState(src.sibling()))
    stream = decode(src.sibling(), ram_runs=False, partial=True, on_ram_item=state.feed)
    state.finish()
    side = ReportSide(name, stream, src.buf)
    try:
        state.check()
        side.ram = block_maps(state, MAP_CELLS)
        if not side.ram:
            side.ram, side.ram_note = None, "the stream carries no RAM"
    except VmigError as err:
        side.ram_note = f"no RAM map: {err}"
    if stream.error:
        side.ram_note = ((side.ram_note or "") + f" The stream is cut short ({stream.error}): pages after "
                         "that point are missing.").strip()
    return side, state


def _draw(side: ReportSide, src: Source, device: str | None, state: PageState) -> None:
    """The side's screen, from the pages of its decode's walk (screen_of closes the state)."""
    from ...screen import screen_of

    try:
        side.screen = screen_of(side.stream, src, device, state=state)
    except VmigError as err:
        side.screen_error = str(err)


def build_report(path_a: str, path_b: str | None = None, *, device: str | None = None,
                 snapshots: tuple[str | None, ...] = ()) -> str:
    """The report page of one stream, or of two and their differences. `snapshots`: the qcow2
    snapshot to read from each path (Source.open), in order. Each stream is walked once: its
    final page state serves the RAM map, the diff and then the screen."""
    snap_a, snap_b = (tuple(snapshots) + (None, None))[:2]
    from ...diff import diff_streams
    from ...screen.compare import compare_images

    with ExitStack() as stack:
        src_a = stack.enter_context(Source.open(path_a, snapshot=snap_a))
        a, state_a = _decoded(src_a, os.path.basename(path_a), stack)
        if path_b is None:
            _draw(a, src_a, device, state_a)
            return report_html(a)
        src_b = stack.enter_context(Source.open(path_b, snapshot=snap_b))
        b, state_b = _decoded(src_b, os.path.basename(path_b), stack)
        diff = None
        if a.stream.error or b.stream.error:
            a.notes.append("streams not compared: " + "; ".join(f"{s.name} is cut short" for s in (a, b)
                                                                   if s.stream.error))
        else:
            diff = diff_streams(a.stream, b.stream, src_a, src_b, ram_a=state_a, ram_b=state_b)
        _draw(a, src_a, device, state_a)
        _draw(b, src_b, device, state_b)
        screen_diff = compare_images(a.screen.image, b.screen.image) if a.screen and b.screen else None
        return report_html(a, b, diff, screen_diff)
