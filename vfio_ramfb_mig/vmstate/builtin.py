"""Built-in descriptions of the state vmig owns, mirroring QEMU 10.0.

These decode sections whether or not the stream has a vmdesc, and they name
what the vmdesc leaves opaque: the VFIO config (an old-style `data` blob in
the vmdesc) and the ramfb config (one 28-byte `cfg` buffer there, but six
big-endian fields on the wire, shown here as the leaf type "ramfb cfg").

    configuration             len, name[len]; subsections target-page-bits, capabilities, uuid
    ramfb-dev (v1)            state -> ramfb (v1) -> cfg (RAMFBCfg, 28 bytes)
    dirty-bitmap (v1)         chunks until EOS, each laid out by its flags (wire/dirtybitmap.py)
    VFIOPCIDevice (v1)        pdev -> PCIDevice (v2): version_id, config (256|4096), irq_state
                              [msix: table n*16 + PBA ceil(n/8), if MSI-X is present]
      VFIOPCIDevice/VFIODisplay (v1)  dpy -> VFIODisplay (v1) -> ramfb (v1) -> cfg

VMSTATE_STRUCT_POINTER adds no bytes, so `dpy` and `ramfb` are transparent
levels: the subsection payload is exactly the 28 cfg bytes.

Imports: vmstate.model, wire.ramfb, wire.dirtybitmap.
References: migration/savevm.c (vmstate_configuration and its subsections),
hw/display/ramfb.c (ramfb_vmstate), hw/display/ramfb-standalone.c (ramfb_dev_vmstate),
hw/vfio/pci.c (vmstate_vfio_pci_config, vmstate_vfio_display), hw/vfio/display.c
(vfio_display_vmstate), hw/pci/pci.c (vmstate_pci_device), hw/pci/msix.c (vmstate_msix),
migration/block-dirty-bitmap.c (the chunk layout).
"""

from __future__ import annotations

from functools import lru_cache

from ..wire.dirtybitmap import BitmapFlag
from ..wire.ramfb import RAMFB_CFG_SIZE
from .compile import RAMFB_CFG_TYPE
from .model import Description, FieldDesc

CONFIGURATION_SUBSECTIONS = (
    Description("configuration/target-page-bits", 1, (FieldDesc("target_page_bits", "uint32", size=4),),
                origin="builtin"),
    Description("configuration/capabilities", 1, (
        FieldDesc("caps_count", "uint32", size=4),
        FieldDesc("capabilities", "capability", count_from="caps_count"),
    ), origin="builtin"),
    Description("configuration/uuid", 1, (FieldDesc("uuid", "buffer", size=16),), origin="builtin"),
)

CONFIGURATION = Description("configuration", 1, (
    FieldDesc("len", "uint32", size=4),
    FieldDesc("name", "buffer", size_from="len"),
), subsections=CONFIGURATION_SUBSECTIONS, origin="builtin")


RAMFB = Description("ramfb", 1, (FieldDesc("cfg", RAMFB_CFG_TYPE, size=RAMFB_CFG_SIZE),), origin="builtin")

RAMFB_DEV = Description("ramfb-dev", 1, (FieldDesc("state", "struct", struct=RAMFB),), origin="builtin")

VFIO_DISPLAY = Description("VFIODisplay", 1, (FieldDesc("ramfb", "struct", struct=RAMFB),), origin="builtin")

VFIO_DISPLAY_SUBSECTION = Description("VFIOPCIDevice/VFIODisplay", 1,
                                      (FieldDesc("dpy", "struct", struct=VFIO_DISPLAY),), origin="builtin")

PCI_CONFIG_SIZES = (256, 4096)  # conventional, PCI Express (pci_config_size)
PCI_DEVICE_VERSION = 2


def msix_state_size(vectors: int) -> int:
    """MSI-X table (16 bytes per vector) then the pending-bit array (one bit per vector)."""
    return vectors * 16 + (vectors + 7) // 8


@lru_cache(maxsize=64)
def pci_device(config_size: int) -> Description:
    return Description("PCIDevice", PCI_DEVICE_VERSION, (
        FieldDesc("version_id", "int32 le", size=4),
        FieldDesc("config", "pci config", size=config_size),
        FieldDesc("irq_state", "pci irq state", size=16),
    ), origin="builtin")


@lru_cache(maxsize=256)
def vfio_pci_device(config_size: int, msix_vectors: int | None) -> Description:
    """VFIOPCIDevice for one device: its config size and MSI-X vector count are not on the wire,
    so the decoder picks them from the config space it reads (see codec.vfio)."""
    fields = [FieldDesc("pdev", "struct", struct=pci_device(config_size))]
    if msix_vectors:
        fields.append(FieldDesc("msix", "msix state", size=msix_state_size(msix_vectors)))
    return Description("VFIOPCIDevice", 1, tuple(fields), subsections=(VFIO_DISPLAY_SUBSECTION,), origin="builtin")


DIRTY_BITMAP_CHUNK = "dirty-bitmap chunk"


@lru_cache(maxsize=64)
def dirty_bitmap_chunk(flag_bytes: int, flags: int) -> Description:
    """One chunk of the "dirty-bitmap" section (wire/dirtybitmap.py), laid out by its flags:
    `flag_bytes` how many bytes they take on the wire, `flags` what QEMU's loader reads of them."""
    fields = [FieldDesc("flags", "uint8", size=1)]
    if flag_bytes > 1:
        fields.append(FieldDesc("flags_extra", "uint8", size=1))
    if flag_bytes > 2:
        fields.append(FieldDesc("flags_more", "uint16", size=2))
    for name, flag in (("node_alias", BitmapFlag.DEVICE_NAME), ("bitmap_alias", BitmapFlag.BITMAP_NAME)):
        if flags & flag:  # a counted string
            fields += [FieldDesc(f"{name}_len", "uint8", size=1), FieldDesc(name, "buffer", size_from=f"{name}_len")]
    if flags & BitmapFlag.START:
        fields += [FieldDesc("granularity", "uint32", size=4), FieldDesc("bitmap_flags", "uint8", size=1)]
    elif flags & BitmapFlag.COMPLETE:
        pass
    elif flags & BitmapFlag.BITS:
        fields += [FieldDesc("start_sector", "uint64", size=8), FieldDesc("nr_sectors", "uint32", size=4)]
        if not flags & BitmapFlag.ZEROES:
            fields += [FieldDesc("buf_size", "uint64", size=8), FieldDesc("bits", "buffer", size_from="buf_size")]
    return Description(DIRTY_BITMAP_CHUNK, 1, tuple(fields), origin="builtin")


#: Sections decoded by built-in description, keyed by idstr, with the version they describe.
BUILTIN_SECTIONS = {"ramfb-dev": RAMFB_DEV}
