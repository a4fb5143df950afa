"""libvirt's QEMU save image header: what `virsh save` and `virsh managedsave` put before the stream.

    image   := SaveHeader data[data_len] payload
    data    := domain XML, NUL, (cookie XML, NUL if cookie_offset), zero padding
    payload := the QEMU migration stream, raw or through the compressor `compressed` names

The header's integers are in the byte order of the host that wrote it; libvirt reads an image
whose version looks too large as the other byte order. A save still being written carries the
magic "LibvirtQemudPart"; libvirt writes "LibvirtQemudSave" over it once the stream is complete.
libvirt leaves 64 KiB of zeros after the XML (and cookie) so the XML can be edited in place
(`virsh save-image-edit`) and grow.

Imports: construct.
References: libvirt src/qemu/qemu_saveimage.h (virQEMUSaveHeader, QEMU_SAVE_MAGIC/PARTIAL,
QEMU_SAVE_VERSION, virQEMUSaveFormat), src/qemu/qemu_saveimage.c (virQEMUSaveDataWrite,
qemuSaveImageOpen, qemuSaveImageGetCompressionProgram).
"""

from __future__ import annotations

from construct import Array, Bytes, Int32ub, Int32ul, Struct

MAGIC = b"LibvirtQemudSave"
PARTIAL_MAGIC = b"LibvirtQemudPart"
#: the newest header version libvirt writes and reads; version 1 images are never compressed
SAVE_VERSION = 2
#: room libvirt leaves after the XML and cookie (virQEMUSaveDataWrite)
XML_ROOM = 64 * 1024

#: the `compressed` field (virQEMUSaveFormat): numbers are on-disk ABI. 9.0 writes 0-4; zstd (5)
#: came in later releases, and "sparse" (6), a mapped-ram stream written by QEMU itself.
COMPRESSION: dict[int, str] = {0: "raw", 1: "gzip", 2: "bzip2", 3: "xz", 4: "lzop", 5: "zstd", 6: "sparse"}
COMPRESSION_NUMBER = {name: number for number, name in COMPRESSION.items()}
#: the arguments libvirt runs each compressor with when it saves (qemuSaveImageGetCompressionProgram)
COMPRESSOR_ARGS: dict[str, tuple[str, ...]] = {"gzip": ("-c",), "bzip2": ("-c",), "xz": ("-c", "-3"),
                                               "lzop": ("-c",), "zstd": ("-c",)}


def _header(uint32: object) -> Struct:
    return Struct(
        "magic" / Bytes(16),
        "version" / uint32,
        "data_len" / uint32,
        "was_running" / uint32,
        "compressed" / uint32,
        "cookie_offset" / uint32,
        "unused" / Array(14, uint32),
    )


SaveHeaderLE = _header(Int32ul)
SaveHeaderBE = _header(Int32ub)
HEADER_SIZE = SaveHeaderLE.sizeof()  # 92
