"""RAM summaries for golden files: per block, how its final pages are made and a hash of them.

For one block of a final page state (ram.state): how many pages are zero, normal
(a page's bytes) and XBZRLE (the last record of the page; mapped-ram: a set bit is
normal, a clear bit zero), and a sha256 over the final state in address order:
for each page some record set, its offset in the block (be64), its kind (Z, P, X)
and what it holds (the fill byte; the page; the page the XBZRLE delta made).
Pages no record set are left out. Two streams of the same guest memory give the
same hash however often and in what order their pages were sent.

Imports: model, source, ram.state.
References: migration/ram.c (ram_load_precopy).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from ..model import RamItem, RamMemSize, RamPages
from ..source import Source
from .state import NOT_SENT, PAGE, XBZRLE, ZERO, BlockPages, IllegalOffset, PageState, ReadWindow, illegal_record

_PAGE_HEADER = struct.Struct(">QB")
_LETTER = {PAGE: ord("P"), ZERO: ord("Z"), XBZRLE: ord("X")}


def block_summary(state: PageState, pages: BlockPages | None) -> tuple[dict[str, int], str]:
    """({"zero": n, "page": n, "xbzrle": n}, sha256 hex) of a block's final pages (see the module
    docstring); a block without pages (None, or nothing sent) is all zeros and the empty hash."""
    counts = {"zero": 0, "page": 0, "xbzrle": 0}
    digest = hashlib.sha256()
    if pages is None or pages.table is None:
        return counts, digest.hexdigest()
    ps = state.page_size
    update, header = digest.update, _PAGE_HEADER.pack
    window = ReadWindow(state.src)
    view = memoryview(state.buf) if state.buf is not None else None
    try:
        for first, end, value, step in pages.extents():
            if value == NOT_SENT:
                continue
            kind = value & 3
            counts[("page", "zero", "xbzrle")[kind]] += end - first
            letter = _LETTER[kind]
            if kind == PAGE:
                if view is None:
                    raise ValueError("hashing RAM pages needs the stream's bytes")
                where, stride = value >> 10, step >> 10
                for i in range(first, end):
                    update(header(i * ps, letter))
                    update(view[where:where + ps])
                    where += stride
                window.touched(value >> 10, (end - first - 1) * stride + ps)
            elif kind == ZERO:
                fill = bytes(((value >> 2) & 0xFF,))
                for i in range(first, end):
                    update(header(i * ps, letter))
                    update(fill)
            else:
                data = state.content(value)
                if data is None:
                    raise ValueError("hashing XBZRLE pages needs the stream's bytes")
                update(header(first * ps, letter))
                update(data)
    finally:
        window.flush()
        if view is not None:
            view.release()
    return counts, digest.hexdigest()


# ---------------------------------------------------------------- as the walk goes


class _Block:
    def __init__(self, used_length: int) -> None:
        self.used_length = used_length
        self.digest = hashlib.sha256()
        self.counts = {"zero": 0, "page": 0, "xbzrle": 0}
        self.next_page = 0  # every page below it some record set already
        self.in_order = True
        self.pending: list[bytes] = []  # bytes to hash, not yet handed to the hashing thread
        self.pending_size = 0


class StreamSummaries:
    """Block summaries worked out as the walk goes, for a stream that sets each page once and in
    address order (what a paused or stopped VM's stream does): then the digest over the final
    state is the digest of the records in stream order, and the pages are hashed while they are
    mapped anyway, by a second thread (hashlib lets go of the GIL), as the walk goes on.

    Feed it from `decode(on_ram_item=s.feed, on_ram_partial=s.partial)`, then `finish()`. A block
    whose pages come out of order, twice, or by XBZRLE is not summarised here (`summary` says
    None): the caller works it out from a final page state (`block_summary`) instead.
    """

    #: bytes hashed per piece handed to the hashing thread
    PIECE = 1 << 20

    def __init__(self, src: Source) -> None:
        import queue
        import threading

        self.src = src
        self.view = memoryview(src.buf) if src.buf is not None else None
        self.page_size = 0
        self.blocks: dict[str, _Block] = {}
        self.illegal: list[IllegalOffset] = []
        self.open_run: int | None = None  # first record of the run partly hashed, and how many of its pages
        self.open_done = 0
        self.listed = False
        self._queue: Any = queue.Queue(maxsize=8)
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._hash, name="vmig-ram-hash", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            if self._error:
                continue
            try:
                item[0].update(item[1])
            except BaseException as exc:  # noqa: BLE001 (handed to finish)
                self._error.append(exc)

    def _add(self, block: _Block, data: bytes) -> None:
        """Hash `data` after what this block had so far: gathered to about PIECE bytes, then handed
        to the hashing thread (a queue hand-over per small run would cost more than the hashing)."""
        block.pending.append(data)
        block.pending_size += len(data)
        if block.pending_size >= self.PIECE:
            self._flush(block)

    def _flush(self, block: _Block) -> None:
        if block.pending:
            data = block.pending[0] if len(block.pending) == 1 else b"".join(block.pending)
            block.pending.clear()
            block.pending_size = 0
            self._queue.put((block.digest, data))

    # ------------------------------------------------------------ fed by the walk

    def feed(self, item: RamItem, page_size: int) -> None:
        self.page_size = page_size
        if isinstance(item, RamPages):
            self._run(item, final=True)
        elif isinstance(item, RamMemSize):
            self.listed = True
            for block in item.blocks:
                spec = self.blocks.setdefault(block.idstr, _Block(block.used_length))
                if block.mapped_ram is not None:
                    spec.in_order = False  # its pages are in the region: from the final page state

    def partial(self, run: RamPages, page_size: int) -> None:
        self.page_size = page_size
        self._run(run, final=False)

    def _run(self, run: RamPages, final: bool) -> None:
        spec = self.blocks.get(run.block)
        if spec is None:
            if not self.listed:  # pages before the block list: the final page state sorts them out
                spec = self.blocks.setdefault(run.block, _Block(0))
            spec.in_order = False
            return
        if not spec.in_order:
            return
        ps = self.page_size
        key = run.span.offset if run.span is not None else None
        done = self.open_done if key is not None and key == self.open_run else 0
        count = run.count
        if done == 0:
            bad = illegal_record(run, spec.used_length, ps)[1]
            if bad is not None:
                self.illegal.append(bad)
                spec.in_order = False
                return
            if run.kind == "xbzrle" or run.offset // ps < spec.next_page or run.span is None or run.data is not None:
                spec.in_order = False
                return
        first = run.offset // ps
        letter = ord("P") if run.kind == "page" else ord("Z")
        header = _PAGE_HEADER.pack
        per_piece = max(1, self.PIECE // ps)
        if run.kind == "page":
            view = self.view
            assert view is not None
            stride = run.record_size(ps)
            where = run.payload_offset(done, ps)
            for i0 in range(done, count, per_piece):
                i1 = min(count, i0 + per_piece)
                parts: list[Any] = [None] * (2 * (i1 - i0))
                parts[0::2] = [header(i * ps, letter) for i in range(first + i0, first + i1)]
                parts[1::2] = [view[w:w + ps] for w in range(where, where + (i1 - i0) * stride, stride)]
                where += (i1 - i0) * stride
                self._add(spec, b"".join(parts))
        else:
            fill = bytes((run.fill,))
            for i0 in range(done, count, per_piece * 16):
                i1 = min(count, i0 + per_piece * 16)
                self._add(spec, b"".join([header(i * ps, letter) + fill for i in range(first + i0, first + i1)]))
        spec.counts[run.kind] += count - done
        spec.next_page = first + count
        if final:
            self.open_run, self.open_done = None, 0
        else:
            self.open_run, self.open_done = key, count

    # ------------------------------------------------------------ results

    def finish(self) -> None:
        """Hash what is left, wait for the hashing thread; let the input go."""
        for block in self.blocks.values():
            self._flush(block)
        self._queue.put(None)
        self._thread.join()
        if self.view is not None:
            self.view.release()
            self.view = None
        if self._error:
            raise self._error[0]

    def close(self) -> None:
        if self._thread.is_alive():
            self.finish()

    @property
    def complete(self) -> bool:
        """Every block was summarised as the walk went (and no record is past its block's end)."""
        return not self.illegal and all(spec.in_order for spec in self.blocks.values())

    def summary(self, name: str) -> tuple[dict[str, int], str] | None:
        spec = self.blocks.get(name)
        if spec is None or not spec.in_order:
            return None
        return dict(spec.counts), spec.digest.hexdigest()
