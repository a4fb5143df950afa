"""Byte ranges of the two sides, read and compared in chunks with resident memory flat.

A side's bytes come from the model (inline bytes) or from its Source; what the model
keeps only as a range (buffers over 4 KiB, opaque payloads, VFIO device data) is read
here, compared in CHUNK steps, and the mapped pages read are let go every DROP_AFTER
bytes (ram.state.ReadWindow).

Imports: source (Source), ram.state (ReadWindow).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..model import Span
from ..ram.state import ReadWindow
from ..source import Source

#: bytes compared per step when a range is larger
CHUNK = 1 << 20
#: after reading this much through a source's mmap, let the kernel drop the mapped pages (RSS stays flat)
DROP_AFTER = 8 << 20


def _xor_count(x: bytes, y: bytes) -> tuple[int, int]:
    """(index of the first differing byte or -1, number of differing bytes) of equal-length x, y."""
    if x == y:
        return -1, 0
    n = len(x)
    diff = (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).to_bytes(n, "big")
    first = next(i for i, c in enumerate(diff) if c)
    return first, n - diff.count(0)


class Reader:
    """Reads byte ranges of one side: from the model (inline bytes) or its source.

    Reads through a mapped file are counted: once `DROP_AFTER` bytes were read, the mapped
    pages of the range read since the last drop are let go (MADV_DONTNEED), so resident
    memory does not grow with the input however much of it is compared."""

    def __init__(self, source: Source | None) -> None:
        self.source = source
        self.window = ReadWindow(source, DROP_AFTER)

    def get(self, offset: int, length: int, inline: bytes | None = None) -> bytes | None:
        if inline is not None:
            return inline
        if self.source is None or offset + length > self.source.size:
            return None
        data = self.source.buf[offset:offset + length]
        self.touched(offset, length)
        return data if isinstance(data, bytes) else bytes(data)

    def touched(self, offset: int, length: int) -> None:
        """`length` bytes at `offset` were read: let them go once there is enough of it."""
        self.window.touched(offset, length)

    def drop(self) -> None:
        """Let the kernel drop the mapped pages read since the last drop (Source.forget)."""
        self.window.flush()


class Inline(Reader):
    """A byte string that sits at `base` in its input."""

    def __init__(self, data: bytes, base: int) -> None:
        super().__init__(None)
        self.data, self.base = data, base

    def get(self, offset: int, length: int, inline: bytes | None = None) -> bytes | None:
        start = offset - self.base
        if start < 0 or start + length > len(self.data):
            return None
        return self.data[start:start + length]


def range_diff(ra: Reader, oa: int, la: int, rb: Reader, ob: int, lb: int) -> tuple[int, int] | None:
    """(first differing index or -1, differing bytes over the common length) of two ranges,
    read in chunks; None when a side cannot be read."""
    n = min(la, lb)
    first, count, pos = -1, 0, 0
    while pos < n:
        step = min(CHUNK, n - pos)
        x, y = ra.get(oa + pos, step), rb.get(ob + pos, step)
        if x is None or y is None:
            return None
        f, c = _xor_count(x, y)
        if c and first < 0:
            first = pos + f
        count += c
        pos += step
    if la != lb and first < 0:
        first = n
    return first, count


def same_bytes(ra: Reader, sa: Span | None, rb: Reader, sb: Span | None) -> bool:
    if sa is None or sb is None or sa.length != sb.length:
        return False
    result = range_diff(ra, sa.offset, sa.length, rb, sb.offset, sb.length)
    return result is not None and result[0] < 0


def hash_ranges(reader: Reader, ranges: Iterable[tuple[int, int, bytes | None]]) -> str | None:
    h = hashlib.blake2b(digest_size=20)
    for offset, length, inline in ranges:
        if inline is not None:
            h.update(inline)
            continue
        pos = 0
        while pos < length:
            step = min(CHUNK, length - pos)
            data = reader.get(offset + pos, step)
            if data is None:
                return None
            h.update(data)
            pos += step
    return h.hexdigest()
