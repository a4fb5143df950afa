"""The final page state: for every RAM block and page, which record last wrote it and what it holds.

What a destination QEMU holds in each RAMBlock once it has loaded the stream
(ram_load_precopy), page by page:

* the last record for a page wins (an iterative stream sends a page again in every
  round in which it was dirty);
* ZERO: the page is the record's fill byte repeated (QEMU only writes, and only
  accepts, fill 0);
* PAGE: the page is the record's payload, where it lies in the input;
* XBZRLE: the record's delta applied to the page as it was before (load_xbzrle);
  the result is kept in an `XbzrleStore` (a temporary file, so memory does not
  grow with it);
* COMPRESS_PAGE (QEMU <= 9.0's `compress`): the page the record's zlib data
  inflates to, inflated again whenever it is read (the table says where the data
  is); data whose zlib stream ends before a full page (QEMU loads it: the rest of
  the page keeps what it held) makes a page computed once and kept in the store;
* mapped-ram: a page whose bitmap bit is set is at pages_offset + index * page
  size in the input; a clear bit is a zero page (the source clears the bit of a
  zero page and the loader leaves the page as it is, zero in a new guest);
* a page no record set is NOT_SENT: a cut stream, or a block the stream does not
  carry (x-ignore-shared); readers report it as missing, never as zeros.

Memory does not grow with the stream (pages re-sent many times cost nothing
more): each block has one `array('q')` of 8 bytes per page, made when its first
record arrives and sized by its used_length. A value packs the kind (2 bits), the
fill byte (8 bits) and where the content is (the input offset of the page or of
the fill byte; an XBZRLE store slot). The tables are bounded: the pages of all
blocks may not exceed both what the stream can hold (a page record takes at
least 9 bytes) and `max_ram` (the user can raise it: VMIG_MAX_RAM, --max-ram).

A record for a page at or past its block's used_length is not applied: QEMU
refuses the stream there ("Illegal RAM offset", host_from_ram_block_offset).
Such records are collected in `PageState.illegal`; `PageState.check()` raises
the first as a CorruptError.

Imports: errors, model, source, wire.xbzrle, wire.ram, ram.walk (inflating a compressed page), text.
References: migration/ram.c (ram_load_precopy, load_xbzrle, host_from_ram_block_offset,
parse_ramblock_mapped_ram, read_ramblock_mapped_ram, save_zero_page), migration/xbzrle.c;
QEMU 7.2 migration/ram.c (ram_load_precopy's COMPRESS_PAGE case, qemu_uncompress_data).
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..text import printable
from ..errors import CorruptError
from ..model import SINGLE_RECORD_KINDS, RamBlock, RamItem, RamMemSize, RamPages
from ..source import Source
from ..wire.ram import ADDRESS_WORD_SIZE
from ..wire.xbzrle import apply_delta
from .limits import SMALLEST_RECORD, check_claim, default_max_ram
from .walk import inflate_page

#: a page no record set
NOT_SENT = -1
#: kinds, in the low bits of a table value
PAGE, ZERO, XBZRLE, COMPRESSED = 0, 1, 2, 3
KIND_NAMES = {PAGE: "page", ZERO: "zero", XBZRLE: "xbzrle", COMPRESSED: "compressed"}
#: kinds whose page is computed (not a range of the input): each page is a range of its own
COMPUTED = (XBZRLE, COMPRESSED)
#: the "fill" of a COMPRESSED value: where is the input offset of the zlib data (its be32 length
#: before it), or a slot of the store (data that inflated to less than a page)
INFLATE, STORED = 0, 1
#: the XBZRLE slot of a page whose result is not known (no source to apply the delta to)
UNKNOWN_SLOT = (1 << 53) - 1
_KIND_MASK = 3
_FILL_SHIFT, _WHERE_SHIFT = 2, 10
_LOW_MASK = (1 << _WHERE_SHIFT) - 1  # kind and fill
#: pages of a range looked at one by one before galloping (BlockPages.extents)
_SHORT = 8
_BE32 = struct.Struct(">I")


def check_ram_claim(blocks: list[RamBlock] | tuple[RamBlock, ...], page_size: int, stream_size: int,
                    max_ram: int | None = None) -> None:
    """Refuse RAM blocks that claim more than the stream can hold and more than `max_ram`
    (LimitError): what a tiny hostile stream would make vmig allocate or write. A mapped-ram
    block's pages are in the stream itself (the walk checked its region)."""
    unmapped = [b for b in blocks if b.mapped_ram is None]
    check_claim(sum(-(-b.used_length // page_size) for b in unmapped), page_size, stream_size, max_ram,
                f"the RAM blocks ({', '.join(repr(printable(b.idstr)) for b in unmapped[:3])}"
                f"{', ...' if len(unmapped) > 3 else ''}) claim")


# ---------------------------------------------------------------- XBZRLE results


class XbzrleStore:
    """The contents of pages whose last record is XBZRLE (or a compressed record whose data
    inflated to less than a page), one page per slot, in an unnamed temporary file (made on first
    use): memory stays flat however many there are."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self._file: Any = None
        self._free: list[int] = []
        self._slots = 0

    def put(self, data: bytes, slot: int | None = None) -> int:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="vmig-xbzrle-")
        if slot is None:
            slot = self._free.pop() if self._free else self._slots
            self._slots = max(self._slots, slot + 1)
        os.pwrite(self._file.fileno(), data, slot * self.page_size)
        return slot

    def get(self, slot: int) -> bytes:
        return os.pread(self._file.fileno(), self.page_size, slot * self.page_size)

    def free(self, slot: int) -> None:
        self._free.append(slot)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# ---------------------------------------------------------------- reading the input out of order


class ReadWindow:
    """The input ranges read out of stream order (page contents), let go every `every` bytes
    (Source.forget), so resident memory does not grow with how much of the input was read."""

    def __init__(self, src: Source | None, every: int = 8 << 20) -> None:
        self.src, self.every = src, every
        self.lo, self.hi, self.read = -1, 0, 0

    def touched(self, start: int, length: int) -> None:
        if self.lo < 0 or start < self.lo:
            self.lo = start
        self.hi = max(self.hi, start + length)
        self.read += length
        if self.read >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.src is not None and self.lo >= 0:
            self.src.forget(self.lo, self.hi)
        self.lo, self.hi, self.read = -1, 0, 0


# ---------------------------------------------------------------- one block


@dataclass(frozen=True, slots=True)
class Page:
    """One page's final state: the kind of the record that last wrote it, and `where` that
    record's payload is in the input: the page's bytes (kind "page"), the fill byte of the ZERO
    record (None for a mapped-ram zero page); an XBZRLE page's result is in the XbzrleStore; a
    compressed page's `where` is its zlib data (None: the page is in the store)."""

    kind: str  # "page" | "zero" | "xbzrle" | "compressed" | "not sent"
    where: int | None = None
    fill: int = 0


@dataclass(frozen=True, slots=True)
class IllegalOffset:
    """A page record QEMU refuses: its page lies at or past its block's used_length
    (host_from_ram_block_offset finds no host page: "Illegal RAM offset")."""

    record: int | None  # input offset of the first record past the end
    block: str
    page_offset: int  # of that record
    used_length: int
    run: RamPages | None = None  # the run it is in

    def message(self) -> str:
        run, name = self.run, printable(self.block)
        where = (f"{run.count} {run.kind} page(s) at {run.offset:#x} run past the end of block '{name}' "
                 f"({self.used_length:#x} bytes)" if run is not None else
                 f"a page record for block '{name}' at offset {self.page_offset:#x} lies past its used_length "
                 f"{self.used_length:#x}")
        return f"{where}: QEMU refuses the stream at the record for {self.page_offset:#x} " \
               f"(\"Illegal RAM offset {self.page_offset:x}\")"


def illegal_record(run: RamPages, used_length: int, page_size: int) -> tuple[int, IllegalOffset | None]:
    """(how many of the run's pages lie inside a block of `used_length` bytes, the first record
    past it or None): QEMU loads a page whose offset is below used_length, and refuses the rest."""
    pages = run.pages_written
    inside = max(0, min(pages, -(-(used_length - run.offset) // page_size)))
    if inside == pages:
        return pages, None
    record = run.record_offset(inside, page_size) if run.span is not None else None
    return inside, IllegalOffset(record, run.block, run.offset + inside * page_size, used_length, run)


class IllegalOffsetScan:
    """The page records QEMU refuses, as decode walks the RAM items (``decode(on_ram_item=scan.feed)``):
    only the block lengths are kept, so memory does not grow with the stream. For `vmig check`,
    which needs no page state. `compressed` keeps the first compressed run (COMPRESS_PAGE), which
    a destination refuses or not by its version and capabilities."""

    def __init__(self) -> None:
        self.lengths: dict[str, int] = {}
        self.found: list[IllegalOffset] = []
        self.compressed: list[RamPages] = []

    def feed(self, item: RamItem, page_size: int) -> None:
        if isinstance(item, RamPages) and item.kind == "compressed" and not self.compressed:
            self.compressed.append(item)
        if isinstance(item, RamMemSize):
            for b in item.blocks:
                self.lengths[b.idstr] = b.used_length
        elif isinstance(item, RamPages) and not self.found:
            used = self.lengths.get(item.block)
            if used is not None:
                bad = illegal_record(item, used, page_size)[1]
                if bad is not None:
                    self.found.append(bad)


def illegal_offsets(stream: Any) -> list[IllegalOffset]:
    """The first page record QEMU refuses (past its block's end), of a stream decoded with its runs."""
    from ..model import RamBody, Section

    scan = IllegalOffsetScan()
    for r in stream.records:
        if isinstance(r, Section) and isinstance(r.body, RamBody) and r.body.runs_kept:
            for item in r.body.items:
                scan.feed(item, r.body.page_size)
    return scan.found


class BlockPages:
    """The final state of one RAM block: a table of one value per page (see the module docstring)."""

    def __init__(self, block: RamBlock, page_size: int) -> None:
        self.block, self.idstr, self.used_length, self.page_size = block, block.idstr, block.used_length, page_size
        self.pages = -(-block.used_length // page_size)
        self.table: array | None = None
        #: records applied, by kind ("page", "zero", "xbzrle"; "compressed" once there is one);
        #: mapped-ram: pages present as "page"
        self.records = {"page": 0, "zero": 0, "xbzrle": 0}
        #: input offset of the first record applied (None: none)
        self.first_record: int | None = None
        #: one byte per page, 1 where a record wrote a page some record had written before (an
        #: iterative stream sends a page again in every round it was dirty); None while none was
        self.resent: bytearray | None = None

    def mark_resent(self, first: int, before: array) -> None:
        """Note the pages from `first` whose table values were `before` (the run about to replace
        them) that some record had already set."""
        if before.count(NOT_SENT) == len(before):
            return
        if self.resent is None:
            self.resent = bytearray(self.pages)
        for i, v in enumerate(before):
            if v != NOT_SENT:
                self.resent[first + i] = 1

    def resent_pages(self) -> int:
        """Pages more than one record wrote."""
        return 0 if self.resent is None else self.pages - self.resent.count(0)

    @property
    def mapped(self) -> bool:
        return self.block.mapped_ram is not None

    def value(self, index: int) -> int:
        return NOT_SENT if self.table is None else self.table[index]

    def page(self, index: int) -> Page:
        v = self.value(index)
        if v < 0:
            return Page("not sent")
        kind = v & _KIND_MASK
        where = v >> _WHERE_SHIFT
        if kind == PAGE:
            return Page("page", where)
        if kind == ZERO:
            return Page("zero", where or None, (v >> _FILL_SHIFT) & 0xFF)
        if kind == COMPRESSED:
            return Page("compressed", where if (v >> _FILL_SHIFT) & 0xFF == INFLATE else None)
        return Page("xbzrle")

    def sent(self) -> int:
        """Pages some record set."""
        if self.table is None:
            return 0
        return self.pages - self.table.count(NOT_SENT)

    def extents(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int, int, int]]:
        """(first page, end page, value of the first page, step) over [start, stop): maximal ranges in
        which each page's value is the previous one's plus `step`: pages of one kind (and fill)
        whose contents lie `step >> 10` bytes apart in the input (a run of records, a mapped-ram
        region), or one value repeated (step 0: mapped-ram zero pages, pages not sent). Each
        XBZRLE or compressed page is a range of its own."""
        stop = self.pages if stop is None else min(stop, self.pages)
        if self.table is None:
            if start < stop:
                yield start, stop, NOT_SENT, 0
            return
        table = self.table
        i = start
        while i < stop:
            v = table[i]
            if v >= 0 and v & _KIND_MASK in COMPUTED:
                yield i, i + 1, v, 0
                i += 1
                continue
            step = 0
            if v >= 0 and i + 1 < stop:
                nxt = table[i + 1]
                # the next page of the same kind and fill, further on in the input: a record after this one
                if nxt > v and (nxt ^ v) & _LOW_MASK == 0:
                    step = nxt - v
            # most ranges are short (pages of other kinds alternate): look at a few pages one by one,
            # and gallop over whole slices only when the range goes on past them
            end, expect = i + 1, v + step
            limit = min(stop, i + _SHORT)
            while end < limit and table[end] == expect:
                end += 1
                expect += step
            if end == limit and end < stop:
                end = _run_end(table, i, stop, v, step)
            yield i, end, v, step
            i = end

    def close(self) -> None:
        self.table = None


def _progression(v: int, step: int, n: int) -> array:
    return array("q", range(v, v + n * step, step)) if step else array("q", [v]) * n


def _run_end(table: array, i: int, stop: int, v: int, step: int) -> int:
    """The end of the range from i where table[j] == v + (j - i) * step (galloping: whole slices
    are compared in C, so a long range costs a few Python steps)."""
    n, good = 1, i + 1  # table[i:good] is known to match
    while good < stop:
        hi = min(stop, good + n)
        if table[good:hi] == _progression(v + (good - i) * step, step, hi - good):
            good, n = hi, n * 2
            continue
        # the mismatch is in [good, hi): find it by halving
        lo = good
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if table[lo:mid] == _progression(v + (lo - i) * step, step, mid - lo):
                lo = mid
            else:
                hi = mid
        return lo if table[lo] != v + (lo - i) * step else lo + 1
    return good


def pack(kind: int, where: int, fill: int = 0) -> int:
    return where << _WHERE_SHIFT | fill << _FILL_SHIFT | kind


def unpack(value: int) -> tuple[int, int, int]:
    """(kind, where, fill) of a table value >= 0."""
    return value & _KIND_MASK, value >> _WHERE_SHIFT, (value >> _FILL_SHIFT) & 0xFF


# ---------------------------------------------------------------- all blocks


class PageState:
    """The final state of every RAM block of one stream, built as the walk passes its items.

    Use::

        state = PageState(src)
        stream = decode(src, ram_runs=False, on_ram_item=state.feed)
        state.check()                       # CorruptError on a record QEMU refuses
        block = state.blocks["pc.ram"]      # BlockPages
        data = state.read_page(block, 3)    # bytes, or None when the page was not sent

    or `PageState.of(stream, src)` for a stream decoded with its page runs.
    """

    def __init__(self, src: Source | None, max_ram: int | None = None, stream_size: int | None = None) -> None:
        if src is not None and not src.seekable:
            # pages are read again after the walk let them go: a forward-only input has lost them
            raise ValueError("a final page state reads pages again: open the input with Source.open(seek=True)")
        self.src, self.buf = src, src.buf if src is not None else None
        #: without a source, where pages are is known but not what they hold (XBZRLE results,
        #: mapped-ram bitmaps): `readable` is false, and those pages stay NOT_SENT / unknown
        self.readable = src is not None
        self.stream_size = src.size if src is not None else (stream_size or 0)
        self.max_ram = default_max_ram() if max_ram is None else max_ram
        self.page_size = 0
        self.blocks: dict[str, BlockPages] = {}
        self.illegal: list[IllegalOffset] = []
        self.xbzrle: XbzrleStore | None = None
        self._claimed: list[RamBlock] = []  # blocks with a table
        self._listed = False  # a block list (MEM_SIZE) was seen
        self._pending: list[RamPages] = []  # runs before any block list, applied when it comes
        #: the compressed data read to inflate pages, let go as it goes (memory flat in the input)
        self._inflated = ReadWindow(src)

    @classmethod
    def of(cls, stream: Any, src: Source | None, max_ram: int | None = None) -> PageState:
        """The state of a stream decoded with its page runs (decode's default); finished."""
        from ..model import RamBody, Section

        state = cls(src, max_ram, stream.size)
        for record in stream.records:
            if isinstance(record, Section) and isinstance(record.body, RamBody):
                if not record.body.runs_kept:
                    raise ValueError("PageState.of needs the RAM page runs: decode with ram_runs=True, "
                                     "or feed a PageState from decode(on_ram_item=state.feed)")
                for item in record.body.items:
                    state.feed(item, record.body.page_size)
        state.finish()
        return state

    # ------------------------------------------------------------ building

    def feed(self, item: RamItem, page_size: int) -> None:
        """One RAM item, in stream order (decode's on_ram_item)."""
        if self.page_size != page_size:
            if self.page_size:
                raise CorruptError(f"RAM page size changes from {self.page_size} to {page_size}")
            self.page_size = page_size
        if isinstance(item, RamPages):
            if self._listed:
                self.run(item)
            else:
                self._pending.append(item)
        elif isinstance(item, RamMemSize):
            self._listed = True
            for block in item.blocks:
                if block.idstr in self.blocks:
                    raise CorruptError(f"the RAM block list names block '{printable(block.idstr)}' twice",
                                       offset=item.span.offset if item.span else None)
                self.blocks[block.idstr] = BlockPages(block, page_size)
            self._replay()
            for block in item.blocks:
                if block.mapped_ram is not None and self.readable:
                    self._mapped(self.blocks[block.idstr])

    def _replay(self) -> None:
        """Runs that came before the block list, in their order (QEMU loads such records into the
        blocks of its own list)."""
        pending, self._pending = self._pending, []
        for run in pending:
            self.run(run)

    def finish(self) -> PageState:
        """After the last item: runs of a stream that has no block list at all are placed in
        blocks as long as their last page (QEMU would load them into its own blocks)."""
        if self._pending and not self._listed:
            ends: dict[str, int] = {}
            for run in self._pending:
                ends[run.block] = max(ends.get(run.block, 0),
                                      run.offset + run.pages_written * self.page_size)
            for name, end in ends.items():
                self.blocks[name] = BlockPages(RamBlock(name, end), self.page_size)
            self._listed = True
            self._replay()
        return self

    def _table(self, pages: BlockPages) -> array:
        if pages.table is None:
            check_ram_claim([*self._claimed, pages.block], self.page_size, self.stream_size, self.max_ram)
            self._claimed.append(pages.block)
            pages.table = array("q", [NOT_SENT]) * pages.pages
        return pages.table

    def run(self, run: RamPages) -> None:
        """Apply one run of page records (the last record of a page wins)."""
        pages = self.blocks.get(run.block)
        record = run.span.offset if run.span else None
        if pages is None:
            raise CorruptError(f"RAM page record names block '{printable(run.block)}', which no RAM block "
                               f"list (MEM_SIZE) announced before it", offset=record)
        ps = self.page_size
        first, count = run.offset // ps, run.count
        if first + count > pages.pages or run.offset >= pages.used_length:  # else all of it is inside
            count, bad = illegal_record(run, pages.used_length, ps)
            if bad is not None:
                self.illegal.append(bad)
                if not count:
                    return
        table = pages.table if pages.table is not None else self._table(pages)
        if pages.first_record is None:
            pages.first_record = record
        kind = run.kind
        pages.records[kind] = pages.records.get(kind, 0) + count
        # a run of one page is most runs of a fragmented guest: no slices for it
        if count == 1 and table[first] == NOT_SENT:
            pass
        else:
            pages.mark_resent(first, table[first:first + count])
            if self.xbzrle is not None and kind not in SINGLE_RECORD_KINDS:  # those reuse the page's slot
                self._drop_xbzrle(table, first, count)
        if kind == "xbzrle":
            self._xbzrle(pages, table, first, run)
            return
        if kind == "compressed":
            self._compressed(table, first, run)
            return
        span = run.span
        if kind == "page":
            if span is None:
                raise CorruptError(f"page run of block '{printable(run.block)}' has no place in the input")
            stride = (ADDRESS_WORD_SIZE + ps) << _WHERE_SHIFT
            base = run.payload_offset(0, ps) << _WHERE_SHIFT | PAGE
        elif span is not None:
            # the fill byte of record i: after its word (and the name of the first)
            stride = SMALLEST_RECORD << _WHERE_SHIFT
            base = pack(ZERO, _fill_offset(run, ps), run.fill)
        else:
            stride, base = 0, pack(ZERO, 0, run.fill)
        if count == 1:
            table[first] = base
        elif stride:
            table[first:first + count] = array("q", range(base, base + count * stride, stride))
        else:
            table[first:first + count] = array("q", [base]) * count

    def _drop_xbzrle(self, table: array, first: int, count: int) -> None:
        """Free the store slots of the pages about to be written again."""
        assert self.xbzrle is not None
        for v in table[first:first + count]:
            if v >= 0 and _stored(v) and v >> _WHERE_SHIFT != UNKNOWN_SLOT:
                self.xbzrle.free(v >> _WHERE_SHIFT)

    def _compressed(self, table: array, index: int, run: RamPages) -> None:
        """A compressed record: the page its data inflates to. A whole page is inflated again when
        read; less than a page is laid over the page as it was (QEMU's inflate writes only what
        the data holds) and kept in the store."""
        data = run.data[0] if run.data else None
        if data is None or data.data is not None:
            raise CorruptError(f"compressed page of '{printable(run.block)}' has no place in the input")
        if not self.readable:
            table[index] = pack(COMPRESSED, data.offset)  # its content needs the input's bytes
            return
        page = inflate_page(bytes(self.buf[data.offset:data.offset + data.length]), self.page_size)
        old = table[index]
        slot = old >> _WHERE_SHIFT if old >= 0 and _stored(old) and old >> _WHERE_SHIFT != UNKNOWN_SLOT else None
        if len(page) == self.page_size:
            if slot is not None:
                assert self.xbzrle is not None
                self.xbzrle.free(slot)
            table[index] = pack(COMPRESSED, data.offset)
            return
        if self.xbzrle is None:
            self.xbzrle = XbzrleStore(self.page_size)
        whole = bytearray(self.content(old) or bytes(self.page_size))  # not sent: the destination's zeros
        whole[:len(page)] = page
        table[index] = pack(COMPRESSED, self.xbzrle.put(bytes(whole), slot), STORED)

    def _xbzrle(self, pages: BlockPages, table: array, index: int, run: RamPages) -> None:
        if not self.readable:
            table[index] = pack(XBZRLE, UNKNOWN_SLOT)  # its result needs the pages' bytes
            return
        if self.xbzrle is None:
            self.xbzrle = XbzrleStore(self.page_size)
        old = table[index]
        page = bytearray(self.content(old) or bytes(self.page_size))  # not sent: the destination's zeros
        try:
            apply_delta(page, run.delta or b"")
        except ValueError as exc:  # QEMU fails the load of such a record
            raise CorruptError(f"bad XBZRLE delta for '{printable(run.block)}' page {run.offset:#x}: {exc}",
                               offset=run.span.offset if run.span else None) from exc
        slot = old >> _WHERE_SHIFT if old >= 0 and _stored(old) else None
        slot = None if slot == UNKNOWN_SLOT else slot
        table[index] = pack(XBZRLE, self.xbzrle.put(bytes(page), slot))

    def _mapped(self, pages: BlockPages) -> None:
        """A mapped-ram block: its bitmap says which pages are in its region (set) and which are
        zero (clear); the walk has made the region readable. Bit i is bit i % 8 of byte i // 8
        (host-endian longs, as x86-64 and aarch64 write them: little-endian)."""
        block, ps = pages.block, self.page_size
        header, region = block.mapped_ram, block.region
        assert header is not None
        name = printable(block.idstr)
        if header["version"] != 1:
            raise CorruptError(f"mapped-ram header of '{name}' has version {header['version']}; expected 1")
        if header["page_size"] != ps or block.used_length % ps:
            raise CorruptError(f"mapped-ram header of '{name}' has page size {header['page_size']}, which is "
                               f"not the stream's {ps} or does not divide its used_length {block.used_length:#x}")
        if region is None:
            raise CorruptError(f"mapped-ram block '{name}' has no pages region")
        count = pages.pages
        bitmap_at, pages_at = header["bitmap_offset"], header["pages_offset"]
        bitmap_len = (count + 63) // 64 * 8
        if not region.offset <= bitmap_at <= bitmap_at + bitmap_len <= region.offset + region.length:
            raise CorruptError(f"mapped-ram bitmap of '{name}' ({bitmap_len} bytes at {bitmap_at:#x}) lies outside "
                               f"its region", offset=bitmap_at)
        if not region.offset <= pages_at <= pages_at + block.used_length <= region.offset + region.length:
            raise CorruptError(f"mapped-ram pages of '{name}' lie outside its region", offset=pages_at)
        if count == 0:
            return
        table = self._table(pages)
        pages.first_record = bitmap_at
        stride = ps << _WHERE_SHIFT
        zero = pack(ZERO, 0)
        for start, end, present in bit_runs(bytes(self.buf[bitmap_at:bitmap_at + bitmap_len]), count):
            if present:
                base = pack(PAGE, pages_at + start * ps)
                table[start:end] = array("q", range(base, base + (end - start) * stride, stride))
                pages.records["page"] += end - start
            else:
                table[start:end] = array("q", [zero]) * (end - start)

    # ------------------------------------------------------------ reading

    def check(self) -> None:
        """Raise the first record QEMU refuses (a page past its block's end) as a CorruptError."""
        if self.illegal:
            first = self.illegal[0]
            more = f" (and {len(self.illegal) - 1} more)" if len(self.illegal) > 1 else ""
            raise CorruptError(first.message() + more, offset=first.record)

    def content(self, value: int) -> bytes | None:
        """The bytes of a page with this table value; None when it was not sent (or there is no
        source to read it from)."""
        if value < 0 or not self.readable:
            return None
        kind, where, fill = unpack(value)
        ps = self.page_size
        if kind == PAGE:
            return bytes(self.buf[where:where + ps])
        if kind == ZERO:
            return bytes((fill,)) * ps
        if kind == COMPRESSED and fill == INFLATE:
            (length,) = _BE32.unpack_from(self.buf, where - 4)
            self._inflated.touched(where - 4, length + 4)
            return inflate_page(bytes(self.buf[where:where + length]), ps)
        assert self.xbzrle is not None
        return self.xbzrle.get(where)

    def read_page(self, pages: BlockPages, index: int) -> bytes | None:
        return self.content(pages.value(index))

    def close(self) -> None:
        self._inflated.flush()
        if self.xbzrle is not None:
            self.xbzrle.close()
        for pages in self.blocks.values():
            pages.close()

    def __enter__(self) -> PageState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stored(value: int) -> bool:
    """Is the page of this table value (>= 0) in the store (an XBZRLE result, a short inflate)?"""
    kind = value & _KIND_MASK
    return kind == XBZRLE or (kind == COMPRESSED and (value >> _FILL_SHIFT) & 0xFF == STORED)


def _fill_offset(run: RamPages, page_size: int) -> int:
    """Input offset of the fill byte of the first ZERO record of a run."""
    assert run.span is not None
    name = 1 + len(run.block.encode("utf-8", "surrogateescape")) if run.named else 0
    return run.span.offset + ADDRESS_WORD_SIZE + name


def bit_runs(bitmap: bytes, count: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, bit) of the runs of equal bits among the first `count` bits of a mapped-ram
    bitmap (bit i is bit i % 8 of byte i // 8): stretches of 0x00 or 0xff bytes are found by a
    regular expression and taken whole, other bytes bit by bit."""
    start, value = 0, None

    def bits(first: int, stop: int, byte: int) -> Iterator[tuple[int, bool]]:
        for i in range(first, min(stop, count)):
            yield i, bool(byte >> (i - first) & 1)

    def pieces() -> Iterator[tuple[int, bool]]:
        """(bit index, bit) where a new stretch may begin."""
        pos = 0
        nbytes = (count + 7) // 8
        for m in re.finditer(rb"\x00+|\xff+", bitmap[:nbytes]):
            for index in range(pos, m.start()):
                yield from bits(index * 8, index * 8 + 8, bitmap[index])
            yield m.start() * 8, m.group()[0] == 0xFF
            pos = m.end()
        for index in range(pos, nbytes):
            yield from bits(index * 8, index * 8 + 8, bitmap[index])

    for i, bit in pieces():
        if i >= count:
            break
        if bit != value:
            if value is not None:
                yield start, i, value
            start, value = i, bit
    if value is not None:
        yield start, count, value
