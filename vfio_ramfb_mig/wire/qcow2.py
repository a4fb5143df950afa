"""qcow2 image metadata: the header, the snapshot table and the cluster-mapping entries.

    image     := Header (HeaderV3Extra if version >= 3) header-extensions ... clusters
    snapshots := SnapshotEntry[nb_snapshots] at snapshots_offset (each padded to 8 bytes)
    mapping   := L1 table (be64 entries) -> L2 tables (one cluster each) -> data clusters

All integers are big-endian. A snapshot's VM state (what `savevm` writes: a whole migration
stream) is stored like disk content in that snapshot's own mapping, at the first guest offset
past the disk that a whole L2 table describes: disk size rounded up to one L2 table's span.

Imports: construct.
References: QEMU docs/interop/qcow2.txt ("Header", "Snapshots", "Cluster mapping",
"Extended L2 Entries"), block/qcow2.h (QCowHeader, QCowSnapshotHeader, QCowSnapshotExtraData,
qcow2_vm_state_offset), block/qcow2-snapshot.c (qcow2_read_snapshots).
"""

from __future__ import annotations

from construct import Bytes, Int16ub, Int32ub, Int64ub, Struct, this

MAGIC = b"QFI\xfb"
V2_HEADER_SIZE = 72
V3_HEADER_SIZE = 104

Header = Struct(
    "magic" / Bytes(4),
    "version" / Int32ub,
    "backing_file_offset" / Int64ub,
    "backing_file_size" / Int32ub,
    "cluster_bits" / Int32ub,
    "size" / Int64ub,
    "crypt_method" / Int32ub,
    "l1_size" / Int32ub,
    "l1_table_offset" / Int64ub,
    "refcount_table_offset" / Int64ub,
    "refcount_table_clusters" / Int32ub,
    "nb_snapshots" / Int32ub,
    "snapshots_offset" / Int64ub,
)

#: version 3 and later: the fields from offset 72 up to header_length
HeaderV3Extra = Struct(
    "incompatible_features" / Int64ub,
    "compatible_features" / Int64ub,
    "autoclear_features" / Int64ub,
    "refcount_order" / Int32ub,
    "header_length" / Int32ub,
)

#: incompatible feature bits (an unknown one set means the image must not be read)
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2

#: the header's compression_type byte (offset 104, present when header_length > 104)
COMPRESSION_TYPES = {0: "deflate", 1: "zstd"}

SnapshotEntry = Struct(
    "l1_table_offset" / Int64ub,
    "l1_size" / Int32ub,
    "id_str_size" / Int16ub,
    "name_size" / Int16ub,
    "date_sec" / Int32ub,
    "date_nsec" / Int32ub,
    "vm_clock_nsec" / Int64ub,
    "vm_state_size" / Int32ub,
    "extra_data_size" / Int32ub,
    "extra_data" / Bytes(this.extra_data_size),
    "id_str" / Bytes(this.id_str_size),
    "name" / Bytes(this.name_size),
)
SNAPSHOT_FIXED_SIZE = 40

#: the extra data QEMU knows, each present when extra_data_size reaches its end
SnapshotExtra = Struct(
    "vm_state_size_large" / Int64ub,  # replaces vm_state_size when present
    "disk_size" / Int64ub,
    "icount" / Int64ub,  # all ones: icount was off
)
EXTRA_FIELDS = (("vm_state_size_large", 8), ("disk_size", 16), ("icount", 24))

#: L1 and L2 entries: bits 9-55 are a host offset; L2 bit 62 marks a compressed cluster and bit 0
#: (version 3, standard clusters) one that reads as zeros
OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
L2_COMPRESSED = 1 << 62
L2_ZERO = 1 << 0
