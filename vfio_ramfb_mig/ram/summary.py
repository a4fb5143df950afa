"""RAM summaries for golden files: per block, how its final pages are made and a hash of them.

For one block of a final page state (ram.state): how many pages are zero, normal
(a page's bytes), XBZRLE and compressed (the last record of the page; mapped-ram:
a set bit is normal, a clear bit zero), and a sha256 over the final state in
address order: for each page some record set, its offset in the block (be64), its
kind (Z, P, X) and what it holds (the fill byte; the page; the page the XBZRLE
delta made). A compressed page (COMPRESS_PAGE, QEMU <= 9.0) adds the page its zlib
data inflates to with the letter P, as a normal page: a stream sent with and one
sent without the `compress` capability hash alike when the guest memory is the
same (the counts still tell them apart). Pages no record set are left out. Two
streams of the same guest memory give the same hash however often and in what
order their pages were sent.

Imports: model, source, ram.state.
References: migration/ram.c (ram_load_precopy).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import Any

from ..errors import InputError
from ..model import SINGLE_RECORD_KINDS, RamItem, RamMarker, RamMemSize, RamPages
from ..source import Source
from . import hashworker
from .state import (
    COMPRESSED,
    KIND_NAMES,
    NOT_SENT,
    PAGE,
    XBZRLE,
    ZERO,
    BlockPages,
    IllegalOffset,
    PageState,
    ReadWindow,
    illegal_record,
)

_PAGE_HEADER = hashworker.PAGE_HEADER
#: a compressed page hashes as the normal page it holds
_LETTER = {PAGE: hashworker.LETTER_PAGE, ZERO: hashworker.LETTER_ZERO, XBZRLE: hashworker.LETTER_XBZRLE,
           COMPRESSED: hashworker.LETTER_PAGE}
_EMPTY_DIGEST = hashlib.sha256().hexdigest()


def block_summary(state: PageState, pages: BlockPages | None) -> tuple[dict[str, int], str]:
    """({"zero": n, "page": n, "xbzrle": n[, "compressed": n]}, sha256 hex) of a block's final pages
    (see the module docstring; "compressed" only when there are some); a block without pages
    (None, or nothing sent) is all zeros and the empty hash."""
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
            name = KIND_NAMES[kind]
            counts[name] = counts.get(name, 0) + end - first
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
                data = state.content(value)  # XBZRLE, compressed: one page each
                if data is None:
                    raise ValueError(f"hashing {name} pages needs the stream's bytes")
                update(header(first * ps, letter))
                update(data)
    finally:
        window.flush()
        if view is not None:
            view.release()
    return counts, digest.hexdigest()


# ---------------------------------------------------------------- as the walk goes


class _Block:
    def __init__(self, used_length: int, number: int) -> None:
        self.used_length = used_length
        self.number = number  # the block's number for the hasher
        self.counts = {"zero": 0, "page": 0, "xbzrle": 0}
        self.next_page = 0  # every page below it some record set already
        self.in_order = True


class _ThreadHasher:
    """Hashes in a second thread of this process (hashlib lets go of the GIL while it hashes): for
    input that is not a regular file read in place (a pipe, a decompressed spool), whose pages are
    mapped only while the walk passes them. The pages are gathered into pieces of about PIECE
    bytes first: a hand-over per small run would cost more than the hashing."""

    #: bytes hashed per piece handed to the hashing thread
    PIECE = 1 << 20

    def __init__(self, src: Source, page_size: int) -> None:
        import queue
        import threading

        self.view = memoryview(src.buf) if src.buf is not None else None
        self.page_size = page_size
        self.digests: dict[int, Any] = {}
        self.pending: dict[int, list[bytes]] = {}
        self.pending_size: dict[int, int] = {}
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

    def _add(self, block: int, data: bytes) -> None:
        pending = self.pending.setdefault(block, [])
        pending.append(data)
        self.pending_size[block] = self.pending_size.get(block, 0) + len(data)
        if self.pending_size[block] >= self.PIECE:
            self._flush(block)

    def _flush(self, block: int) -> None:
        pending = self.pending.get(block)
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self.pending_size[block] = 0
            digest = self.digests.get(block)
            if digest is None:
                digest = self.digests[block] = hashlib.sha256()
            self._queue.put((digest, data))

    def pages(self, block: int, first: int, count: int, where: int, stride: int) -> None:
        view, ps = self.view, self.page_size
        assert view is not None
        header, letter = _PAGE_HEADER.pack, _LETTER[PAGE]
        per_piece = max(1, self.PIECE // ps)
        for i0 in range(0, count, per_piece):
            i1 = min(count, i0 + per_piece)
            parts: list[Any] = [None] * (2 * (i1 - i0))
            parts[0::2] = [header(i * ps, letter) for i in range(first + i0, first + i1)]
            parts[1::2] = [view[w:w + ps] for w in range(where, where + (i1 - i0) * stride, stride)]
            where += (i1 - i0) * stride
            self._add(block, b"".join(parts))

    def zeros(self, block: int, first: int, count: int, fill: int) -> None:
        header, letter, tail = _PAGE_HEADER.pack, _LETTER[ZERO], bytes((fill,))
        step = max(1, self.PIECE // self.page_size) * 16
        for i0 in range(first, first + count, step):
            i1 = min(first + count, i0 + step)
            self._add(block, b"".join([header(i * self.page_size, letter) + tail for i in range(i0, i1)]))

    def flush(self) -> None:
        """Hand what is gathered to the hashing thread now (the end of a RAM section)."""
        for block in list(self.pending):
            self._flush(block)

    def finish(self) -> dict[int, str]:
        self.flush()
        self.close()
        if self._error:
            raise self._error[0]
        return {block: digest.hexdigest() for block, digest in self.digests.items()}

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.view is not None:
            self.view.release()
            self.view = None


class _ProcessHasher:
    """Hashes in a worker process (ram/hashworker.py) that maps the stream's file itself: the walk
    only tells it where each run's pages lie, so no page is copied or waited for here. For a
    stream read in place from a regular file (Source.file_region)."""

    #: bytes of run messages gathered before a write to the worker
    BATCH = 1 << 16
    #: ... or bytes of pages they cover: the worker must not wait while a few long runs go by
    BATCH_PAGES = 8 << 20

    def __init__(self, path: str, base: int, page_size: int) -> None:
        self.page_size = page_size
        self._out = bytearray()
        self._covered = 0  # bytes of pages the gathered messages cover
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", hashworker.__file__, path, str(base), str(page_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def _send(self, op: int, block: int, fill: int, first: int, count: int, where: int, stride: int) -> None:
        self._out += hashworker.MESSAGE.pack(op, block, fill, first, count, where, stride)
        self._covered += count * self.page_size if op == hashworker.RUN_PAGE else 0
        if len(self._out) >= self.BATCH or self._covered >= self.BATCH_PAGES:
            self._write()

    def flush(self) -> None:
        """Send the gathered messages now (the end of a RAM section): the worker would otherwise
        wait for them while this process goes on with the stream's other sections."""
        if self._out:
            self._write()

    def _write(self) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(self._out)
            self._proc.stdin.flush()  # all of it now: the worker may be waiting for it
        except BrokenPipeError:
            raise self._failed() from None
        self._out.clear()
        self._covered = 0

    def _failed(self) -> InputError:
        self._proc.kill()
        err = self._proc.communicate()[1].decode("utf-8", "replace").strip().splitlines()
        return InputError(f"hashing the RAM pages failed: {err[-1] if err else 'the worker process died'}")

    def pages(self, block: int, first: int, count: int, where: int, stride: int) -> None:
        self._send(hashworker.RUN_PAGE, block, 0, first, count, where, stride)

    def zeros(self, block: int, first: int, count: int, fill: int) -> None:
        self._send(hashworker.RUN_ZERO, block, fill, first, count, 0, 0)

    def finish(self) -> dict[int, str]:
        self._send(hashworker.END, 0, 0, 0, 0, 0, 0)
        self._write()
        out, _ = self._proc.communicate()
        if self._proc.returncode != 0:
            raise self._failed()
        digests = {}
        for line in out.decode().splitlines():
            block, digest = line.split()
            digests[int(block)] = digest
        return digests

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


class StreamSummaries:
    """Block summaries worked out as the walk goes, for a stream that sets each page once and in
    address order (what a paused or stopped VM's stream does): then the digest over the final
    state is the digest of the records in stream order, and the pages are hashed as the walk
    goes on, beside it: by a worker process reading the stream's file (`_ProcessHasher`), or, for
    input that is no regular file, by a second thread (`_ThreadHasher`).

    Feed it from `decode(on_ram_item=s.feed, on_ram_partial=s.partial)`, then `finish()`. A block
    whose pages come out of order, twice, by XBZRLE or compressed (inflating is done in this
    process, from the final page state) is not summarised here (`summary` says None): the caller
    works it out from a final page state (`block_summary`) instead.
    """

    def __init__(self, src: Source) -> None:
        self.src = src
        self.page_size = 0
        self.blocks: dict[str, _Block] = {}
        self.illegal: list[IllegalOffset] = []
        self.open_run: int | None = None  # first record of the run partly hashed, and how many of its pages
        self.open_done = 0
        self.listed = False
        self._hasher: _ThreadHasher | _ProcessHasher | None = None
        self._digests: dict[int, str] = {}

    def _hashing(self) -> _ThreadHasher | _ProcessHasher:
        """The hasher, started with the first pages (once the page size is known)."""
        if self._hasher is None:
            region = self.src.file_region()
            self._hasher = (_ProcessHasher(region[0], region[1], self.page_size) if region is not None
                            else _ThreadHasher(self.src, self.page_size))
        return self._hasher

    # ------------------------------------------------------------ fed by the walk

    def feed(self, item: RamItem, page_size: int) -> None:
        self.page_size = page_size
        if isinstance(item, RamPages):
            self._run(item, final=True)
        elif isinstance(item, RamMarker):
            if item.kind == "eos" and self._hasher is not None:
                self._hasher.flush()
        elif isinstance(item, RamMemSize):
            self.listed = True
            for block in item.blocks:
                spec = self.blocks.get(block.idstr)
                if spec is None:
                    spec = self.blocks[block.idstr] = _Block(block.used_length, len(self.blocks))
                if block.mapped_ram is not None:
                    spec.in_order = False  # its pages are in the region: from the final page state

    def partial(self, run: RamPages, page_size: int) -> None:
        self.page_size = page_size
        self._run(run, final=False)

    def _run(self, run: RamPages, final: bool) -> None:
        spec = self.blocks.get(run.block)
        if spec is None:
            if not self.listed:  # pages before the block list: the final page state sorts them out
                spec = self.blocks.setdefault(run.block, _Block(0, len(self.blocks)))
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
            if run.kind in SINGLE_RECORD_KINDS or run.offset // ps < spec.next_page or run.span is None \
                    or run.data is not None:
                spec.in_order = False
                return
        first = run.offset // ps
        if count > done:
            if run.kind == "page":
                self._hashing().pages(spec.number, first + done, count - done, run.payload_offset(done, ps),
                                      run.record_size(ps))
            else:
                self._hashing().zeros(spec.number, first + done, count - done, run.fill)
        spec.counts[run.kind] += count - done
        spec.next_page = first + count
        if final:
            self.open_run, self.open_done = None, 0
        else:
            self.open_run, self.open_done = key, count

    # ------------------------------------------------------------ results

    def finish(self) -> None:
        """Wait for the pages handed to the hasher to be hashed: the digests are then ready."""
        if self._hasher is not None:
            hasher, self._hasher = self._hasher, None
            try:
                self._digests = hasher.finish()
            finally:
                hasher.close()

    def close(self) -> None:
        """Stop hashing without waiting (after finish, or when the decode failed)."""
        if self._hasher is not None:
            hasher, self._hasher = self._hasher, None
            hasher.close()

    @property
    def complete(self) -> bool:
        """Every block was summarised as the walk went (and no record is past its block's end)."""
        return not self.illegal and all(spec.in_order for spec in self.blocks.values())

    def summary(self, name: str) -> tuple[dict[str, int], str] | None:
        """A block's counts and digest (waiting for the hasher, if `finish` was not called yet)."""
        spec = self.blocks.get(name)
        if spec is None or not spec.in_order:
            return None
        self.finish()
        return dict(spec.counts), self._digests.get(spec.number, _EMPTY_DIGEST)
