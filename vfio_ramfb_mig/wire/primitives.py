"""Wire primitives: big-endian integers, QEMU counted strings, vmstate leaf types.

Every integer the migration core writes is big-endian (migration/qemu-file.c,
qemu_put_be16/32/64). Names are kept as bytes (`Str8`) so that a round trip is
lossless even for names that are not valid UTF-8.

Imports: construct only.
References: migration/qemu-file.c (qemu_get_counted_string),
migration/vmstate-types.c (the VMStateInfo types), migration/savevm.c (timer_put).
"""

from __future__ import annotations

from construct import (
    Array,
    Bytes,
    Construct,
    Int8sb,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32sb,
    Int32ub,
    Int64sb,
    Int64ub,
    Prefixed,
    GreedyBytes,
)

#: `u8 len` + bytes: idstr, subsection names, RAM block names, capability names.
Str8 = Prefixed(Int8ub, GreedyBytes)

#: vmstate leaf types with a fixed wire size: vmdesc type name -> (construct, size, python kind).
#: "int32 le" is VMSTATE_INT32_POSITIVE_LE ("less or equal" on load), big-endian like all others;
#: "int64 equal" is what VMSTATE_UINT64_EQUAL calls itself (migration/vmstate-types.c).
INT_TYPES: dict[str, tuple[Construct, int]] = {
    "int8": (Int8sb, 1),
    "uint8": (Int8ub, 1),
    "uint8 equal": (Int8ub, 1),
    "int16": (Int16sb, 2),
    "uint16": (Int16ub, 2),
    "uint16 equal": (Int16ub, 2),
    "int32": (Int32sb, 4),
    "int32 equal": (Int32sb, 4),
    "int32 le": (Int32sb, 4),
    "uint32": (Int32ub, 4),
    "uint32 equal": (Int32ub, 4),
    "int64": (Int64sb, 8),
    "uint64": (Int64ub, 8),
    "int64 equal": (Int64ub, 8),
    # be64 expiry in ns, all ones when the timer is not pending
    "timer": (Int64ub, 8),
    # CPU_Double_U: be32 upper half then be32 lower half == one be64
    "CPU_Double_U": (Int64ub, 8),
}

#: "pci irq state": the four INTx levels of a PCI device, be32 each (hw/pci/pci.c get_pci_irq_state).
PciIrqState = Array(4, Int32ub)
PCI_IRQ_STATE_SIZE = 16

#: bool is one byte; QEMU loads any non-zero value as true, so vmig keeps the byte exactly.
BOOL_TYPE = "bool"

#: One byte '0' (VMS_NULLPTR_MARKER) for a NULL element of an array of pointers.
NULLPTR_MARKER = 0x30

TIMER_NOT_PENDING = 0xFFFF_FFFF_FFFF_FFFF


def raw(size: int) -> Construct:
    """A raw byte range of a known size (buffers, config space, MSI-X table, unknown types)."""
    return Bytes(size)
