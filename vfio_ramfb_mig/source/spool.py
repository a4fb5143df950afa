"""An unnamed temporary file that an input is copied into so it can be read by offset.

The file is mapped once, at the largest size the spool limit allows (a sparse file: only what
is written takes disk space), so the buffer readers hold never moves while it grows. `punch`
gives back the disk behind a point a forward-only reader has passed. A spool read through a
window (`window=True`) is mapped at the largest size a temporary file may have, and the limit
bounds what it holds at once (written, not yet punched), not how long the stream is.

Imports: errors, source.limits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import tempfile

from ..errors import InputError, LimitError
from .limits import Limits, size_text

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
#: the mapping is never larger than this, whatever the limit (address space, not disk; ext4's
#: largest file is just under 16 TiB)
MAX_RESERVE = 1 << 43


def _fallocate() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _fallocate()


class Spool:
    """Append-only bytes in a sparse temp file, mapped for reading by offset."""

    def __init__(self, what: str, limits: Limits, *, window: bool = False) -> None:
        self.what, self.limits, self.window = what, limits, window
        self.reserve = MAX_RESERVE if window else min(max(limits.spool, mmap.PAGESIZE), MAX_RESERVE)
        self.reserve += -self.reserve % mmap.PAGESIZE
        self.size = 0
        self.punched = 0  # disk before this offset was given back (punch)
        try:
            self.file = tempfile.TemporaryFile(prefix="vmig-spool-")
        except OSError as exc:
            raise InputError(f"cannot make a temporary file to read {what}: {exc.strerror} "
                             f"(in {tempfile.gettempdir()}; set TMPDIR to use another directory)") from exc
        self.fd = self.file.fileno()
        try:
            os.ftruncate(self.fd, self.reserve)
            self.mm = mmap.mmap(self.fd, self.reserve)
        except (OSError, ValueError, OverflowError) as exc:
            self.file.close()
            raise InputError(f"cannot map a {size_text(self.reserve)} temporary file to read {what}: {exc}") from exc

    def append(self, data: bytes | memoryview) -> None:
        n = len(data)
        if self.window:
            if self.size - self.punched + n > self.limits.spool:
                raise LimitError(f"reading {self.what} forward needs more temp space at once than vmig may use "
                                 f"(at least {size_text(self.size - self.punched + n)}, at stream offset "
                                 f"{self.size}); {self.limits.spool_hint()}")
            if self.size + n > self.reserve:
                raise LimitError(f"{self.what} is longer than {size_text(self.reserve)}, the most vmig reads")
        elif self.size + n > self.limits.spool:
            raise LimitError(f"{self.what} is larger than the temp space vmig may use to read it "
                             f"(at least {size_text(self.size + n)}); {self.limits.spool_hint()}")
        try:
            os.pwrite(self.fd, data, self.size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise LimitError(f"the disk holding {tempfile.gettempdir()} is full after "
                                 f"{size_text(self.size)} of {self.what}; set TMPDIR to a larger one") from exc
            raise InputError(f"cannot write the temporary copy of {self.what}: {exc.strerror}") from exc
        self.size += n

    def skip(self, n: int) -> None:
        """Add `n` zero bytes without writing them (a hole)."""
        if self.size + n > self.limits.spool:
            raise LimitError(f"{self.what} is larger than the temp space vmig may use to read it "
                             f"({size_text(self.size + n)}); {self.limits.spool_hint()}")
        self.size += n

    def punch(self, upto: int) -> None:
        """Give back the disk before `upto` (whole pages); reading there then gives zeros."""
        end = min(upto, self.size)
        end -= end % mmap.PAGESIZE
        if end <= self.punched:
            return
        if hasattr(mmap, "MADV_DONTNEED"):
            self.mm.madvise(mmap.MADV_DONTNEED, self.punched, end - self.punched)
        if _FALLOCATE is not None:
            _FALLOCATE(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, self.punched, end - self.punched)
        self.punched = end

    def close(self) -> None:
        try:
            self.mm.close()
        except BufferError:  # a reader still holds a view: the mapping goes when it does
            pass
        self.file.close()
