"""RAM summaries for golden files: per block, how its final pages are made and a hash of them.

For one block of a final page state (ram.state): how many pages are zero, normal
(a page's bytes) and XBZRLE (the last record of the page; mapped-ram: a set bit is
normal, a clear bit zero), and a sha256 over the final state in address order:
for each page some record set, its offset in the block (be64), its kind (Z, P, X)
and what it holds (the fill byte; the page; the page the XBZRLE delta made).
Pages no record set are left out. Two streams of the same guest memory give the
same hash however often and in what order their pages were sent.

Imports: ram.state.
References: migration/ram.c (ram_load_precopy).
"""

from __future__ import annotations

import hashlib
import struct

from .state import NOT_SENT, PAGE, XBZRLE, ZERO, BlockPages, PageState, ReadWindow

_PAGE_HEADER = struct.Struct(">QB")
_LETTER = {PAGE: ord("P"), ZERO: ord("Z"), XBZRLE: ord("X")}


def block_summary(state: PageState, pages: BlockPages | None) -> tuple[dict[str, int], str]:
    """({"zero": n, "page": n, "xbzrle": n}, sha256 hex) of a block's final pages (see the module
    docstring); a block without pages (None, or nothing sent) is all zeros and the empty hash."""
    counts = {"zero": 0, "page": 0, "xbzrle": 0}
    digest = hashlib.sha256()
    if pages is None or pages.table is None:
        return counts, digest.hexdigest()
    ps = state.page_size
    update, header = digest.update, _PAGE_HEADER.pack
    window = ReadWindow(state.src)
    view = memoryview(state.buf) if state.buf is not None else None
    try:
        for first, end, value, step in pages.extents():
            if value == NOT_SENT:
                continue
            kind = value & 3
            counts[("page", "zero", "xbzrle")[kind]] += end - first
            letter = _LETTER[kind]
            if kind == PAGE:
                if view is None:
                    raise ValueError("hashing RAM pages needs the stream's bytes")
                where, stride = value >> 10, step >> 10
                for i in range(first, end):
                    update(header(i * ps, letter))
                    update(view[where:where + ps])
                    where += stride
                window.touched(value >> 10, (end - first - 1) * stride + ps)
            elif kind == ZERO:
                fill = bytes(((value >> 2) & 0xFF,))
                for i in range(first, end):
                    update(header(i * ps, letter))
                    update(fill)
            else:
                data = state.content(value)
                if data is None:
                    raise ValueError("hashing XBZRLE pages needs the stream's bytes")
                update(header(first * ps, letter))
                update(data)
    finally:
        window.flush()
        if view is not None:
            view.release()
    return counts, digest.hexdigest()
