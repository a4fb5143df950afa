"""Forward-only byte readers: an opened file or pipe, and the decompressors that wrap one.

Every reader has `read(n)` (at most n bytes; b"" only at the end), `peek(n)` (the next bytes
without consuming them, so a layer's magic is checked on its first bytes before anything is
copied), `unread(data)` and `position` (bytes consumed so far). A decompressor also keeps
`input_position()`, the offset reached in the outermost file, for a progress bar.

Decompression is strict where the tools are lenient: data after the last complete member or
frame (trailing garbage) is refused, as is input that ends inside one; every decompressor's
memory is bounded (`Limits.memory`: the xz dictionary, the zstd window, an lzop block).

Imports: errors, source.limits, wire.lzop (construct), the standard library; zstd from
`compression.zstd` (Python 3.14) or the `backports.zstd` package; LZO from `lzallright`.
References: RFC 1952 (gzip members), the xz file format (stream padding), the zstd frame
format (skippable frames), lzop's file format (lzop 1.04 src/lzop.c header and blocks).
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any, BinaryIO

from ..errors import ContainerError, InputError, LimitError
from .limits import Limits, size_text

#: bytes read from the input at a time, and produced by a decompressor at most per call
CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LZOP_MAGIC = b"\x89LZO\x00\r\n\x1a\n"


class Reader:
    """The pushback and peek every reader shares; subclasses implement `_fill`."""

    def __init__(self) -> None:
        self._pending = bytearray()  # peeked or unread bytes, served first
        self.position = 0  # bytes handed out by read()
        self._ended = False

    def _fill(self, n: int) -> bytes:
        """The next up to n bytes of this reader's own data (b"" at the end)."""
        raise NotImplementedError

    def read(self, n: int = CHUNK) -> bytes:
        if self._pending:
            out = bytes(self._pending[:n])
            del self._pending[:n]
        else:
            out = b"" if self._ended else self._fill(n)
            if not out:
                self._ended = True
        self.position += len(out)
        return out

    def peek(self, n: int) -> bytes:
        while len(self._pending) < n and not self._ended:
            more = self._fill(max(n - len(self._pending), 4096))
            if not more:
                self._ended = True
                break
            self._pending += more
        return bytes(self._pending[:n])

    def unread(self, data: bytes) -> None:
        self._pending[:0] = data
        self.position -= len(data)

    def input_position(self) -> int:
        return self.position

    def close(self) -> None:
        pass


class FileReader(Reader):
    """A file object opened once (a pipe, a FIFO, stdin or a regular file), read forward."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        super().__init__()
        self.f, self.name = f, name

    def _fill(self, n: int) -> bytes:
        try:
            return self.f.read(n) or b""
        except OSError as exc:
            raise InputError(f"cannot read {self.name}: {exc.strerror or exc}") from exc


class Decompressor(Reader):
    """Members (or streams, frames) of one format back to back, and nothing else after them."""

    format = ""
    magic = b""

    def __init__(self, inner: Reader, limits: Limits, what: str) -> None:
        super().__init__()
        self.inner, self.limits, self.what = inner, limits, what
        self.start = inner.position  # where the compressed data starts in `inner`
        self._engine: Any = None  # the decompressor of the current member; None between members
        self._members = 0

    def input_position(self) -> int:
        return self.inner.input_position()

    def _where(self) -> int:
        return self.inner.position

    def _fail(self, message: str, offset: int | None = None) -> ContainerError:
        return ContainerError(f"{self.format} data of {self.what}: {message}",
                              offset=self._where() if offset is None else offset, path=("container", self.format))

    def _fill(self, n: int) -> bytes:
        while True:
            if self._engine is None:
                if not self._next_member():
                    return b""
            out = self._step(min(n, CHUNK))
            if out:
                return out

    def _next_member(self) -> bool:
        """Start the next member, or say the data ended; anything else after a member is refused."""
        self._skip_padding()
        head = self.inner.peek(len(self.magic))
        if not head and self._members:
            return False
        if head != self.magic:
            if not self._members:
                raise self._fail(f"expected the {self.format} magic {self.magic.hex(' ')}, found {head.hex(' ') or 'nothing'}")
            raise self._fail(f"{self._trailing()} after the end of the {self.format} data "
                             f"(found {self.inner.peek(8).hex(' ')}); expected nothing or another {self.format} member")
        self._engine = self._new_engine()
        self._members += 1
        return True

    def _trailing(self) -> str:
        return "trailing garbage"

    def _skip_padding(self) -> None:
        pass

    def _new_engine(self) -> Any:
        raise NotImplementedError

    def _step(self, n: int) -> bytes:
        """Up to n decompressed bytes of the current member (b"" when it ended: _engine is then None)."""
        engine = self._engine
        data = b""
        if engine.needs_input:
            data = self.inner.read(CHUNK)
            if not data:
                raise self._fail(f"the input ends inside a {self.format} member (the file is cut short)")
        try:
            out = engine.decompress(data, n)
        except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            raise self._error(exc) from exc
        if engine.eof:
            self.inner.unread(engine.unused_data)
            self._engine = None
        return out

    def _error(self, exc: Exception) -> Exception:
        return self._fail(f"corrupt: {exc}")


class _ZlibEngine:
    """zlib's decompressobj made to look like lzma's and bz2's (needs_input, eof, unused_data)."""

    def __init__(self) -> None:
        self.d = zlib.decompressobj(31)  # 31: a gzip member (header and CRC-32/ISIZE trailer)
        self.tail = b""

    @property
    def needs_input(self) -> bool:
        return not self.tail and not self.d.eof

    @property
    def eof(self) -> bool:
        return self.d.eof

    @property
    def unused_data(self) -> bytes:
        return self.d.unused_data

    def decompress(self, data: bytes, n: int) -> bytes:
        try:
            out = self.d.decompress(self.tail + data, n)
        except zlib.error as exc:
            raise ValueError(str(exc)) from exc
        self.tail = self.d.unconsumed_tail
        return out


class GzipReader(Decompressor):
    format, magic = "gzip", GZIP_MAGIC

    def _new_engine(self) -> Any:
        return _ZlibEngine()


class Bzip2Reader(Decompressor):
    format, magic = "bzip2", BZIP2_MAGIC

    def _new_engine(self) -> Any:
        return bz2.BZ2Decompressor()


class XzReader(Decompressor):
    format, magic = "xz", XZ_MAGIC

    def _new_engine(self) -> Any:
        return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=self.limits.memory)

    def _skip_padding(self) -> None:
        # the xz format allows stream padding (NUL bytes, a multiple of four) between and after streams
        skipped = 0
        while True:
            head = self.inner.peek(4096)
            zeros = len(head) - len(head.lstrip(b"\0"))
            if not zeros:
                break
            self.inner.read(zeros)
            skipped += zeros
            if zeros < len(head):
                break
        if skipped % 4:
            raise self._fail(f"stream padding of {skipped} bytes is not a multiple of four")

    def _error(self, exc: Exception) -> Exception:
        if "memory" in str(exc).lower():
            return LimitError(f"xz data of {self.what} needs more memory to decompress than allowed "
                              f"({exc}); {self.limits.memory_hint()}")
        return super()._error(exc)


def _zstd_module() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14
    except ImportError:
        try:
            from backports import zstd  # type: ignore[no-redef]
        except ImportError as exc:
            raise InputError("this input is zstd-compressed, and reading zstd needs the 'backports.zstd' package "
                             "(pip install backports.zstd)") from exc
    return zstd


class ZstdReader(Decompressor):
    format, magic = "zstd", ZSTD_MAGIC

    def _next_member(self) -> bool:
        # skippable frames (magic 0x184D2A50-5F, little-endian) carry no data: step over them
        while True:
            head = self.inner.peek(8)
            if len(head) == 8 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:
                self.inner.read(8)
                length = int.from_bytes(head[4:8], "little")
                while length:
                    got = self.inner.read(min(length, CHUNK))
                    if not got:
                        raise self._fail("the input ends inside a skippable frame")
                    length -= len(got)
                continue
            return super()._next_member()

    def _new_engine(self) -> Any:
        zstd = _zstd_module()
        window_log = max(10, min(31, self.limits.memory.bit_length() - 1))
        return zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: window_log})

    def _error(self, exc: Exception) -> Exception:
        if "memory" in str(exc).lower():
            return LimitError(f"zstd data of {self.what} needs a larger window than allowed ({exc}); "
                              f"{self.limits.memory_hint()}")
        return super()._error(exc)

    def _step(self, n: int) -> bytes:
        try:
            return super()._step(n)
        except _zstd_module().ZstdError as exc:  # corrupt data, or a window over the memory limit
            raise self._error(exc) from exc


class LzopReader(Decompressor):
    """lzop's own container around LZO1X blocks; blocks are checked against their checksums."""

    format, magic = "lzop", LZOP_MAGIC

    def _new_engine(self) -> Any:
        from .lzop import LzopEngine

        return LzopEngine(self.inner, self.limits, self._fail)

    def _step(self, n: int) -> bytes:
        engine = self._engine
        out = engine.next_block()
        if engine.eof:
            self._engine = None
        return out


DECOMPRESSORS: dict[str, type[Decompressor]] = {
    "gzip": GzipReader, "xz": XzReader, "bzip2": Bzip2Reader, "zstd": ZstdReader, "lzop": LzopReader}


def decompressor(fmt: str, inner: Reader, limits: Limits, what: str) -> Decompressor:
    return DECOMPRESSORS[fmt](inner, limits, what)


def read_exactly(reader: Reader, n: int, what: str, limits: Limits | None = None) -> bytes:
    """n bytes or a ContainerError naming what was cut; bounded by the memory limit."""
    if limits is not None and n > limits.memory:
        raise LimitError(f"{what} is {size_text(n)}, more than vmig holds in memory; {limits.memory_hint()}")
    parts, got = [], 0
    while got < n:
        data = reader.read(min(CHUNK, n - got))
        if not data:
            raise ContainerError(f"the input ends inside {what}: expected {n} bytes, found {got}",
                                 offset=reader.position)
        parts.append(data)
        got += len(data)
    return b"".join(parts)
