"""The bounds on what reading an input may cost, and how a user raises them.

Two resources grow with a hostile or huge input unless bounded:

- temp space: a pipe, a compressed file or a fragmented qcow2 VM state is copied into an
  unnamed temporary file (in $TMPDIR) so it can be read by offset. `VMIG_SPOOL_LIMIT`
  (default 16 GiB) bounds that file; a verb that reads forward only keeps a window of it.
- decompressor memory: an xz dictionary, a zstd window, an lzop block and a libvirt header's
  XML are held in memory. `VMIG_MEMORY_LIMIT` (default 256 MiB; `xz -9` needs 65 MiB, zstd's own
  default window limit is 128 MiB) bounds each.

Sizes are bytes or a number with K, M, G or T (binary units): `VMIG_SPOOL_LIMIT=64G`.

Imports: errors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import InputError

SPOOL_ENV = "VMIG_SPOOL_LIMIT"
MEMORY_ENV = "VMIG_MEMORY_LIMIT"
DEFAULT_SPOOL = 16 << 30
DEFAULT_MEMORY = 256 << 20

_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def parse_size(text: str, what: str = "size") -> int:
    """'16G' -> 17179869184; plain numbers are bytes."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not found:
        raise InputError(f"bad {what} {text!r}: expected bytes or a number with K, M, G or T (e.g. 16G)")
    return int(found.group(1)) << _UNITS[found.group(2).upper()]


def size_text(n: int) -> str:
    """17179869184 -> '16 GiB' (whole units when exact, else one decimal)."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if n % (1 << shift) == 0 else f"{value:.1f} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Limits:
    spool: int = DEFAULT_SPOOL
    memory: int = DEFAULT_MEMORY

    @classmethod
    def from_env(cls) -> Limits:
        spool, memory = os.environ.get(SPOOL_ENV), os.environ.get(MEMORY_ENV)
        return cls(spool=parse_size(spool, SPOOL_ENV) if spool else DEFAULT_SPOOL,
                   memory=parse_size(memory, MEMORY_ENV) if memory else DEFAULT_MEMORY)

    def spool_hint(self) -> str:
        return f"the temp-space limit is {size_text(self.spool)}: set {SPOOL_ENV} (e.g. {SPOOL_ENV}=64G) to raise it"

    def memory_hint(self) -> str:
        return (f"the memory limit for decompression is {size_text(self.memory)}: set {MEMORY_ENV} "
                f"(e.g. {MEMORY_ENV}=1G) to raise it")
