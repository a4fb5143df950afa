"""XBZRLE page deltas (RAM_SAVE_FLAG_XBZRLE records): how a delta changes a page.

A delta is pairs of (uleb128 count of bytes left as they are, uleb128 count of
new bytes, those bytes). The record header (encoding 0x01, be16 length) is read
by the decoder; this is the delta itself.

References: migration/xbzrle.c (xbzrle_decode_buffer), migration/ram.c (load_xbzrle).
"""

from __future__ import annotations


def apply_delta(page: bytearray, delta: bytes) -> None:
    """Apply an XBZRLE delta to `page` in place, refusing what QEMU's decoder refuses.

    The delta is pairs of (uleb128 count of bytes left as they are, uleb128 count of new bytes,
    those bytes); counts take one or two bytes (at most 14 bits); a run of new bytes is never
    empty, nor is a run of kept bytes after the first; nothing may reach past the page or the
    delta. Raises ValueError on a bad delta."""
    size, end, i, d = len(page), len(delta), 0, 0

    def count() -> int:
        nonlocal i
        if end - i < 2:  # a count is always followed by something
            raise ValueError(f"delta ends at byte {i} where a run length is expected")
        first = delta[i]
        if first < 0x80:
            i += 1
            return first
        if delta[i + 1] >= 0x80:
            raise ValueError(f"run length at byte {i} needs more than 14 bits")
        i += 2
        return (first & 0x7F) | delta[i - 1] << 7

    while i < end:
        at = i
        keep = count()
        if at and not keep:
            raise ValueError(f"empty run of unchanged bytes at byte {at}")
        d += keep
        if d > size:
            raise ValueError(f"run of unchanged bytes at byte {at} reaches past the page")
        at = i
        new = count()
        if not new:
            raise ValueError(f"empty run of new bytes at byte {at}")
        if d + new > size or i + new > end:
            raise ValueError(f"run of {new} new bytes at byte {at} reaches past the "
                             f"{'page' if d + new > size else 'delta'}")
        page[d:d + new] = delta[i:i + new]
        d += new
        i += new


def xbzrle_apply(old: bytes, delta: bytes) -> bytes:
    """The page `old` with an XBZRLE delta applied (ValueError on a bad delta)."""
    page = bytearray(old)
    apply_delta(page, delta)
    return bytes(page)
