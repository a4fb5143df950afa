"""The RAM section ("ram", version 4): block list and page records.

Every item starts with a be64 "address word": low bits are flags, the rest a
page-aligned offset inside the RAM block (not a guest-physical address).

    START : be64 (total | MEM_SIZE), per block: str8 idstr, be64 used_length
            [be64 page_size (postcopy, huge pages)] [be64 mr addr (x-ignore-shared)]
            [MappedRamHeader (mapped-ram)], then EOS
    PART/END: page records, then EOS
    ZERO  : word [str8 block unless CONTINUE] u8 fill (0)
    PAGE  : word [str8 block unless CONTINUE] page_size raw bytes
    XBZRLE: word [str8 block unless CONTINUE] u8 0x01 be16 n, n bytes of delta
    COMPRESS_PAGE (QEMU <= 9.0, capability `compress`): word [str8 block unless CONTINUE]
            be32 n, n bytes of zlib data (a zlib stream of one page); the loader refuses n
            above compressBound(target page size) or, as a signed int, below 0

Imports: construct, wire.primitives.
References: migration/ram.c (ram_save_setup, save_page_header, save_zero_page,
save_normal_page, save_xbzrle_page, ram_load_precopy, parse_ramblock,
mapped_ram_setup_ramblock), migration/ram.h (RAM_SAVE_FLAG_*); QEMU 7.2 migration/ram.c
(do_compress_ram_page, ram_load_precopy: "Invalid compressed data length: %d") and
migration/qemu-file.c (qemu_put_compression_data); zlib's compressBound.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntFlag
from functools import lru_cache
from typing import Any

from construct import Bytes, Computed, Construct, If, Int8ub, Int16ub, Int32ub, Int64ub, Peek, Struct, this

from .primitives import Str8


class RamFlag(IntFlag):
    """RAM_SAVE_FLAG_* (migration/ram.h). All values stay below 0x400."""

    FULL = 0x001  # obsolete since 2009; never valid
    ZERO = 0x002
    MEM_SIZE = 0x004
    PAGE = 0x008
    EOS = 0x010
    CONTINUE = 0x020
    XBZRLE = 0x040
    HOOK = 0x080  # RDMA only
    COMPRESS_PAGE = 0x100  # removed in QEMU 9.1
    MULTIFD_FLUSH = 0x200


#: The loader masks with ~TARGET_PAGE_MASK; every flag fits in 10 bits, whatever the page size.
FLAG_MASK = 0x3FF

AddressWord = Int64ub

#: mapped-ram: 28 packed big-endian bytes after each block-list entry (ram.c MappedRamHeader).
MappedRamHeader = Struct(
    "version" / Int32ub,
    "page_size" / Int64ub,
    "bitmap_offset" / Int64ub,
    "pages_offset" / Int64ub,
)
MAPPED_RAM_HEADER_SIZE = 28


@lru_cache(maxsize=64)
def ram_block(huge_page_sizes: frozenset[int] = frozenset(), ignore_shared: bool = False,
              mapped_ram: bool = False) -> Construct:
    """One whole entry of the block list (ram_save_setup; parse_ramblock reads it), with the words
    the stream's setup adds: the block's page size when postcopy-ram is on and the block's pages
    are not the usual size, the region's address with x-ignore-shared, and the mapped-ram header
    (its bitmap and pages region follow in the file, located, never parsed).

    Parsing, the stream says which words are there: the capabilities, and for the page size the
    word itself (one of `huge_page_sizes`, from POSTCOPY_ADVISE: nothing else can follow the
    length there, as a next entry starts with a name length of 1..255 and EOS is 0x10).
    Building, the entry says it: a word is written when its value is not None."""
    def has(key: str, parsing: bool) -> Callable[[Any], bool]:
        return lambda ctx: parsing if ctx._parsing else ctx.get(key) is not None

    return Struct(
        "idstr" / Str8,
        "used_length" / Int64ub,
        "next_word" / Peek(Int64ub),  # what follows the length, not a field of its own
        "page_size" / If(lambda ctx: ctx.next_word in huge_page_sizes if ctx._parsing
                         else ctx.get("page_size") is not None, Int64ub),
        "addr" / If(has("addr", ignore_shared), Int64ub),
        "mapped_ram" / If(has("mapped_ram", mapped_ram), MappedRamHeader),
    )


#: A block-list entry of a stream without postcopy-ram, x-ignore-shared or mapped-ram.
RamBlockEntry = ram_block()

ZeroFill = Int8ub
XbzrleHeader = Struct(
    "encoding" / Int8ub,  # ENCODING_FLAG_XBZRLE == 0x01
    "length" / Int16ub,
)
ENCODING_FLAG_XBZRLE = 0x01
#: COMPRESS_PAGE: the length of the zlib data that follows (read by QEMU as a signed int)
CompressedLength = Int32ub

PAGE_KINDS = {RamFlag.ZERO: "zero", RamFlag.PAGE: "page", RamFlag.XBZRLE: "xbzrle",
              RamFlag.COMPRESS_PAGE: "compressed"}

#: the record kinds that carry a page (and name a block unless CONTINUE is set)
PAGE_FLAGS = RamFlag.ZERO | RamFlag.PAGE | RamFlag.XBZRLE | RamFlag.COMPRESS_PAGE

ADDRESS_WORD_SIZE = AddressWord.sizeof()
ZERO_FILL_SIZE = ZeroFill.sizeof()
XBZRLE_HEADER_SIZE = XbzrleHeader.sizeof()
COMPRESSED_LENGTH_SIZE = CompressedLength.sizeof()
assert MappedRamHeader.sizeof() == MAPPED_RAM_HEADER_SIZE


def flag_mask(page_size: int) -> int:
    """The loader's flag mask, ~TARGET_PAGE_MASK: every bit below the target page size is a flag
    bit (defined or not), every bit above it is the page's offset in its block."""
    return page_size - 1


def compress_bound(size: int) -> int:
    """zlib's compressBound: the most bytes deflate makes of `size` bytes. QEMU's loader refuses a
    COMPRESS_PAGE record whose length is above compressBound(target page size)."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13


def page_record(page_size: int) -> Construct:
    """One item of a RAM section as the loader reads it (ram_load_precopy): the address word,
    then by its flags the block name (a page record without CONTINUE), the fill byte (ZERO),
    the page (PAGE), the XBZRLE header and delta, or the length and zlib data (COMPRESS_PAGE). MEM_SIZE, EOS and MULTIFD_FLUSH items are
    the address word alone here (the block list after MEM_SIZE is `RamBlockEntry`s).

    The readable description of the record, and the slow path: the decoder's page walk
    (ram/walk.py) reads the same bytes with `struct` for speed, and a test holds the two
    to the same answers on real streams."""
    mask = flag_mask(page_size)

    def kind(ctx) -> int:
        return ctx.flags & ~RamFlag.CONTINUE

    return Struct(
        "word" / AddressWord,
        "flags" / Computed(lambda ctx: ctx.word & mask),
        "offset" / Computed(lambda ctx: ctx.word & ~mask),
        "block" / If(lambda ctx: ctx.flags & PAGE_FLAGS and not ctx.flags & RamFlag.CONTINUE, Str8),
        "fill" / If(lambda ctx: kind(ctx) == RamFlag.ZERO, ZeroFill),
        "page" / If(lambda ctx: kind(ctx) == RamFlag.PAGE, Bytes(page_size)),
        "xbzrle" / If(lambda ctx: kind(ctx) == RamFlag.XBZRLE,
                      Struct("header" / XbzrleHeader, "delta" / Bytes(this.header.length))),
        "compressed" / If(lambda ctx: kind(ctx) == RamFlag.COMPRESS_PAGE,
                          Struct("length" / CompressedLength, "data" / Bytes(this.length))),
    )
