"""RAMFBCfg: the 28-byte ramfb configuration, big-endian on the wire.

The guest firmware writes it through fw_cfg DMA straight into RAMFBState.cfg
in big-endian order, and the vmstate copies the buffer raw (VMSTATE_BUFFER_UNSAFE),
so the stream holds big-endian fields on every host. Reading it little-endian is
the classic bug.

Imports: construct.
References: hw/display/ramfb.c (struct RAMFBCfg, ramfb_fw_cfg_write, ramfb_vmstate),
hw/display/ramfb-standalone.c (ramfb_dev_vmstate), hw/vfio/display.c (vfio_display_vmstate).
"""

from __future__ import annotations

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

#: Geometry QEMU accepts on load (ramfb_fw_cfg_write / ramfb_post_load; VBE limits).
WIDTH_RANGE = (16, 16000)
HEIGHT_RANGE = (16, 12000)

#: DRM fourcc codes ramfb can show (qemu_drm_format_to_pixman): code -> DRM format name.
DRM_FORMATS = {
    "XR24": "XRGB8888",
    "AR24": "ARGB8888",
    "XB24": "XBGR8888",
    "AB24": "ABGR8888",
    "RX24": "RGBX8888",
    "BX24": "BGRX8888",
    "RA24": "RGBA8888",
    "BA24": "BGRA8888",
    "RG24": "RGB888",
    "BG24": "BGR888",
    "RG16": "RGB565",
    "XR15": "XRGB1555",
}


def fourcc_text(code: int) -> str:
    """The four ASCII letters of a DRM fourcc (least significant byte first), e.g. 'XR24'."""
    letters = code.to_bytes(4, "little")
    if all(0x20 <= b < 0x7F for b in letters):
        return letters.decode("ascii")
    return f"{code:#010x}"


def fourcc_code(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "little")
