"""The stream every construct parse in vmig reads from: a window on the input buffer.

Reads never go past the window's end, so a hostile length can never allocate more than
the input holds, and `remaining()` lets an array refuse a count that cannot fit before it
reads any element (vmstate/compile.py). Fields and elements that take no bytes are not
bounded by the input, so they are charged to `empty`, an allowance one input shares
across all its parses (source/buffer.py hands out the windows).

Imports: nothing (no file I/O: the buffer is an mmap or bytes someone else opened).
"""

from __future__ import annotations

from typing import Any


def empty_allowance(size: int) -> int:
    """Elements without bytes a `size`-byte input may hold: a few per 16 bytes is plenty (real
    vmdescs have none), and keeps a hostile description's lists near the input's size."""
    return 4096 + size // 16


class BoundedStream:
    """A read-only stream over buf[start:end]; reads never go past `end`, so a hostile
    length can never allocate more than the input holds."""

    def __init__(self, buf: Any, start: int, end: int, empty: list[int] | None = None) -> None:
        self.buf, self.pos, self.end = buf, start, end
        #: how many more fields and array elements that take no bytes may be parsed
        #: (vmstate.compile.Located): the input cannot bound those, so a Source shares one
        #: allowance across all its parses
        self.empty = empty if empty is not None else [empty_allowance(end - start)]

    def read(self, n: int = -1) -> bytes:
        stop = self.end if n is None or n < 0 else min(self.end, self.pos + n)
        data = self.buf[self.pos:stop]
        self.pos = max(self.pos, stop)
        return bytes(data)

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else (self.pos + offset if whence == 1 else self.end + offset)
        return self.pos

    def remaining(self) -> int:
        return self.end - self.pos

    def seekable(self) -> bool:
        return True
