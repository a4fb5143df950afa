"""lzop's file format: what `lzop -c` (and so libvirt's lzop save images) wraps LZO1X blocks in.

    file   := MAGIC FileHeader [extra field] Block* u32 0
    Block  := u32 dst_len, u32 src_len, checksums (as the flags say), src_len bytes
              (stored as they are when src_len == dst_len, else LZO1X-compressed)

Integers are big-endian. The header checksum (Adler-32, or CRC-32 with F_H_CRC32) covers the
header from `version` through `name`. Fields marked "0x0940" exist only in files whose version is
at least 0x0940 (lzop 0.94, 1997).

Imports: construct.
References: lzop 1.04 (src/lzop.c: f_write_header/p_header, x_compress/x_decompress; src/conf.h F_*
flags, M_* methods, MAX_BLOCK_SIZE).
"""

from __future__ import annotations

from construct import Bytes, If, Int8ub, Int16ub, Int32ub, PascalString, Struct, this

MAGIC = b"\x89LZO\x00\r\n\x1a\n"

F_ADLER32_D = 0x0001
F_ADLER32_C = 0x0002
F_STDIN = 0x0004
F_STDOUT = 0x0008
F_H_EXTRA_FIELD = 0x0040
F_CRC32_D = 0x0100
F_CRC32_C = 0x0200
F_MULTIPART = 0x0400
F_H_FILTER = 0x0800
F_H_CRC32 = 0x1000
F_OS_UNIX = 0x03000000

#: LZO1X methods lzop writes (-1 .. -9); all decompress with LZO1X
METHODS = {1: "LZO1X-1", 2: "LZO1X-1(15)", 3: "LZO1X-999"}
#: the largest block lzop reads (its own blocks are 256 KiB)
MAX_BLOCK_SIZE = 64 << 20
BLOCK_SIZE = 256 << 10
#: what lzop 1.04 writes as the version fields
VERSION, LIB_VERSION, VERSION_NEEDED = 0x1040, 0x20A0, 0x0940

FileHeader = Struct(
    "version" / Int16ub,
    "lib_version" / Int16ub,
    "version_needed" / If(this.version >= 0x0940, Int16ub),
    "method" / Int8ub,
    "level" / If(this.version >= 0x0940, Int8ub),
    "flags" / Int32ub,
    "filter" / If(this.flags & F_H_FILTER, Int32ub),
    "mode" / Int32ub,
    "mtime_low" / Int32ub,
    "mtime_high" / If(this.version >= 0x0940, Int32ub),
    "name" / PascalString(Int8ub, "latin-1"),
)

BlockLengths = Struct(
    "dst_len" / Int32ub,
    "src_len" / If(this.dst_len != 0, Int32ub),
)

Checksum = Int32ub
ExtraFieldLength = Int32ub
ExtraField = Struct("length" / Int32ub, "data" / Bytes(this.length), "checksum" / Int32ub)
