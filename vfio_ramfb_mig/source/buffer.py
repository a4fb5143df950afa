"""The input of a decode: one seekable byte buffer with absolute offsets.

Files are memory-mapped, so RAM pages are never copied: the decoder reads the
8-byte record headers and skips payloads. stdin and compressed files are first
spooled to an unnamed temporary file (never into memory), then mapped.

Every construct parse goes through `Source.parse`, which adds what construct
lacks: the absolute offset and the record/field path of a failure, and
whether the input simply ended (TruncatedError) or held a wrong value.

Imports: construct, errors.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import mmap
import os
import shutil
import sys
import tempfile
import zlib
from typing import Any, BinaryIO, Callable

from construct import Construct, ConstructError, StreamError

from ..errors import DecodeError, FieldPath, InputError, TruncatedError
from ..wire.bounded import BoundedStream, empty_allowance

_MAGICS: tuple[tuple[bytes, Callable[[BinaryIO], BinaryIO]], ...] = (
    (b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f)),
    (b"\xfd7zXZ\x00", lambda f: lzma.LZMAFile(f)),
    (b"BZh", lambda f: bz2.BZ2File(f)),
)


#: release walked pages in steps this large (fewer system calls than pages)
_RELEASE_STEP = 16 << 20


class Source:
    """The whole input as one buffer (mmap or bytes)."""

    def __init__(self, buf: Any, name: str | None = None, closer: Callable[[], None] | None = None) -> None:
        self.buf, self.name, self._closer = buf, name, closer
        self.size = len(buf)
        self._empty = [empty_allowance(self.size)]
        self._released = 0  # mapped pages before this offset were let go (release)

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> Source:
        return cls(data, name)

    @classmethod
    def open(cls, path: str) -> Source:
        """Open a file path, or '-' for stdin; gzip/xz/bzip2 are undone transparently."""
        try:
            raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            head = raw.peek(8)[:8] if hasattr(raw, "peek") else b""
            opener = next((op for magic, op in _MAGICS if head.startswith(magic)), None)
            if opener is None and path != "-" and raw.seekable():
                return cls._map(raw, path)
            spool = tempfile.TemporaryFile()
            try:
                shutil.copyfileobj(opener(raw) if opener else raw, spool, 1 << 20)
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:  # zlib.error: corrupt gzip data
                spool.close()
                raise InputError(f"cannot read {path}: {exc}") from exc
            spool.seek(0)
            return cls._map(spool, path)
        finally:
            if raw is not sys.stdin.buffer:
                raw.close()

    @classmethod
    def _map(cls, f: BinaryIO, name: str) -> Source:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return cls(b"", name)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(mm, name, mm.close)

    #: the input is all there: `size` is final (a forward-only source reads on as it is walked)
    complete = True
    seekable = True

    def ensure(self, end: int) -> int:
        """Make the bytes up to `end` readable; returns the offset up to which they are (== end
        unless the input ends first). A file or bytes: at once (SOURCE-CONTRACT.md)."""
        return min(end, self.size)

    def release(self, upto: int) -> None:
        """Let the kernel drop mapped pages before `upto`: they were walked and will not be
        needed again, so a multi-GiB stream does not show up as resident memory."""
        if not isinstance(self.buf, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = self._released
        end = upto - upto % mmap.PAGESIZE
        if end - start >= _RELEASE_STEP:
            self.buf.madvise(mmap.MADV_DONTNEED, start, end - start)
            self._released = end

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset_allowance(self) -> None:
        """Each decode of this input starts with the whole allowance (BoundedStream.empty), and
        walks it from the start again, so releasing walked pages starts over too."""
        self._empty[0] = empty_allowance(self.size)
        self._released = 0

    def stream(self, start: int, end: int | None = None) -> BoundedStream:
        return BoundedStream(self.buf, start, self.size if end is None else end, self._empty)

    def parse(self, schema: Construct, offset: int, path: FieldPath, what: str,
              end: int | None = None, name_path: Callable[[str], FieldPath] | None = None) -> tuple[Any, int]:
        """Parse `schema` at `offset`; return (value, offset after it). `what` says what was expected."""
        stream = self.stream(offset, end)
        try:
            value = schema.parse_stream(stream)
        except ConstructError as exc:
            where = path + (name_path(exc.path or "") if name_path else ())
            limit = self.size if end is None else end
            if isinstance(exc, StreamError) and stream.pos >= limit:
                raise TruncatedError(f"stream ends inside {what}", offset=limit, path=where) from exc
            message = str(exc).split("\n")[-1].strip() or type(exc).__name__
            raise DecodeError(f"bad {what}: {message}", offset=getattr(exc, "offset", stream.pos),
                              path=where) from exc
        return value, stream.pos

    def need(self, offset: int, count: int, what: str, path: FieldPath) -> None:
        """Fail unless `count` bytes are left at `offset`."""
        if offset + count > self.size:
            raise TruncatedError(f"stream ends inside {what}: expected {count} bytes, "
                                 f"{max(self.size - offset, 0)} left", offset=self.size, path=path)
