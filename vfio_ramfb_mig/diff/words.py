"""Values and counts in words, as the diff's change texts say them.

Imports: model, text, vmstate.compile (the ramfb cfg type name), wire.ramfb, ram.listing (kind words).
"""

from __future__ import annotations

from typing import Any

from ..model import Blob, StructValue
from ..ram.listing import KIND_TEXT
from ..text import printable
from ..vmstate.compile import RAMFB_CFG_TYPE
from ..wire.ramfb import fourcc_text


def int_text(value: int, ftype: str = "") -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if ftype == "timer" and value == 0xFFFF_FFFF_FFFF_FFFF:
        return "not pending"
    if -10 < value < 10:
        return str(value)
    return f"{value} ({value & ((1 << 64) - 1):#x})"


def ramfb_value_text(key: str, value: int) -> str:
    if key == "fourcc":
        return f"{fourcc_text(value)} ({value:#010x})" if value else "0"
    if key in ("addr", "flags"):
        return f"{value:#x}"
    return str(value)


def value_text(value: Any, ftype: str = "") -> str:
    if isinstance(value, (bool, int)):
        return int_text(value, ftype)
    if isinstance(value, str):
        return repr(printable(value))
    if isinstance(value, (bytes, bytearray)):
        shown = value[:16].hex(" ")
        more = f" … +{len(value) - 16} more" if len(value) > 16 else ""
        return f"{len(value)} bytes ({shown}{more})"
    if isinstance(value, Blob):
        return f"{value.length:,} bytes"
    if isinstance(value, StructValue):
        return f"{value.vmsd_name} v{value.version}"
    if isinstance(value, dict) and ftype == RAMFB_CFG_TYPE:
        if not any(value.values()):
            return "not configured (28 zero bytes)"
        return (f"{value['width']}x{value['height']} {fourcc_text(value['fourcc'])} at {value['addr']:#x} "
                f"stride {value['stride']}")
    if isinstance(value, list):
        if value and all(isinstance(v, (bool, int)) for v in value):
            shown = ", ".join(int_text(v, ftype) for v in value[:8])
            if len(value) > 8:
                return f"[{shown}, … +{len(value) - 8} more] ({len(value)} items; --json shows all)"
            return f"[{shown}] ({len(value)} items)"
        return f"{len(value)} items"
    return repr(value)


def counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def differ_word(count: int) -> str:
    return "differs" if count == 1 else "differ"


def ram_counts(counts: dict[str, int]) -> str:
    shown = [f"{n} {KIND_TEXT[k]}" for k, n in counts.items() if n or k in ("page", "zero")]
    return " + ".join(shown)
