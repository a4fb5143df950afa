"""The input of a decode: one buffer indexed by stream offsets, whatever file holds the stream.

A plain stream file is memory-mapped, so RAM pages are never copied: the decoder reads the
8-byte record headers and skips payloads. A stream inside a file (a raw libvirt save image, a
qcow2 snapshot stored in one piece) is a view of that mapping starting at the stream. stdin,
pipes, compressed data and fragmented qcow2 VM states are copied into a spool (a sparse
temporary file, source.spool) and mapped. `source.open` decides which (`Source.open`).

Every construct parse goes through `Source.parse`, which adds what construct lacks: the
absolute offset and the record/field path of a failure, and whether the input simply ended
(TruncatedError) or held a wrong value.

The reader contract (notes/SOURCE-CONTRACT.md): `buf` is indexed by absolute stream offsets;
`ensure(end)` makes bytes up to `end` readable and says how far they are; `size` is final once
`complete`; `seekable` is false for a forward-only source, which gives back what lies behind
`release(upto)`.

Imports: construct, errors, source.spool.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any, Callable

from construct import Construct, ConstructError, StreamError

from ..errors import DecodeError, FieldPath, TruncatedError
from ..wire.bounded import BoundedStream, empty_allowance

#: release walked pages (and read-forward input) in steps this large (fewer system calls than pages)
RELEASE_STEP = 16 << 20
#: a forward-only source reads this far ahead for a construct parse without an end (device
#: sections are far smaller; a longer one is retried once the input is read to its end)
PARSE_WINDOW = 16 << 20
#: find/rfind over a buffer without its own (a view of a mapping) search in pieces this large
_SEARCH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    """One wrapping around the stream, outermost first: a compression, a libvirt save image, a
    qcow2 snapshot. `detail` is the LibvirtSave or (Qcow2Image, Snapshot); `offset` is where
    this layer starts in the data of the layer around it."""

    kind: str
    offset: int = 0
    detail: Any = None

    def to_json(self) -> dict[str, Any]:
        if self.kind == "libvirt-save":
            return self.detail.to_json()
        if self.kind == "qcow2":
            image, snap = self.detail
            return image.to_json(snap)
        return {"type": self.kind, "offset": self.offset}


class Source:
    """The whole stream as one buffer (a mapping, a view of one, or bytes)."""

    def __init__(self, buf: Any, name: str | None = None, closer: Callable[[], None] | None = None, *,
                 mapping: mmap.mmap | None = None, base: int = 0, layers: tuple[Layer, ...] = (),
                 file_size: int | None = None, spooled: int = 0) -> None:
        self.buf, self.name, self._closer = buf, name, closer
        self.size = len(buf)
        self.complete = True
        self.seekable = True
        #: what wraps the stream, outermost first (empty for a plain stream file)
        self.layers = layers
        #: the size of the file named, when it is a regular file (for `vmig info`)
        self.file_size = file_size
        #: bytes copied into a temporary file to read this input (0: read in place)
        self.spooled = spooled
        self._mapping, self._base = mapping, base  # the mmap `buf` is (a view of), for release()
        if mapping is None and isinstance(buf, mmap.mmap):
            self._mapping = buf
        self._empty = [empty_allowance(self.size)]
        self._released = 0  # mapped pages before this offset were let go (release)

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> Source:
        return cls(data, name)

    @classmethod
    def open(cls, path: str, *, snapshot: str | None = None, progress: Callable[..., None] | None = None,
             limits: Any = None, seek: bool = True) -> Source:
        """Open a file path, or '-' for stdin, and find the stream in it by content: a plain
        stream, gzip/xz/bzip2/zstd/lzop data, a libvirt save image, a qcow2 snapshot (`snapshot`
        names it: an id or a name). `progress(done, total)` follows a spool being filled.

        `seek=False`: a reader that goes forward only (and calls `ensure` before it reads) gets a
        stream that can only be read forward (stdin, a pipe, decompressed data) as a
        `ForwardSource`: copied as it is read, its temp space given back behind `release`."""
        from .opener import open_source

        return open_source(cls, path, snapshot=snapshot, progress=progress, limits=limits, seek=seek)

    def sibling(self) -> Source:
        """Another Source over the same bytes (its own release point and allowance), for a
        second walk of the same input; closing it closes nothing."""
        other = Source(self.buf, self.name, mapping=self._mapping, base=self._base, layers=self.layers,
                       file_size=self.file_size, spooled=self.spooled)
        other.size = self.size
        return other

    @property
    def container(self) -> dict[str, Any] | None:
        """The `container` object of `vmig decode --json`: the layers around the stream, or None."""
        if not self.layers:
            return None
        return {"layers": [layer.to_json() for layer in self.layers]}

    def ensure(self, end: int) -> int:
        """Make bytes up to `end` readable; returns how far they are (less only at the end)."""
        return min(end, self.size)

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """buf.find for any buffer, in stream offsets (-1 if not there)."""
        end = self.size if end is None else min(end, self.size)
        if hasattr(self.buf, "find"):
            return self.buf.find(sub, start, end)
        pos = max(start, 0)
        while pos < end:
            stop = min(end, pos + _SEARCH_CHUNK + len(sub) - 1)
            found = bytes(self.buf[pos:stop]).find(sub)
            if found >= 0:
                return pos + found
            pos += _SEARCH_CHUNK
        return -1

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """buf.rfind for any buffer, in stream offsets (-1 if not there)."""
        end = self.size if end is None else min(end, self.size)
        if hasattr(self.buf, "rfind"):
            return self.buf.rfind(sub, start, end)
        stop = end
        while stop > start:
            lo = max(start, stop - _SEARCH_CHUNK)
            found = bytes(self.buf[lo:min(end, stop + len(sub) - 1)]).rfind(sub)
            if found >= 0:
                return lo + found
            stop = lo
        return -1

    def release(self, upto: int) -> None:
        """Let the kernel drop mapped pages before `upto`: they were walked and will not be
        needed again, so a multi-GiB stream does not show up as resident memory."""
        if self._mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = self._released
        end = self._base + upto
        end -= end % mmap.PAGESIZE
        start = max(start, self._base - self._base % mmap.PAGESIZE)
        if end - start >= RELEASE_STEP:
            self._mapping.madvise(mmap.MADV_DONTNEED, start, end - start)
            self._released = end

    def file_region(self) -> tuple[str, int] | None:
        """(path, offset) of the stream's first byte in the regular file it is read from in place
        (a plain stream, or one inside an uncompressed container), or None (stdin, a spool):
        for copies the kernel can make file to file (encode's os.copy_file_range)."""
        if (not self.seekable or self.spooled or self.file_size is None or self._mapping is None
                or not self.name or self.name == "-"):
            return None
        return self.name, self._base

    def forget(self, start: int, end: int) -> None:
        """Let the kernel drop the mapped pages of [start, end): they were read out of order (page
        contents, not the walk) and will not be needed soon. They come back from the page cache
        if read again. Pages straddling the ends are dropped too."""
        mapping = self._mapping
        if mapping is None or not hasattr(mmap, "MADV_DONTNEED") or mapping.closed:
            return
        lo, hi = self._base + max(start, 0), self._base + min(end, self.size)
        lo -= lo % mmap.PAGESIZE
        hi = min(-(-hi // mmap.PAGESIZE) * mmap.PAGESIZE, len(mapping))
        if hi > lo:
            mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            if isinstance(self.buf, memoryview):
                self.buf.release()
            closer()

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
        if not self.complete:
            ahead = end
            if ahead is None:
                try:  # a fixed-size schema (a record header) needs no more than its size
                    ahead = offset + schema.sizeof()
                except ConstructError:
                    ahead = offset + PARSE_WINDOW
            self.ensure(ahead)
            if self.complete is False and end is None:
                try:
                    return self._parse(schema, offset, path, what, end, name_path)
                except TruncatedError:
                    self.ensure(1 << 62)  # a record over the window: read on, then try once more
        return self._parse(schema, offset, path, what, end, name_path)

    def _parse(self, schema: Construct, offset: int, path: FieldPath, what: str,
               end: int | None, name_path: Callable[[str], FieldPath] | None) -> tuple[Any, int]:
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
        if offset + count > self.ensure(offset + count):
            raise TruncatedError(f"stream ends inside {what}: expected {count} bytes, "
                                 f"{max(self.size - offset, 0)} left", offset=self.size, path=path)


class ForwardSource(Source):
    """A stream that can only be read forward (stdin, a pipe, decompressed data).

    Its bytes are copied into a spool (a sparse temporary file mapped at the largest size the
    spool limit allows) as readers ask for them with `ensure`; `release(upto)` gives the spool's
    disk behind `upto` back (and drops those pages from memory), so reading a multi-GiB
    compressed save takes a window of temp space, not its size. `size` is the readable end so
    far, final once `complete`. Offsets behind a release read as zeros: readers that must go back
    open with `Source.open(seek=True)` instead."""

    def __init__(self, reader: Any, spool: Any, name: str, closer: Callable[[], None], *,
                 layers: tuple[Layer, ...], file_size: int | None, progress: Callable[..., None] | None,
                 outer: Any, chunk: int = 1 << 20) -> None:
        super().__init__(spool.mm, name, closer, mapping=spool.mm, layers=layers, file_size=file_size)
        self._reader, self._spool, self._progress, self._outer, self._chunk = reader, spool, progress, outer, chunk
        self.size = spool.size
        self.complete = False
        self.seekable = False
        #: the most bytes the spool held at once (between what was given back and what was read)
        self.window = 0
        self._empty[0] = empty_allowance(spool.limits.spool)  # the final size is not known yet

    def ensure(self, end: int) -> int:
        while self._spool.size < end and not self.complete:
            data = self._reader.read(self._chunk)
            if not data:
                self.complete = True
                self._empty[0] = min(self._empty[0], empty_allowance(self._spool.size))
                break
            self._spool.append(data)
            self.spooled = self.size = self._spool.size
            self.window = max(self.window, self._spool.size - self._spool.punched)
            if self._progress is not None:
                self._progress(self._outer.input_position(), self.file_size)
        return min(end, self.size)

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        self.ensure(1 << 62 if end is None else end)
        return super().find(sub, start, end)

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        self.ensure(1 << 62 if end is None else end)
        return super().rfind(sub, start, end)

    def release(self, upto: int) -> None:
        if upto - self._spool.punched >= RELEASE_STEP:
            self._spool.punch(upto)

    def reset_allowance(self) -> None:
        self._empty[0] = empty_allowance(self._spool.size if self.complete else self._spool.limits.spool)

    def sibling(self) -> Source:
        raise TypeError("a forward-only source is read once; open the input with seek=True to walk it twice")

    def disk_used(self) -> int:
        """Bytes of temp space the spool holds now (st_blocks): what release gave back is not counted."""
        import os

        return os.fstat(self._spool.fd).st_blocks * 512
