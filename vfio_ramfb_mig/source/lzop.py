"""Read and write lzop files: the header and block framing are wire.lzop's; LZO1X itself is
`lzallright`'s (MIT), which is fed one block at a time.

A block's decompressed length is checked against its header and its checksums against the
data. Memory per block is bounded: a block may not claim more than MAX_BLOCK_SIZE (lzop's own
limit) or the memory limit, and LZO1X output can grow to ~255x its input, so a compressed block
may be at most 1/256 of the memory limit (lzop's blocks are 256 KiB: far below).

Imports: errors, source.limits, source.reader (Reader), wire.lzop (construct).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

from construct import ConstructError

from ..errors import ContainerError, InputError, LimitError
from ..wire import lzop as wire
from .limits import Limits, size_text

Fail = Callable[..., ContainerError]


def _lzo() -> Any:
    try:
        from lzallright import LZOCompressor, LZOError
    except ImportError as exc:
        raise InputError("this input is lzop-compressed, and reading it needs the 'lzallright' package "
                         "(pip install lzallright)") from exc
    return LZOCompressor, LZOError


def _checksum(kind: str, data: bytes) -> int:
    return zlib.crc32(data) if kind == "crc32" else zlib.adler32(data)


class LzopEngine:
    """One lzop file read forward from `inner`: header at once, then a block per `next_block()`."""

    def __init__(self, inner: Any, limits: Limits, fail: Fail) -> None:
        self.inner, self.limits, self.fail = inner, limits, fail
        self.eof = False
        self.header = self._header()
        flags = self.header.flags
        self.data_checks = [k for bit, k in ((wire.F_ADLER32_D, "adler32"), (wire.F_CRC32_D, "crc32")) if flags & bit]
        self.packed_checks = [k for bit, k in ((wire.F_ADLER32_C, "adler32"), (wire.F_CRC32_C, "crc32"))
                              if flags & bit]
        self.lzo, self.lzo_error = _lzo()

    def _read(self, n: int, what: str) -> bytes:
        data = b""
        while len(data) < n:
            more = self.inner.read(n - len(data))
            if not more:
                raise self.fail(f"the input ends inside {what} (the file is cut short)")
            data += more
        return data

    def _header(self) -> Any:
        start = self.inner.position
        self._read(len(wire.MAGIC), "the lzop magic")
        head = self.inner.peek(4 + 2 + 2 + 1 + 1 + 4 + 4 + 4 + 4 + 4 + 1 + 255 + 4)
        stream = io.BytesIO(head)
        try:
            header = wire.FileHeader.parse_stream(stream)
        except ConstructError as exc:
            raise self.fail(f"bad lzop header: {str(exc).splitlines()[-1]}", start) from exc
        end = stream.tell()
        if len(head) < end + 4:
            raise self.fail("the input ends inside the lzop header", start)
        covered = head[:end]
        (stored,) = struct.unpack_from(">I", head, end)
        kind = "crc32" if header.flags & wire.F_H_CRC32 else "adler32"
        if _checksum(kind, covered) != stored:
            raise self.fail(f"lzop header checksum mismatch ({kind} {_checksum(kind, covered):#010x}, "
                            f"stored {stored:#010x})", start)
        if header.method not in wire.METHODS:
            raise self.fail(f"unknown lzop method {header.method}; expected 1-3 (LZO1X)", start)
        if header.flags & (wire.F_MULTIPART | wire.F_H_FILTER):
            raise self.fail("lzop multipart or filtered files are not supported", start)
        self._read(end + 4, "the lzop header")
        if header.flags & wire.F_H_EXTRA_FIELD:
            (length,) = struct.unpack(">I", self._read(4, "the lzop extra field"))
            if length > 1 << 20:
                raise self.fail(f"lzop extra field of {length} bytes", start)
            self._read(length + 4, "the lzop extra field")
        return header

    def next_block(self) -> bytes:
        at = self.inner.position
        (dst_len,) = struct.unpack(">I", self._read(4, "an lzop block header"))
        if dst_len == 0:
            self.eof = True
            return b""
        (src_len,) = struct.unpack(">I", self._read(4, "an lzop block header"))
        if dst_len > wire.MAX_BLOCK_SIZE or src_len > dst_len:
            raise self.fail(f"lzop block of {src_len} bytes claims {dst_len} bytes; expected at most "
                            f"{wire.MAX_BLOCK_SIZE} and no more than it holds", at)
        packed = src_len < dst_len
        if dst_len > self.limits.memory or (packed and src_len * 256 > self.limits.memory):
            raise LimitError(f"an lzop block of {size_text(dst_len)} is more than vmig decompresses at once; "
                             f"{self.limits.memory_hint()}")
        checks = [(k, struct.unpack(">I", self._read(4, "an lzop block checksum"))[0]) for k in self.data_checks]
        packed_checks = [(k, struct.unpack(">I", self._read(4, "an lzop block checksum"))[0])
                         for k in self.packed_checks] if packed else []
        data = self._read(src_len, "an lzop block")
        for kind, stored in packed_checks:
            if _checksum(kind, data) != stored:
                raise self.fail(f"lzop block checksum ({kind} of the compressed data) mismatch", at)
        if packed:
            try:
                data = bytes(self.lzo.decompress(data, dst_len))
            except self.lzo_error as exc:
                raise self.fail(f"corrupt LZO1X block: {exc}", at) from exc
            if len(data) != dst_len:
                raise self.fail(f"LZO1X block gives {len(data)} bytes, its header says {dst_len}", at)
        for kind, stored in checks:
            if _checksum(kind, data) != stored:
                raise self.fail(f"lzop block checksum ({kind}) mismatch", at)
        return data


class LzopWriter:
    """A write-only file object producing what `lzop -c` would for the same bytes from stdin:
    version 0x1040 header, LZO1X-1, Adler-32 of each block's data, 256 KiB blocks."""

    def __init__(self, out: BinaryIO, level: int = 5) -> None:
        self.out, self.buffer = out, bytearray()
        self.lzo = _lzo()[0]()
        flags = wire.F_ADLER32_D | wire.F_STDIN | wire.F_STDOUT | wire.F_OS_UNIX
        header = wire.FileHeader.build(dict(version=wire.VERSION, lib_version=wire.LIB_VERSION,
                                            version_needed=wire.VERSION_NEEDED, method=1, level=level,
                                            flags=flags, filter=None, mode=0, mtime_low=0, mtime_high=0, name=""))
        out.write(wire.MAGIC + header + struct.pack(">I", zlib.adler32(header)))

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) >= wire.BLOCK_SIZE:
            self._block(bytes(self.buffer[:wire.BLOCK_SIZE]))
            del self.buffer[:wire.BLOCK_SIZE]
        return len(data)

    def _block(self, data: bytes) -> None:
        packed = bytes(self.lzo.compress(data))
        body = packed if len(packed) < len(data) else data
        self.out.write(struct.pack(">III", len(data), len(body), zlib.adler32(data)) + body)

    def close(self) -> None:
        if self.buffer:
            self._block(bytes(self.buffer))
            self.buffer.clear()
        self.out.write(b"\0\0\0\0")

    def flush(self) -> None:
        pass
