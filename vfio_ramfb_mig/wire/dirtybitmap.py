"""Block dirty bitmap migration: the "dirty-bitmap" section (instance 0, version 1).

QEMU registers it with SaveVMHandlers at start-up, so every destination has the entry;
a source writes it only with the `dirty-bitmaps` capability and a bitmap to send. Each
START, PART and END record carries chunks until one whose flags have EOS:

    flags            1 byte (0x80 set: more flag bytes follow, see `effective_flags`)
    [u8 n, n bytes]  node alias      if DEVICE_NAME (else: the previous chunk's node)
    [u8 n, n bytes]  bitmap alias    if BITMAP_NAME (else: the previous chunk's bitmap)
    START:    be32 granularity, u8 bitmap flags (enabled 0x01, persistent 0x02)
    COMPLETE: nothing more
    BITS:     be64 first sector, be32 sector count,
              then unless ZEROES: be64 n, n bytes of serialized bitmap

The loader takes START before COMPLETE before BITS when several are set, and stops after
the chunk that has EOS (which may also carry one of them).

Imports: enum.
References: migration/block-dirty-bitmap.c (DIRTY_BITMAP_MIG_FLAG_*, qemu_get_bitmap_flags,
send_bitmap_header/start/bits, dirty_bitmap_load, dirty_bitmap_load_header,
dirty_bitmap_load_start, dirty_bitmap_load_bits, dirty_bitmap_mig_init),
migration/migration.c (migration_object_init: the handler is always registered).
"""

from __future__ import annotations

from enum import IntFlag

DIRTY_BITMAP_IDSTR = "dirty-bitmap"
DIRTY_BITMAP_VERSION = 1


class BitmapFlag(IntFlag):
    EOS = 0x01
    ZEROES = 0x02
    BITMAP_NAME = 0x04
    DEVICE_NAME = 0x08
    START = 0x10
    COMPLETE = 0x20
    BITS = 0x40
    EXTRA_FLAGS = 0x80


#: a BITS chunk's buffer: the loader refuses a larger one before reading it
MAX_BITS_BUFFER = 10 * 1024
#: the START chunk's bitmap flags the loader knows; any other bit is refused
START_FLAGS_KNOWN = 0x07


def flag_bytes(first: int, second: int | None) -> int:
    """How many bytes the flags take: 1, or 2 or 4 when EXTRA_FLAGS is set in the first, then
    the second byte (QEMU writes one byte; its reader takes the longer forms)."""
    if not first & BitmapFlag.EXTRA_FLAGS:
        return 1
    return 4 if second is not None and second & BitmapFlag.EXTRA_FLAGS else 2


def effective_flags(raw: bytes) -> int:
    """The flags QEMU's loader acts on. It keeps them in one byte while it reads the longer
    forms, so only the low byte of the last piece read survives (a 4-byte form: its last byte)."""
    return raw[-1]
