"""How much guest RAM a stream may make vmig allocate or write: bounded by what the stream can
hold, and by a limit the user can raise.

A page record takes at least 9 bytes (an address word that continues its block and a
fill byte), so an N-byte stream sets at most N // 9 pages. RAM blocks (or page runs in a
JSON document) that claim more pages than that are refused, unless they stay within
`max_ram` bytes (default 64 GiB; --max-ram, $VMIG_MAX_RAM): a real stream can claim more
RAM than it sends (x-ignore-shared blocks, pages the guest freed), but a 62-byte stream
claiming 8 TiB is hostile. The decoder's walk, the final page state, extract and encode
all ask `check_claim`.

Imports: errors, wire.ram.
"""

from __future__ import annotations

import os
import re

from ..errors import LimitError
from ..wire.ram import ADDRESS_WORD_SIZE, ZERO_FILL_SIZE

#: the smallest page record: a word that continues its block and a fill byte
SMALLEST_RECORD = ADDRESS_WORD_SIZE + ZERO_FILL_SIZE
#: bytes of guest RAM a stream may claim beyond what it can hold, unless the user allows more
DEFAULT_MAX_RAM = 64 << 30
MAX_RAM_ENV = "VMIG_MAX_RAM"
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64G', '512M', '1T', '4096' (bytes; K/M/G/T/P are powers of 1024). ValueError otherwise."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (expected e.g. 64G, 512M, 4096)")
    return int(m.group(1)) << 10 * " kmgtp".index((m.group(2) or " ").lower())


def default_max_ram() -> int:
    """DEFAULT_MAX_RAM, or $VMIG_MAX_RAM."""
    text = os.environ.get(MAX_RAM_ENV)
    try:
        return parse_size(text) if text else DEFAULT_MAX_RAM
    except ValueError as exc:
        raise LimitError(f"${MAX_RAM_ENV}: {exc}") from None


def size_text(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.4g} {unit}"
    return f"{n} bytes"


def check_claim(pages: int, page_size: int, stream_size: int, max_ram: int | None, subject: str) -> None:
    """Refuse `pages` pages of `page_size` (LimitError) when they are more than a `stream_size`-byte
    stream can hold and more than `max_ram` bytes. `subject` starts the message ("the RAM blocks
    claim")."""
    limit = default_max_ram() if max_ram is None else max_ram
    holds = stream_size // SMALLEST_RECORD
    if pages <= holds or pages * page_size <= limit:
        return
    raise LimitError(f"{subject} {size_text(pages * page_size)} ({pages:,} pages of {page_size}), more than "
                     f"this {stream_size:,}-byte stream can hold ({holds:,} page records) and more than the "
                     f"limit of {size_text(limit)}",
                     hint=f"to go on anyway, raise the limit: {MAX_RAM_ENV}=SIZE (or --max-ram SIZE where the "
                          f"verb has it)")
