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

from ...errors import VmigError
from ...source import Source
from . import MAP_CELLS, ReportSide, report_html


def report_side(src: Source, name: str, *, device: str | None = None, ram_runs: bool = False) -> ReportSide:
    """Decode `src` once (feeding the final page state as the walk goes), then draw its screen."""
    from ...codec.decode import decode
    from ...ram.blockmap import block_maps
    from ...ram.state import PageState
    from ...screen import screen_of

    with PageState(src.sibling()) as state:
        stream = decode(src.sibling(), ram_runs=ram_runs, partial=True, on_ram_item=state.feed)
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
        try:
            side.screen = screen_of(stream, src, device, state=state)  # the same walk's pages (then closed)
        except VmigError as err:
            side.screen_error = str(err)
    return side


def build_report(path_a: str, path_b: str | None = None, *, device: str | None = None,
                 snapshots: tuple[str | None, ...] = ()) -> str:
    """The report page of one stream, or of two and their differences. `snapshots`: the qcow2
    snapshot to read from each path (Source.open), in order."""
    snap_a, snap_b = (tuple(snapshots) + (None, None))[:2]
    from ...diff import diff_streams
    from ...screen.compare import compare_images

    with ExitStack() as stack:
        src_a = stack.enter_context(Source.open(path_a, snapshot=snap_a))
        a = report_side(src_a, os.path.basename(path_a), device=device, ram_runs=path_b is not None)
        if path_b is None:
            return report_html(a)
        src_b = stack.enter_context(Source.open(path_b, snapshot=snap_b))
        b = report_side(src_b, os.path.basename(path_b), device=device, ram_runs=True)
        diff = None
        if a.stream.error or b.stream.error:
            a.notes.append("streams not compared: " + "; ".join(f"{s.name} is cut short" for s in (a, b)
                                                                   if s.stream.error))
        else:
            diff = diff_streams(a.stream, b.stream, src_a, src_b)
        screen_diff = compare_images(a.screen.image, b.screen.image) if a.screen and b.screen else None
        return report_html(a, b, diff, screen_diff)
