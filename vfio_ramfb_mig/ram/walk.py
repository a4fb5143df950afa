"""The page-record walk: every item of the RAM sections ("ram", version 4), in stream order.

This is the one place that reads RAM page records. The decoder hands each RAM
section_start/part/end body to `RamWalk.section`, which returns the section's
`RamBody` (block list, markers, page counts and, when kept, the runs of page
records) and passes every run to `on_run` as it goes. Everything else that
needs pages (listing, final page state, extract, diff, golden, guest-physical
reads) works from those runs. The walk itself is one generator, `RamWalk.items`:
`section` is built on it, and a body whose runs were not kept walks its section
again with it, from the state the first walk had there (`RamBody.walk_again`).

A run (`model.RamPages`) is page records of one kind in one block at
consecutive offsets, each after the first with CONTINUE set: it says for every
record its block, page offset, kind, whether it named its block (the continue
flag), its fill byte (ZERO), its delta (XBZRLE), where its zlib data lies
(COMPRESS_PAGE, QEMU <= 9.0's `compress` capability: `RamPages.data`) and where
its payload lies (`RamPages.record_offset`, `payload_offset`). `records()`
expands a run record by record. An XBZRLE or compressed record is a run of its
own; a compressed record's data is inflated as the walk passes it, and refused
where QEMU's loader refuses it (a length above compressBound of the page, data
that does not end its zlib stream within one page).

Multi-GiB streams are almost all page records, so the walk is plain Python over
the buffer (`struct.unpack_from` of one address word per record), never
construct: a record that continues the current run is recognized by its whole
address word alone. Its constants come from wire/ram.py, whose construct schema
(`page_record`) describes the same record for humans and for the slow path; a
test holds the two to the same answers on real streams.

Facts other parts of RAM need come from the stream itself: the target page size
(the vmdesc, the configuration's target-page-bits, or the postcopy ADVISE
command), the capabilities (x-ignore-shared adds a GPA word per block, mapped-ram
a header and a pages region), and the postcopy ADVISE page-size summary (a block
whose page size differs from the target's carries one more word in the list).

Imports: wire.ram, model, errors, source (the Source contract: ensure/release),
text (names on the wire).
References: migration/ram.c (ram_load_precopy, parse_ramblocks, parse_ramblock,
ram_block_from_stream, host_from_ram_block_offset, ram_save_setup,
mapped_ram_setup_ramblock), migration/savevm.c (loadvm_postcopy_handle_advise);
QEMU 7.2 migration/ram.c (ram_load_precopy's COMPRESS_PAGE case, qemu_uncompress_data,
do_data_decompress).
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..text import from_wire, printable, to_wire
from ..errors import CorruptError, FieldPath, TruncatedError
from ..model import SINGLE_RECORD_KINDS, Blob, RamBlock, RamBody, RamItem, RamMarker, RamMemSize, RamPages, Span
from ..source import Source
from ..wire.primitives import Str8
from ..wire.ram import (
    ADDRESS_WORD_SIZE,
    COMPRESSED_LENGTH_SIZE,
    ENCODING_FLAG_XBZRLE,
    MAPPED_RAM_HEADER_SIZE,
    PAGE_KINDS,
    XBZRLE_HEADER_SIZE,
    ZERO_FILL_SIZE,
    CompressedLength,
    RamFlag,
    XbzrleHeader,
    ZeroFill,
    compress_bound,
    flag_mask,
    ram_block,
)

#: how often (in bytes walked) the walk lets walked pages go (Source.release) and reports progress
RELEASE_EVERY = 16 << 20
DEFAULT_PAGE_SIZE = 4096

_BE64 = struct.Struct(">Q")
_BE16 = struct.Struct(">H")

# RAM flags as plain ints: the walk runs once per page, and IntFlag arithmetic costs a call
_ZERO, _PAGE, _XBZRLE = int(RamFlag.ZERO), int(RamFlag.PAGE), int(RamFlag.XBZRLE)
_COMPRESSED = int(RamFlag.COMPRESS_PAGE)
_CONTINUE, _MEM_SIZE, _EOS = int(RamFlag.CONTINUE), int(RamFlag.MEM_SIZE), int(RamFlag.EOS)
_MULTIFD_FLUSH = int(RamFlag.MULTIFD_FLUSH)
_KINDS = {int(flag): kind for flag, kind in PAGE_KINDS.items()}
_CONT_PAGE, _CONT_ZERO = _CONTINUE | _PAGE, _CONTINUE | _ZERO
_WORD = ADDRESS_WORD_SIZE
_ZERO_RECORD = _WORD + ZERO_FILL_SIZE  # a ZERO record that continues its block: word + fill byte
#: bytes of a page record besides its page or delta at most: the word and a block name of 255 bytes
_RECORD_HEAD = _WORD + 256
#: the longest XBZRLE payload: its header and a delta of 64 KiB (a be16 length)
_LONGEST_XBZRLE = XBZRLE_HEADER_SIZE + 0xFFFF
_BE32 = struct.Struct(">I")


@dataclass(frozen=True)
class PostcopyAdvise:
    """MIG_CMD_POSTCOPY_ADVISE with data: the source had postcopy-ram on (savevm.c,
    qemu_savevm_send_postcopy_advise; the decoder reads the command by wire/stream.py COMMAND_DATA). `pagesize_summary` is the OR of every RAM block's page
    size; `target_page_size` the source's target page size."""

    pagesize_summary: int
    target_page_size: int

    def huge_page_sizes(self) -> frozenset[int]:
        """Page sizes some block has besides the ordinary one: those blocks carry their page
        size in the block list (ram_save_setup writes it when postcopy-ram is on and a block's
        page size is not max(host page size, target page size))."""
        base = max(self.pagesize_summary & -self.pagesize_summary, self.target_page_size)
        sizes = {1 << bit for bit in range(64) if self.pagesize_summary >> bit & 1}
        return frozenset(size for size in sizes if size != base)


def records(run: RamPages, page_size: int) -> Iterator[tuple[int, int, int, bool]]:
    """Each record of a run: (input offset of its address word, its length in bytes, the page's
    offset in the block, whether it names its block)."""
    name = 1 + len(run.block.encode("utf-8", "surrogateescape"))
    if run.kind in SINGLE_RECORD_KINDS:
        yield run.record_offset(0, page_size), run_length(run, page_size), run.offset, run.named
        return
    step = run.record_size(page_size)
    for i in range(run.count):
        named = i == 0 and run.named
        yield run.record_offset(i, page_size), step + (name if named else 0), run.offset + i * page_size, named


def record_parts(run: RamPages, page_size: int) -> Iterator[tuple[bytes, bytes | None]]:
    """Each record of a run as encode writes it: (its address word and, for the first of a run
    that names its block, the name; what follows: the fill byte, the XBZRLE header and delta,
    the length of a compressed record's data (which the caller writes after it), or None for a
    page, whose bytes the caller has)."""
    flag = {"zero": _ZERO, "page": _PAGE, "xbzrle": _XBZRLE, "compressed": _COMPRESSED}[run.kind]
    # what a run's records repeat is built once by its wire schema; the address word, one per
    # page, is packed by AddressWord's own format (the hot path)
    name = Str8.build(to_wire(run.block))
    if run.kind == "zero":
        tail: bytes | None = ZeroFill.build(run.fill)
    elif run.kind == "xbzrle":
        delta = run.delta or b""
        tail = XbzrleHeader.build({"encoding": ENCODING_FLAG_XBZRLE, "length": len(delta)}) + delta
    elif run.kind == "compressed":
        tail = CompressedLength.build(compressed_length(run))
    else:
        tail = None
    for i in range(run.count):
        word = (run.offset + i * page_size) | flag
        if i == 0 and run.named:
            yield _BE64.pack(word) + name, tail
        else:
            yield _BE64.pack(word | _CONTINUE), tail


#: zero_run_bytes builds this many records at a time (576 KiB)
_ZERO_CHUNK = 1 << 16


def zero_run_bytes(run: RamPages, page_size: int) -> Iterator[bytes]:
    """The records of a ZERO run as encode writes them, in pieces of up to `_ZERO_CHUNK` records:
    the same bytes as `record_parts` joined, built a piece at a time (a run of millions of zero
    pages is millions of 9-byte records: packing each costs more than writing them)."""
    parts = record_parts(run, page_size)
    first = 1 if run.named and run.count else 0
    if first:
        head, tail = next(parts)
        yield head + (tail or b"")
    fill = ZeroFill.build(run.fill)
    for lo in range(first, run.count, _ZERO_CHUNK):
        n = min(_ZERO_CHUNK, run.count - lo)
        start = (run.offset + lo * page_size) | _ZERO | _CONTINUE
        words = array("Q", range(start, start + n * page_size, page_size))
        if sys.byteorder == "little":
            words.byteswap()  # address words are big-endian on the wire
        raw, out = words.tobytes(), bytearray(n * _ZERO_RECORD)
        for k in range(_WORD):  # each record: its 8-byte word, then the fill byte
            out[k::_ZERO_RECORD] = raw[k::_WORD]
        out[_WORD::_ZERO_RECORD] = fill * n
        yield bytes(out)


def compressed_length(run: RamPages) -> int:
    """Bytes of a compressed record's zlib data."""
    return sum(blob.length for blob in run.data or ())


def run_length(run: RamPages, page_size: int) -> int:
    """Bytes of a run's records on the wire (what encode writes for it)."""
    name = 1 + len(run.block.encode("utf-8", "surrogateescape")) if run.named else 0
    if run.kind == "xbzrle":
        return _WORD + name + XBZRLE_HEADER_SIZE + len(run.delta or b"")
    if run.kind == "compressed":
        return _WORD + name + COMPRESSED_LENGTH_SIZE + compressed_length(run)
    return name + run.count * run.record_size(page_size)


def run_in_source(run: RamPages, page_size: int, src: Source) -> bool:
    """Do the run's records lie in `src` at its span exactly as encode would write them (every
    address word, the block name, each fill byte; the pages are the source's own)? Then the
    span can be copied whole. Checked record by record: a JSON document may have been edited."""
    if run.span is None or run.kind in SINGLE_RECORD_KINDS or run.count <= 0 or run.data is not None:
        return False
    start, length = run.span.offset, run_length(run, page_size)
    if run.span.length != length or src.ensure(start + length) < start + length:
        return False
    buf, flag = src.buf, _PAGE if run.kind == "page" else _ZERO
    unpack64 = _BE64.unpack_from
    head = _WORD  # bytes of record 0 before its payload
    if run.named:
        name = run.block.encode("utf-8", "surrogateescape")
        if unpack64(buf, start)[0] != run.offset | flag or buf[start + _WORD] != len(name) \
                or buf[start + _WORD + 1:start + _WORD + 1 + len(name)] != name:
            return False
        head += 1 + len(name)
    elif unpack64(buf, start)[0] != run.offset | flag | _CONTINUE:
        return False
    zero, fill = flag == _ZERO, run.fill
    if zero and buf[start + head] != fill:
        return False
    step = run.record_size(page_size)
    pos = start + head + step - _WORD  # record 1's word
    word = (run.offset + page_size) | flag | _CONTINUE
    rest = run.count - 1
    if rest >= _GATHER_MIN:
        return _words_in_place(buf, pos, step, word, page_size, rest, fill if zero else None)
    for _ in range(rest):
        if unpack64(buf, pos)[0] != word or (zero and buf[pos + _WORD] != fill):
            return False
        word += page_size
        pos += step
    return True


#: runs with at least this many continuing records are checked a byte lane at a time
_GATHER_MIN = 16


def _words_in_place(buf: Any, pos: int, step: int, word: int, page_size: int, count: int,
                    fill: int | None) -> bool:
    """Are the `count` records from `pos`, `step` bytes apart, address words `word`, `word +
    page_size`, ... (each followed by the byte `fill`, unless None)? Checked a byte lane at a time:
    the k-th bytes of all the words gathered by one strided slice against the k-th bytes of the
    words expected (the same answer as comparing word by word, in C instead of a loop here)."""
    expected = array("Q", range(word, word + count * page_size, page_size))
    if sys.byteorder == "little":
        expected.byteswap()  # address words are big-endian on the wire
    raw, end = expected.tobytes(), pos + (count - 1) * step + 1
    for k in range(_WORD):
        if buf[pos + k:end + k:step] != raw[k::_WORD]:
            return False
    return fill is None or buf[pos + _WORD:end + _WORD:step] == bytes((fill,)) * count


def inflate_problem(data: bytes, page_size: int) -> str | None:
    """What is wrong with a compressed record's zlib data for QEMU's loader, which inflates it
    into one page and wants the zlib stream to end there (qemu_uncompress_data: Z_STREAM_END with
    at most a page of output); None when it loads. Bytes after the stream's end are ignored, as
    zlib's inflate ignores them."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, page_size + 1)
    except zlib.error as exc:
        return f"is not zlib data ({exc})"
    if len(out) > page_size:
        return f"inflates to more than one {page_size}-byte page"
    if not inflater.eof:
        return f"ends before its zlib stream does ({len(out)} bytes inflated)"
    return None


def inflate_page(data: bytes, page_size: int) -> bytes:
    """The bytes a compressed record's zlib data inflates to (at most a page: the walk refused
    more). Fewer than a page when the stream ended early: QEMU then leaves the rest of the page
    as it was."""
    return zlib.decompressobj().decompress(data, page_size)


def _walk_again(src: Source, page_size: int, capabilities: frozenset[str], advise: PostcopyAdvise | None,
                pos: int, path: FieldPath, is_start: bool, last_block: str | None,
                blocks: dict[str, RamBlock]) -> Iterator[RamItem]:
    """The items of the RAM section at `pos` again, runs included, from a walk in the state the
    first one had there (the block a CONTINUE record refers to, the block list): the same items,
    so a decode need not keep millions of runs to list them. `src` must still be open."""
    walk = RamWalk(src.sibling(), page_size, capabilities, advise, keep_runs=False)
    walk.last_block, walk.blocks, walk.released = last_block, blocks, pos
    yield from walk.items(pos, path, is_start)


class RamWalk:
    """The walk over the RAM sections of one decode: what carries over from one RAM section to
    the next (the block list, the block a CONTINUE record refers to, how far pages were let go).

    Args:
        src: the input (see SOURCE-CONTRACT: `ensure` before reading, `release` behind).
        page_size: the target page size (vmdesc, configuration or ADVISE; 4096 without them).
        capabilities: the stream's migration capabilities (the configuration record).
        advise: the postcopy ADVISE facts, if the stream has the command with data.
        keep_runs: keep the runs in each RamBody (to encode again); else only counts.
        keep_limit: keep at most this many runs over the whole walk (~250 bytes each): a section
            whose runs would pass it keeps none of them, so memory stays bounded. A body without
            its runs can walk its section again (RamBody.walk_again).
        on_run: called with every run as the walk passes it, kept or not.
        on_item: called with every item (block list, run, marker) and the page size, in stream
            order, kept or not: what a final page state is built from in one pass.
        on_partial: called, before the walk lets mapped pages go (every RELEASE_EVERY bytes), with
            the records so far of the run still open (the same run, whole, comes to on_item later):
            to read pages of a long run while they are mapped.
        progress: called with the input offset reached, every RELEASE_EVERY bytes.
    """

    def __init__(self, src: Source, page_size: int = DEFAULT_PAGE_SIZE, capabilities: frozenset[str] = frozenset(),
                 advise: PostcopyAdvise | None = None, keep_runs: bool = True, keep_limit: int | None = None,
                 on_run: Callable[[RamPages], None] | None = None,
                 on_item: Callable[[RamItem, int], None] | None = None,
                 on_partial: Callable[[RamPages, int], None] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.src, self.buf, self.page_size = src, src.buf, page_size
        self.capabilities, self.advise = capabilities, advise
        self.keep_runs, self.on_run, self.on_item, self.progress = keep_runs, on_run, on_item, progress
        self.on_partial, self.keep_limit = on_partial, keep_limit
        self.kept = 0  # runs kept so far, in all sections
        self.last_block: str | None = None
        self.blocks: dict[str, RamBlock] = {}
        self.released = 0  # input offset up to which the walk let mapped pages go

    # ------------------------------------------------------------ page records

    def section(self, pos: int, path: FieldPath, is_start: bool) -> tuple[RamBody, int]:
        """Items from `pos` until EOS: the body of one RAM section and the offset after it. The
        items go to the callbacks as the walk passes them; the runs are kept while `keep_runs`
        and `keep_limit` allow, else the body can walk them again (RamBody.walk_again)."""
        on_run, on_item, page_size = self.on_run, self.on_item, self.page_size
        keep = self.keep_runs and (self.keep_limit is None or self.kept < self.keep_limit)
        again = partial(_walk_again, self.src, page_size, self.capabilities, self.advise, pos, path, is_start,
                        self.last_block, dict(self.blocks))
        walk = self.items(pos, path, is_start, runs=keep or on_run is not None or on_item is not None)
        items: list[RamItem] = []
        runs = 0  # runs of this section kept so far
        while True:
            try:
                item = next(walk)
            except StopIteration as done:
                counts, end = done.value
                break
            if type(item) is RamPages:
                if keep:
                    runs += 1
                    if self.keep_limit is not None and self.kept + runs > self.keep_limit:
                        # past the limit: this section keeps none of its runs (walked again instead)
                        keep, items = False, [i for i in items if type(i) is not RamPages]
                    else:
                        items.append(item)
                if on_run is not None:
                    on_run(item)
            else:
                items.append(item)
            if on_item is not None:
                on_item(item, page_size)
        if keep:
            self.kept += runs
        return RamBody(items=tuple(items), page_size=page_size, counts=counts, runs_kept=keep,
                       walk_again=None if keep else again), end

    def items(self, pos: int, path: FieldPath, is_start: bool,
              runs: bool = True) -> Generator[RamItem, None, tuple[dict[str, dict[str, int]], int]]:
        """The walk itself: each item of the RAM section at `pos` until its EOS, as the walk passes
        it (the block list, the markers and, with `runs`, each run of page records). Returns the
        pages per block and kind and the offset after the section. Only the run being extended
        is remembered while the records go by. A stream cut short yields the run before the cut
        (every whole record the stream has), then raises."""
        src, buf, page_size = self.src, self.buf, self.page_size
        page_mask = flag_mask(page_size)
        unpack64 = _BE64.unpack_from
        counts: dict[str, dict[str, int]] = {}
        # the run being extended: kind, block, first page offset, fill, first record, named, delta
        run: tuple[str, str, int, int, int, bool, bytes | None] | None = None
        run_count = 0
        run_next = -1  # the address word a record continuing the run would have (-1: none can)
        run_step = 0  # bytes per continuing record
        nitems = 0  # items so far, runs included even when they are not kept (error paths stay the same)

        # Measured on a 740 MB stream: about half of this loop's time is the kernel mapping and
        # releasing one 4 KiB page per record (each holds a header), so checking headers in
        # batches (strided slices, memoryview gathers), MADV_POPULATE_READ or read() into a
        # buffer instead of the mmap saved at most ~10 ms and were not kept.
        longest = _WORD + page_size  # no record the fast path takes is longer
        bound = compress_bound(page_size)  # the longest zlib data QEMU's loader takes
        longest_record = _RECORD_HEAD + max(page_size, _LONGEST_XBZRLE, COMPRESSED_LENGTH_SIZE + bound)  # nor any
        # the fast path stays before `stop`: the next release point, and where the input is readable
        stop = min(src.ensure(self.released + RELEASE_EVERY + longest) - longest, self.released + RELEASE_EVERY)
        while True:
            if pos <= stop:
                # the hot path, one record per turn: a record that continues the run has exactly the
                # address word `run_next`; one that starts the next run of the same block (CONTINUE
                # set, another kind or page) is taken here too, without the general checks below
                word = unpack64(buf, pos)[0]
                if word == run_next and (run_step != _ZERO_RECORD or buf[pos + _WORD] == run[3]):
                    pos += run_step
                    run_next += page_size
                    run_count += 1
                    continue
                flags = word & page_mask
                if run is not None and (flags == _CONT_PAGE or flags == _CONT_ZERO):
                    if (pages := self._close_run(run, run_count, pos, counts, runs)) is not None:
                        yield pages
                    nitems += 1
                    value = word - flags
                    if flags == _CONT_PAGE:
                        run, run_step = ("page", run[1], value, 0, pos, False, None), longest
                    else:
                        run, run_step = ("zero", run[1], value, buf[pos + _WORD], pos, False, None), _ZERO_RECORD
                    pos += run_step
                    run_count, run_next = 1, (value + page_size) | flags
                    continue
            elif pos - self.released >= RELEASE_EVERY:
                if self.on_partial is not None and run is not None:
                    # the records of the open run so far, before their pages are let go
                    self.on_partial(self._pages(run, run_count, pos), page_size)
                self._walked(pos)
                stop = min(src.ensure(self.released + RELEASE_EVERY + longest) - longest,
                           self.released + RELEASE_EVERY)
                continue
            rec = pos
            where = path + ("items", nitems)
            size = src.ensure(pos + longest_record)  # all of the record, or the input's end
            if pos + _WORD > size:
                yield from self._cut("stream ends inside a RAM record: expected an 8-byte address word",
                                     size, run, run_count, rec, counts, runs, where)
            (word,) = unpack64(buf, pos)
            flags, value = word & page_mask, word & ~page_mask
            # a stray flag bit (even above the defined ones, up to page_mask) is refused, as QEMU does:
            # `base` is then no page kind (all flags but CONTINUE must be exactly one kind)
            base = flags & ~_CONTINUE
            pos += _WORD
            if base in _KINDS:
                if flags & _CONTINUE:
                    if self.last_block is None:
                        raise CorruptError("RAM page record continues a block, but no earlier record named one",
                                           offset=rec, path=where)
                    named, block = False, self.last_block
                else:
                    if pos >= size or pos + 1 + buf[pos] > size:
                        yield from self._cut("stream ends inside a RAM block name", size, run, run_count, rec, counts,
                                             runs, where)
                    n = buf[pos]
                    block = from_wire(bytes(buf[pos + 1:pos + 1 + n]))
                    if self.blocks and block not in self.blocks:
                        raise CorruptError(f"RAM page record names unknown block '{printable(block)}'",
                                           offset=pos, path=where)
                    pos += 1 + n
                    named, self.last_block = True, block
                fill, delta, step = 0, None, 0
                kind = _KINDS[base]
                if base == _ZERO:
                    if pos >= size:
                        yield from self._cut("stream ends inside a zero-page record: expected its fill byte", size,
                                             run, run_count, rec, counts, runs, where)
                    fill = buf[pos]
                    pos += ZERO_FILL_SIZE
                    step = _ZERO_RECORD
                elif base == _PAGE:
                    pos += page_size
                    if pos > size:
                        yield from self._cut(f"stream ends inside a RAM page ({printable(block)} offset {value:#x}): "
                                             f"expected {page_size} bytes", size, run, run_count, rec, counts, runs,
                                             where)
                    step = _WORD + page_size
                elif base == _COMPRESSED:
                    # as QEMU 7.2's loader reads it: a be32 length, refused when it is negative as a
                    # signed int or above compressBound(page size), then that much zlib data, refused
                    # when it does not inflate (see inflate_problem)
                    if pos + COMPRESSED_LENGTH_SIZE > size:
                        yield from self._cut("stream ends inside a compressed page record: expected its 4-byte "
                                             "length", size, run, run_count, rec, counts, runs, where)
                    (length,) = _BE32.unpack_from(buf, pos)
                    signed = length - (1 << 32) if length >> 31 else length
                    if signed < 0 or signed > bound:
                        raise CorruptError(f"bad compressed page length {signed}: expected 0..{bound} (zlib's "
                                           f"compressBound of a {page_size}-byte page); QEMU refuses it "
                                           f"(\"Invalid compressed data length: {signed}\")", offset=pos,
                                           path=where + ("length",))
                    pos += COMPRESSED_LENGTH_SIZE
                    if pos + length > size:
                        yield from self._cut(f"stream ends inside compressed page data: expected {length} bytes, "
                                             f"{size - pos} left", size, run, run_count, rec, counts, runs, where)
                    why = inflate_problem(bytes(buf[pos:pos + length]), page_size)
                    if why is not None:
                        raise CorruptError(f"compressed page data of '{printable(block)}' page {value:#x} "
                                           f"({length} bytes) {why}; QEMU refuses it (\"decompress data "
                                           f"failed\")", offset=pos, path=where + ("data",))
                    pos += length
                else:
                    if pos + XBZRLE_HEADER_SIZE > size:
                        yield from self._cut(f"stream ends inside an XBZRLE page header: expected "
                                             f"{XBZRLE_HEADER_SIZE} bytes, {size - pos} left", size, run, run_count,
                                             rec, counts, runs, where)
                    encoding, length = buf[pos], _BE16.unpack_from(buf, pos + 1)[0]
                    if encoding != ENCODING_FLAG_XBZRLE or length > page_size:
                        raise CorruptError(f"bad XBZRLE header: encoding {encoding:#x}, length {length}",
                                           offset=pos, path=where)
                    if pos + XBZRLE_HEADER_SIZE + length > size:
                        yield from self._cut(f"stream ends inside an XBZRLE delta: expected {length} bytes, "
                                             f"{size - pos - XBZRLE_HEADER_SIZE} left", size, run, run_count, rec,
                                             counts, runs, where)
                    delta = bytes(buf[pos + XBZRLE_HEADER_SIZE:pos + XBZRLE_HEADER_SIZE + length])
                    pos += XBZRLE_HEADER_SIZE + length
                if run is not None and word == run_next and step and fill == run[3]:
                    run_count += 1  # continues the run (the fast path stops short of the input's end)
                    run_next += page_size
                    continue
                if run is not None:
                    if (pages := self._close_run(run, run_count, rec, counts, runs)) is not None:
                        yield pages
                    nitems += 1
                run, run_count = (kind, block, value, fill, rec, named, delta), 1
                # an XBZRLE or compressed record is a run of its own (each carries its own payload)
                run_next, run_step = ((value + page_size) | base | _CONTINUE, step) if step else (-1, 0)
                continue
            if run is not None:
                if (pages := self._close_run(run, run_count, rec, counts, runs)) is not None:
                    yield pages
                nitems += 1
                run, run_next, run_step = None, -1, 0
                where = path + ("items", nitems)
            nitems += 1
            if flags in (_EOS, _MULTIFD_FLUSH) and value:
                # QEMU writes these markers as the bare flag; the model keeps no address for them,
                # so accepting one would drop bytes on the way back
                raise CorruptError(f"RAM marker {RamFlag(flags).name} carries address bits {value:#x}; "
                                   f"expected an address word of just the flag", offset=rec, path=where)
            if flags == _MEM_SIZE:
                if not is_start:
                    raise CorruptError("RAM block list (MEM_SIZE) outside the ram section_start",
                                       offset=rec, path=where)
                mem, pos = self._block_list(rec, value, where)
                yield mem
            elif flags == _EOS:
                yield RamMarker("eos", span=Span(rec, _WORD))
                self._walked(pos)
                return counts, pos
            elif flags == _MULTIFD_FLUSH:
                yield RamMarker("multifd_flush", span=Span(rec, _WORD))
            else:
                raise CorruptError(f"impossible RAM flags {flags:#x} in address word {word:#018x}; expected "
                                   f"ZERO, PAGE, XBZRLE, COMPRESS_PAGE (each maybe with CONTINUE), MEM_SIZE, EOS "
                                   f"or MULTIFD_FLUSH",
                                   offset=rec, path=where)

    def _cut(self, message: str, size: int, run: tuple[str, str, int, int, int, bool, bytes | None] | None,
             count: int, rec: int, counts: dict[str, dict[str, int]], runs: bool,
             where: FieldPath) -> Iterator[RamPages]:
        """The input ends inside the record at `rec`: the run before it still counts and is
        yielded (every whole record the stream has is passed on), then the TruncatedError is
        raised, naming the item after that run."""
        if run is not None:
            if (pages := self._close_run(run, count, rec, counts, runs)) is not None:
                yield pages
            where = where[:-1] + (where[-1] + 1,)
        raise TruncatedError(message, offset=size, path=where)

    def _close_run(self, run: tuple[str, str, int, int, int, bool, bytes | None], count: int, end: int,
                   counts: dict[str, dict[str, int]], runs: bool) -> RamPages | None:
        """Count the run's pages; the run itself when `runs` are wanted."""
        kind, block = run[0], run[1]
        per = counts.get(block)
        if per is None:
            per = counts[block] = {"zero": 0, "page": 0, "xbzrle": 0}
        per[kind] = per.get(kind, 0) + count  # "compressed" only in a block that has some
        return self._pages(run, count, end) if runs else None

    @staticmethod
    def _pages(run: tuple[str, str, int, int, int, bool, bytes | None], count: int, end: int) -> RamPages:
        kind, block, first, fill, start, named, delta = run
        data = None
        if kind == "compressed":  # where its zlib data lies: after the word, the name and the length
            at = start + _WORD + (1 + len(to_wire(block)) if named else 0) + COMPRESSED_LENGTH_SIZE
            data = (Blob(at, end - at),)
        return RamPages(kind=kind, block=block, offset=first, count=count, named=named, fill=fill, delta=delta,
                        data=data, span=Span(start, end - start))

    def _walked(self, pos: int) -> None:
        """The walk got to `pos`: let the mapped pages behind it go and report progress."""
        self.src.release(pos)
        self.released = pos
        if self.progress is not None:
            self.progress(pos)

    # ------------------------------------------------------------ the block list

    def _block_list(self, rec: int, total: int, path: FieldPath) -> tuple[RamMemSize, int]:
        """The block list after MEM_SIZE: entries until their lengths add up to `total`."""
        src, buf = self.src, self.buf
        pos, blocks, summed = rec + _WORD, [], 0
        ignore_shared = "x-ignore-shared" in self.capabilities
        mapped_ram = "mapped-ram" in self.capabilities
        huge = self.advise.huge_page_sizes() if self.advise is not None else frozenset()
        # the entry's schema (wire/ram.py) says which words follow the length: the page size of a
        # block of huge pages (parse_ramblock reads it once ADVISE came with postcopy-ram), the
        # x-ignore-shared address, the mapped-ram header
        entry_schema = ram_block(huge, ignore_shared, mapped_ram)
        while summed < total:
            where = path + ("blocks", len(blocks))
            entry, pos = src.parse(entry_schema, pos, where, "a RAM block-list entry")
            idstr, used = from_wire(entry.idstr), entry.used_length
            page_size, addr, header, region = entry.page_size, entry.addr, None, None
            if entry.mapped_ram is not None:
                parsed, hdr_end = entry.mapped_ram, pos
                header = {k: parsed[k] for k in ("version", "page_size", "bitmap_offset", "pages_offset")}
                next_entry = parsed.pages_offset + used
                size = src.ensure(next_entry)
                if parsed.pages_offset < hdr_end or next_entry > size:
                    if next_entry > size and parsed.pages_offset >= hdr_end:
                        raise TruncatedError(f"stream ends inside the mapped-ram pages of {printable(idstr)}: "
                                             f"expected data up to offset {next_entry}", offset=size, path=where)
                    raise CorruptError(f"mapped-ram pages offset {parsed.pages_offset:#x} lies before its header",
                                       offset=hdr_end - MAPPED_RAM_HEADER_SIZE, path=where)
                region, pos = Blob(hdr_end, next_entry - hdr_end), next_entry
            present = None
            if header is not None:
                # one bit per page, in host-endian longs: the count of set bits does not depend on the order
                pages = used // max(header["page_size"], 1)
                bitmap = header["bitmap_offset"]
                length = (pages + 63) // 64 * 8
                if region is not None and region.offset <= bitmap and bitmap + length <= region.offset + region.length:
                    present = int.from_bytes(buf[bitmap:bitmap + length], "little").bit_count()
            block = RamBlock(idstr=idstr, used_length=used, page_size=page_size, addr=addr, mapped_ram=header,
                             region=region, present_pages=present)
            blocks.append(block)
            self.blocks[idstr] = block
            summed += used
            if summed > total:
                raise CorruptError(f"RAM block lengths add up to {summed:#x}, more than the announced total "
                                   f"{total:#x}", offset=pos, path=where)
        return RamMemSize(total=total, blocks=tuple(blocks), span=Span(rec, pos - rec)), pos
