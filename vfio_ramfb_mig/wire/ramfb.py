"""RAMFBCfg: the 28-byte ramfb configuration, big-endian on the wire.

The guest firmware writes it through fw_cfg DMA straight into RAMFBState.cfg
in big-endian order, and the vmstate copies the buffer raw (VMSTATE_BUFFER_UNSAFE),
so the stream holds big-endian fields on every host. Reading it little-endian is
the classic bug.

Imports: construct, dataclasses.
References: hw/display/ramfb.c (struct RAMFBCfg, ramfb_fw_cfg_write, ramfb_vmstate),
hw/display/ramfb-standalone.c (ramfb_dev_vmstate), hw/vfio/display.c (vfio_display_vmstate),
ui/qemu-pixman.c (qemu_drm_format_to_pixman), include/ui/qemu-pixman.h (PIXMAN_LE_*),
include/drm/drm_fourcc.h (the byte order of each format).
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import Int32ub, Int64ub, Struct

RamfbCfg = Struct(
    "addr" / Int64ub,
    "fourcc" / Int32ub,
    "flags" / Int32ub,
    "width" / Int32ub,
    "height" / Int32ub,
    "stride" / Int32ub,
)
RAMFB_CFG_SIZE = 28
#: the RAMFBCfg keys in wire order, and where each starts in the 28 bytes: read off the schema
RAMFB_CFG_KEYS: tuple[str, ...] = tuple(sub.name for sub in RamfbCfg.subcons)
RAMFB_CFG_OFFSETS: dict[str, int] = {sub.name: sum(s.sizeof() for s in RamfbCfg.subcons[:i])
                                     for i, sub in enumerate(RamfbCfg.subcons)}

#: Geometry QEMU accepts (ramfb_create_display_surface; the Bochs VBE limits of bochs-vbe.h).
WIDTH_RANGE = (16, 16000)
HEIGHT_RANGE = (16, 12000)


@dataclass(frozen=True, slots=True)
class RamfbFormat:
    """A pixel format ramfb shows. DRM formats are little-endian words, so `byte_order` names the
    bytes of one pixel as they lie in guest memory: "BGRX" for XRGB8888 is blue at the lowest
    address. X is padding, A is alpha; QEMU's screendump drops both (it converts to 8-bit RGB)."""

    fourcc: str
    drm_name: str
    bytes_per_pixel: int
    byte_order: str


#: The DRM fourccs ramfb accepts in QEMU 10.0: exactly the entries of qemu_drm_format_to_pixman's
#: table (ui/qemu-pixman.c drm_format_pixman_map); any other fourcc maps to pixman format 0 and
#: ramfb_create_display_surface refuses it (the guest keeps no display).
RAMFB_FORMATS: dict[str, RamfbFormat] = {f.fourcc: f for f in (
    RamfbFormat("RG24", "RGB888", 3, "BGR"),
    RamfbFormat("AR24", "ARGB8888", 4, "BGRA"),
    RamfbFormat("XR24", "XRGB8888", 4, "BGRX"),
    RamfbFormat("XB24", "XBGR8888", 4, "RGBX"),
    RamfbFormat("AB24", "ABGR8888", 4, "RGBA"),
)}

#: fourcc -> DRM format name, for the formats ramfb accepts
DRM_FORMATS = {code: f.drm_name for code, f in RAMFB_FORMATS.items()}


def fourcc_text(code: int) -> str:
    """The four ASCII letters of a DRM fourcc (least significant byte first), e.g. 'XR24'."""
    letters = code.to_bytes(4, "little")
    if all(0x20 <= b < 0x7F for b in letters):
        return letters.decode("ascii")
    return f"{code:#010x}"


def fourcc_code(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "little")
