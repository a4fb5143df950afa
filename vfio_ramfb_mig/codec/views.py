"""Plain-words readings of raw device state: PCI config space, MSI-X, ramfb config, dirty bitmap chunks.

These are derived (`Field.info`), never encoded: the bytes stay the truth.

Imports: wire.ramfb, wire.dirtybitmap.
References: include/standard-headers/linux/pci_regs.h (register offsets),
hw/pci/msix.c (table entry layout), hw/display/ramfb.c, migration/block-dirty-bitmap.c.
"""

from __future__ import annotations

from typing import Any

from ..wire.dirtybitmap import START_FLAGS_KNOWN, BitmapFlag
from ..wire.ramfb import DRM_FORMATS, HEIGHT_RANGE, WIDTH_RANGE, fourcc_text

PCI_CAP_NAMES = {
    0x01: "Power Management", 0x05: "MSI", 0x09: "Vendor Specific", 0x0D: "Bridge subsystem vendor",
    0x10: "PCI Express", 0x11: "MSI-X", 0x12: "SATA", 0x13: "Advanced Features",
}
PCI_CAP_ID_EXP = 0x10
PCI_CAP_ID_MSIX = 0x11
PCI_STATUS_CAP_LIST = 0x10
PCI_CAPABILITY_LIST = 0x34
#: a capability list longer than this is a loop
MAX_CAPS = 48


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset:offset + size], "little")


def pci_capabilities(config: bytes) -> list[tuple[int, int]]:
    """(offset, id) of each capability in the conventional list, loop-safe."""
    if len(config) < 64 or not _le(config, 6, 2) & PCI_STATUS_CAP_LIST:
        return []
    caps, seen, ptr = [], set(), config[PCI_CAPABILITY_LIST] & 0xFC
    while ptr >= 0x40 and ptr + 2 <= min(len(config), 256) and ptr not in seen and len(caps) < MAX_CAPS:
        seen.add(ptr)
        caps.append((ptr, config[ptr]))
        ptr = config[ptr + 1] & 0xFC
    return caps


def msix_vectors(config: bytes) -> int | None:
    """Table size from the MSI-X capability (Message Control & 0x7ff, plus one), or None."""
    for ptr, cap_id in pci_capabilities(config):
        if cap_id == PCI_CAP_ID_MSIX and ptr + 4 <= len(config):
            return (_le(config, ptr + 2, 2) & 0x7FF) + 1
    return None


def is_express(config: bytes) -> bool:
    return any(cap_id == PCI_CAP_ID_EXP for _, cap_id in pci_capabilities(config))


def pci_config_info(config: bytes) -> dict[str, Any]:
    if len(config) < 64:
        return {}
    header_type = config[0x0E] & 0x7F
    bars = []
    for i in range(6 if header_type == 0 else 2):
        raw = _le(config, 0x10 + 4 * i, 4)
        if raw:
            kind = "io" if raw & 1 else ("mem64" if raw & 6 == 4 else "mem32")
            bars.append({"bar": i, "kind": kind, "value": raw,
                         "address": raw & ~0x3 if raw & 1 else raw & ~0xF,
                         "prefetchable": bool(raw & 8) if not raw & 1 else False})
    caps = []
    for ptr, cap_id in pci_capabilities(config):
        cap: dict[str, Any] = {"offset": ptr, "id": cap_id, "name": PCI_CAP_NAMES.get(cap_id, f"cap {cap_id:#04x}")}
        if cap_id == PCI_CAP_ID_MSIX:
            control = _le(config, ptr + 2, 2)
            cap.update(vectors=(control & 0x7FF) + 1, enabled=bool(control & 0x8000),
                       masked=bool(control & 0x4000))
        elif cap_id == 0x05:
            control = _le(config, ptr + 2, 2)
            cap.update(enabled=bool(control & 1), vectors=1 << ((control >> 4) & 7))
        caps.append(cap)
    return {
        "vendor_id": _le(config, 0, 2), "device_id": _le(config, 2, 2),
        "command": _le(config, 4, 2), "status": _le(config, 6, 2),
        "revision": config[8], "class_code": _le(config, 9, 3), "header_type": config[0x0E],
        "subsystem_vendor_id": _le(config, 0x2C, 2) if header_type == 0 else None,
        "subsystem_id": _le(config, 0x2E, 2) if header_type == 0 else None,
        "interrupt_line": config[0x3C], "interrupt_pin": config[0x3D],
        "bars": bars, "capabilities": caps, "express": len(config) == 4096,
    }


def msix_info(state: bytes, vectors: int) -> dict[str, Any]:
    """Table entries (address, data, masked) and pending bits; entries are little-endian u32s."""
    entries = []
    for i in range(vectors):
        e = state[16 * i:16 * i + 16]
        address = _le(e, 0, 4) | _le(e, 4, 4) << 32
        entries.append({"vector": i, "address": address, "data": _le(e, 8, 4), "masked": bool(_le(e, 12, 4) & 1)})
    pba = state[16 * vectors:]
    pending = [i for i in range(vectors) if pba[i // 8] >> (i % 8) & 1]
    return {"vectors": vectors, "entries": entries, "pending": pending}


def ramfb_info(cfg: dict[str, int]) -> dict[str, Any]:
    fourcc = fourcc_text(cfg["fourcc"])
    configured = any(cfg.values())
    valid = (WIDTH_RANGE[0] <= cfg["width"] <= WIDTH_RANGE[1] and HEIGHT_RANGE[0] <= cfg["height"] <= HEIGHT_RANGE[1]
             and fourcc in DRM_FORMATS)
    return {"fourcc": fourcc, "format": DRM_FORMATS.get(fourcc), "configured": configured,
            "valid": valid if configured else None}


def dirty_bitmap_info(flags: int, values: dict[str, Any]) -> dict[str, Any]:
    """A dirty bitmap chunk in words: what QEMU's loader does with it (`flags` as it reads them,
    `values` the chunk's fields by name). Aliases not sent are the previous chunk's."""
    if flags & BitmapFlag.START:
        kind = "start"
    elif flags & BitmapFlag.COMPLETE:
        kind = "complete"
    elif flags & BitmapFlag.BITS:
        kind = "zeroes" if flags & BitmapFlag.ZEROES else "bits"
    else:
        kind = "none"
    info: dict[str, Any] = {"kind": kind, "eos": bool(flags & BitmapFlag.EOS)}
    for name in ("node_alias", "bitmap_alias"):
        if name in values:
            info[name] = bytes(values[name]).decode("utf-8", "backslashreplace")
    if kind == "start":
        info["granularity"] = values["granularity"]
        bits = values["bitmap_flags"]
        info["enabled"], info["persistent"] = bool(bits & 0x01), bool(bits & 0x02)
        if bits & ~START_FLAGS_KNOWN & 0xFF:
            info["unknown_flags"] = bits & ~START_FLAGS_KNOWN & 0xFF
    elif kind in ("bits", "zeroes"):
        info["first_sector"], info["sectors"] = values["start_sector"], values["nr_sectors"]
        if kind == "bits":  # the serialized bitmap: one bit per granularity-sized piece of the disk
            info["bits_set"] = int.from_bytes(bytes(values["bits"]), "little").bit_count()
    return info


def dirty_bitmap_words(info: dict[str, Any]) -> str:
    """One line for a chunk (render's tree)."""
    words = {"start": "START", "complete": "COMPLETE", "bits": "BITS", "zeroes": "BITS (all clear)",
             "none": ""}[info["kind"]]
    if "node_alias" in info:
        words += f" node {info['node_alias']!r}"
    if "bitmap_alias" in info:
        words += f" bitmap {info['bitmap_alias']!r}"
    if info["kind"] == "start":
        state = [w for w, on in (("enabled", info["enabled"]), ("persistent", info["persistent"])) if on]
        words += f": granularity {info['granularity']} bytes{', ' if state else ''}{', '.join(state)}"
        if "unknown_flags" in info:
            words += f", unknown flags {info['unknown_flags']:#04x} (QEMU refuses them)"
    elif info["kind"] in ("bits", "zeroes"):
        words += f": sectors {info['first_sector']}..{info['first_sector'] + info['sectors'] - 1}"
        if "bits_set" in info:
            words += f", {info['bits_set']} bits set"
    if info["eos"]:
        words += ", end of section" if words else "end of section"
    return words.strip()
