"""Two streams' final RAM, compared block by block at memory speed (what `vmig diff` says of RAM).

Each side is a `PageState` (ram.state); page contents are never held. The two sides'
extents (runs of pages whose contents follow each other in the input at one stride,
zero pages, pages not sent) are walked together. Where both sides have page contents
at the same stride and the same distance between the inputs (the same records in
between, as in two streams of one guest), whole ranges of both inputs are compared
in `RAM_CHUNK` slices (pages, record words and zero-page records between them alike),
and only a slice that differs is looked at page by page. Everything else is compared
page by page by content: a zero page equals a page of zeros, an XBZRLE page is its
result. Input pages read are let go every few MiB (ReadWindow), so memory does not
grow with the inputs.

Imports: ram.state.
References: migration/ram.c (ram_load_precopy: the last record for a page wins).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .state import NOT_SENT, PAGE, ZERO, BlockPages, PageState, ReadWindow, unpack

#: RAM pages are read from both inputs in slices of at most this many bytes (pages and the record
#: words between them): one bytes comparison per slice, and small enough that the copies are
#: reused from the allocator's free lists (larger ones come from fresh memory each time: slower)
RAM_CHUNK = 64 << 10
#: after reading this much of an input out of order, let the kernel drop the mapped pages
DROP_AFTER = 8 << 20
#: progress is reported about once per this many bytes of guest RAM compared
PROGRESS_EVERY = 32 << 20


@dataclass
class BlockComparison:
    """How one RAM block's final pages compare. `first`: (block offset, A's input offset of the
    page, B's) of the lowest differing page; an offset is None where that side's page is not a
    page in the input (zero, XBZRLE)."""

    pages: int
    differing: int = 0
    only_a: int = 0
    only_b: int = 0
    first: tuple[int, int | None, int | None] | None = None
    records_a: dict[str, int] = field(default_factory=lambda: {"page": 0, "zero": 0, "xbzrle": 0})
    records_b: dict[str, int] = field(default_factory=lambda: {"page": 0, "zero": 0, "xbzrle": 0})
    first_record_a: int | None = None
    first_record_b: int | None = None


def _extents(pages: BlockPages | None, length: int) -> Iterator[tuple[int, int, int, int]]:
    if pages is None:
        yield 0, length, NOT_SENT, 0
        return
    yield from pages.extents()
    if pages.pages < length:
        yield pages.pages, length, NOT_SENT, 0


class _Side:
    def __init__(self, state: PageState | None, pages: BlockPages | None, length: int,
                 window: ReadWindow | None) -> None:
        self.state, self.pages = state, pages
        self.buf = state.buf if state is not None else None
        self.size = state.stream_size if state is not None else 0
        self.window = window
        self.extents = _extents(pages, length)
        self.first = self.end = 0
        self.value, self.step = NOT_SENT, 0
        self.advance(0)

    def advance(self, pos: int) -> None:
        while self.end <= pos:
            self.first, self.end, self.value, self.step = next(self.extents)

    def at(self, pos: int) -> tuple[int, int]:
        """(value of page `pos`, step to the next)."""
        if self.value < 0:
            return self.value, 0
        return self.value + (pos - self.first) * self.step, self.step

    def content(self, value: int, page_size: int) -> bytes | None:
        if self.state is None:
            return None
        data = self.state.content(value)
        if data is not None and value & 3 == PAGE and self.window is not None:
            self.window.touched(value >> 10, page_size)
        return data


class _Compare:
    def __init__(self, a: _Side, b: _Side, length: int, page_size: int, can_read: bool,
                 tick: Callable[[int], None]) -> None:
        self.a, self.b, self.length, self.page_size, self.can_read, self.tick = a, b, length, page_size, can_read, tick
        self.result = BlockComparison(length)
        self.next_tick = 0
        # the window: ranges (first page, pages, A's input offset of the first); B's are A's - delta
        self.win_pages: list[int] = []
        self.win_counts: list[int] = []
        self.win_offsets: list[int] = []
        self.win_delta = self.win_end = self.win_stride = 0

    def run(self) -> BlockComparison:
        a, b, n, ps = self.a, self.b, self.length, self.page_size
        wp, wc, wx = self.win_pages, self.win_counts, self.win_offsets
        self.report(0)
        pos = 0
        while pos < n:
            a.advance(pos)
            b.advance(pos)
            end = min(a.end, b.end, n)
            va, sa = a.at(pos)
            vb, sb = b.at(pos)
            c, pos = pos, end
            ka = va & 3 if va >= 0 else -1
            kb = vb & 3 if vb >= 0 else -1
            if ka == PAGE and kb == PAGE and sa == sb and (sa or end - c == 1):
                if not self.can_read:
                    continue
                stride = (sa >> 10) or ps
                x, y = va >> 10, vb >> 10
                if wp and stride == self.win_stride and x - y == self.win_delta and x >= self.win_end \
                        and x - self.win_end <= RAM_CHUNK:
                    last = len(wp) - 1
                    if wp[last] + wc[last] == c and wx[last] + wc[last] * stride == x:
                        wc[last] += end - c  # the same run goes on
                    else:
                        wp.append(c)
                        wc.append(end - c)
                        wx.append(x)
                else:
                    if wp:
                        self.flush()
                    wp.append(c)
                    wc.append(end - c)
                    wx.append(x)
                    self.win_delta, self.win_stride = x - y, stride
                self.win_end = x + (end - c - 1) * stride + ps
                continue
            if c >= self.next_tick and not wp:
                self.report(c)
            if va == NOT_SENT or vb == NOT_SENT:
                if va != vb:
                    if vb == NOT_SENT:
                        self.result.only_a += end - c
                    if va == NOT_SENT:
                        self.result.only_b += end - c
                continue
            if ka == ZERO and kb == ZERO:
                if (va ^ vb) & 0x3FC:  # other fill bytes
                    for i in range(c, end):
                        self.differs(i, None, None)
                continue
            if not self.can_read:
                continue
            self.pages(c, end, va, sa, vb, sb)
        if wp:
            self.flush()
        return self.result

    def differs(self, page: int, x: int | None, y: int | None) -> None:
        r = self.result
        r.differing += 1
        if r.first is None or page * self.page_size < r.first[0]:
            r.first = (page * self.page_size, x, y)

    def pages(self, c: int, end: int, va: int, sa: int, vb: int, sb: int) -> None:
        """Pages c..end-1 one by one, by content."""
        ps = self.page_size
        for i in range(c, end):
            x, y = va + (i - c) * sa, vb + (i - c) * sb
            pa, pb = self.a.content(x, ps), self.b.content(y, ps)
            if pa is not None and pb is not None and pa != pb:
                self.differs(i, x >> 10 if x & 3 == PAGE else None, y >> 10 if y & 3 == PAGE else None)
            if i >= self.next_tick:
                self.report(i)

    def flush(self) -> None:
        """Compare the window's ranges of both inputs in slices, and empty it."""
        wp, wc, wx, delta, stride = self.win_pages, self.win_counts, self.win_offsets, self.win_delta, self.win_stride
        ps = self.page_size
        buf_a, buf_b = self.a.buf, self.b.buf
        first_page, last_page = wp[0], wp[-1] + wc[-1]
        start, end = wx[0], self.win_end
        span = max(end - start, 1)
        ri = k = 0  # the next page of the window not looked at yet: range ri, page k of it
        pos = start
        window_a, window_b = self.a.window, self.b.window
        while pos < end:
            length = min(RAM_CHUNK, end - pos)
            x = buf_a[pos:pos + length]
            y = buf_b[pos - delta:pos - delta + length]
            if window_a is not None:
                window_a.touched(pos, length)
            if window_b is not None:
                window_b.touched(pos - delta, length)
            if x != y:
                # the pages that overlap this slice, each compared whole (once, even when it
                # overlaps the next slice too)
                while ri < len(wp):
                    base, count = wx[ri], wc[ri]
                    if k < count and base + k * stride + ps <= pos:
                        k = max(k, (pos - ps - base) // stride + 1)
                    if k >= count:
                        ri, k = ri + 1, 0
                        continue
                    off = base + k * stride
                    if off >= pos + length:
                        break
                    if buf_a[off:off + ps] != buf_b[off - delta:off - delta + ps]:
                        self.differs(wp[ri] + k, off, off - delta)
                    k += 1
            pos += length
            page = first_page + (last_page - first_page) * (pos - start) // span
            if page >= self.next_tick:
                self.report(page)
        wp.clear()
        wc.clear()
        wx.clear()

    def report(self, page: int) -> None:
        self.tick(page)
        self.next_tick = page + max(1, PROGRESS_EVERY // self.page_size)


def block_length(pages: BlockPages | None, page_size: int) -> int:
    """Pages of a block on one side (0 when the side has no such block)."""
    return pages.pages if pages is not None else 0


def compare_block(name: str, a: PageState | None, b: PageState | None, page_size: int, can_read: bool,
                  tick: Callable[[int], None] = lambda page: None) -> BlockComparison:
    """Compare block `name` of two final page states; `tick(page)` reports progress in pages.
    Without `can_read` only what is known without the pages' bytes is compared (which pages
    were sent, zero against zero)."""
    pa = a.blocks.get(name) if a is not None else None
    pb = b.blocks.get(name) if b is not None else None
    length = max(block_length(pa, page_size), block_length(pb, page_size))
    side_a = _Side(a, pa, length, ReadWindow(a.src, DROP_AFTER) if a is not None and can_read else None)
    side_b = _Side(b, pb, length, ReadWindow(b.src, DROP_AFTER) if b is not None and can_read else None)
    try:
        result = _Compare(side_a, side_b, length, page_size, can_read, tick).run()
    finally:
        for side in (side_a, side_b):
            if side.window is not None:
                side.window.flush()
    for pages, records, attr in ((pa, result.records_a, "first_record_a"), (pb, result.records_b, "first_record_b")):
        if pages is not None:
            records.update(pages.records)
            setattr(result, attr, pages.first_record)
    return result


def kind_counts(pages: BlockPages | None) -> dict[str, Any]:
    return dict(pages.records) if pages is not None else {"page": 0, "zero": 0, "xbzrle": 0}
