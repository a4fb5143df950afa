"""VFIO device-state framing: 64-bit markers around config and data chunks.

The VFIO entry ("<qdev path>/vfio", instance 0, version 1) is registered with
SaveVMHandlers, not a vmstate, so its payload is framed by markers:

    START : DEV_SETUP_STATE END_OF_STATE
    PART  : [DEV_DATA_STATE be64 n, n bytes] (END_OF_STATE | DEV_INIT_DATA_SENT)
    END   : (DEV_DATA_STATE be64 n, n bytes)* END_OF_STATE
    FULL  : DEV_CONFIG_STATE <VFIOPCIDevice vmstate> END_OF_STATE

Imports: construct.
References: hw/vfio/migration.c (vfio_save_setup, vfio_save_iterate,
vfio_save_complete_precopy, vfio_save_state, vfio_load_state),
include/hw/vfio/vfio-common.h (VFIO_MIG_FLAG_*).
"""

from __future__ import annotations

from enum import IntEnum

from construct import Const, Int64ub, Struct


class VfioMarker(IntEnum):
    END_OF_STATE = 0xFFFFFFFFEF100001
    DEV_CONFIG_STATE = 0xFFFFFFFFEF100002
    DEV_SETUP_STATE = 0xFFFFFFFFEF100003
    DEV_DATA_STATE = 0xFFFFFFFFEF100004
    DEV_INIT_DATA_SENT = 0xFFFFFFFFEF100005


#: Every framing element starts with one of the markers above.
Marker = Int64ub

#: DEV_DATA_STATE and the length of the device data that follows it (located, never parsed).
DataChunkHeader = Struct(
    "marker" / Const(VfioMarker.DEV_DATA_STATE.value, Int64ub),
    "length" / Int64ub,
)


def is_vfio_idstr(idstr: str) -> bool:
    """The VFIO entry is "<qdev path>/vfio", or bare "vfio" for a device without a path."""
    return idstr == "vfio" or idstr.endswith("/vfio")
