"""The container grammar of a QEMU migration (savevm) stream.

    stream    := FileHeader CONFIGURATION? record* EOF VMDESC?
    record    := SECTION_START  LongHeader  payload Footer?
               | SECTION_PART   ShortHeader payload Footer?
               | SECTION_END    ShortHeader payload Footer?
               | SECTION_FULL   LongHeader  payload Footer?
               | COMMAND        Command
    payload   := vmstate fields, subsections* | RAM records | VFIO framing | old-style bytes
    subsection:= SUBSECTION SubsectionHeader fields subsection*
    COMMAND   := 0x08 be16 cmd, be16 len, len bytes of data (COMMAND_DATA says what they hold)
    VMDESC    := 0x06 be32 len, len bytes of JSON (only right after EOF)

There is no length anywhere around a payload: a payload ends where its
description says it ends. Footers are on unless `send-section-footer=off`.

Decode parses and encode builds every one of these schemas; nothing else in vmig
writes or reads these bytes by hand.

Imports: construct, wire.primitives.
References: migration/savevm.c (save_section_header, save_section_footer,
qemu_savevm_command_send, qemu_loadvm_state_main), migration/savevm.h.
"""

from __future__ import annotations

from enum import IntEnum

from construct import (
    Check,
    Const,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Optional,
    Prefixed,
    Struct,
)

from .primitives import Str8

QEMU_VM_FILE_MAGIC = 0x5145564D  # "QEVM"
QEMU_VM_FILE_VERSION = 3
QEMU_VM_FILE_VERSION_COMPAT = 2  # obsolete; refused by QEMU >= 2.x loaders


class RecordType(IntEnum):
    """The type byte that starts every top-level record (migration/savevm.h)."""

    QEMU_VM_EOF = 0x00
    QEMU_VM_SECTION_START = 0x01
    QEMU_VM_SECTION_PART = 0x02
    QEMU_VM_SECTION_END = 0x03
    QEMU_VM_SECTION_FULL = 0x04
    QEMU_VM_SUBSECTION = 0x05
    QEMU_VM_VMDESCRIPTION = 0x06
    QEMU_VM_CONFIGURATION = 0x07
    QEMU_VM_COMMAND = 0x08
    QEMU_VM_SECTION_FOOTER = 0x7E


SECTION_TYPES = {
    RecordType.QEMU_VM_SECTION_START: "section_start",
    RecordType.QEMU_VM_SECTION_PART: "section_part",
    RecordType.QEMU_VM_SECTION_END: "section_end",
    RecordType.QEMU_VM_SECTION_FULL: "section_full",
}
#: Record types that may legally start a top-level record (used to validate a footer candidate).
TOP_LEVEL_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x04, 0x08})

FileHeader = Struct(
    "magic" / Int32ub,
    "version" / Int32ub,
)

#: QEMU_VM_CONFIGURATION: the vmstate_configuration payload follows (vmstate/builtin.py CONFIGURATION)
ConfigurationMarker = Const(RecordType.QEMU_VM_CONFIGURATION.value, Int8ub)

#: QEMU_VM_EOF: the last record (only a vmdesc may follow)
EofMarker = Const(RecordType.QEMU_VM_EOF.value, Int8ub)

#: START / FULL: 14 + len(idstr) bytes including the type byte.
LongHeader = Struct(
    "type" / Int8ub,
    "section_id" / Int32ub,
    "idstr" / Str8,
    "instance_id" / Int32ub,
    "version_id" / Int32ub,
)

#: PART / END: the idstr was given once by this section_id's START.
ShortHeader = Struct(
    "type" / Int8ub,
    "section_id" / Int32ub,
)

Footer = Struct(
    "marker" / Const(RecordType.QEMU_VM_SECTION_FOOTER.value, Int8ub),
    "section_id" / Int32ub,
)

SubsectionHeader = Struct(
    "marker" / Const(RecordType.QEMU_VM_SUBSECTION.value, Int8ub),
    "name" / Str8,
    "version_id" / Int32ub,
)

#: QEMU_VM_COMMAND: be16 cmd, be16 len, len bytes (PACKAGED's embedded records follow outside len).
Command = Struct(
    "type" / Const(RecordType.QEMU_VM_COMMAND.value, Int8ub),
    "cmd" / Int16ub,
    "data" / Prefixed(Int16ub, GreedyBytes),
)

#: QEMU_VM_VMDESCRIPTION, right after EOF: be32 length, then that many bytes of JSON.
VmdescHeader = Struct(
    "type" / Const(RecordType.QEMU_VM_VMDESCRIPTION.value, Int8ub),
    "length" / Int32ub,
)


class Cmd(IntEnum):
    """QEMU_VM_COMMAND numbers (migration/savevm.c enum qemu_vm_cmd)."""

    MIG_CMD_INVALID = 0
    MIG_CMD_OPEN_RETURN_PATH = 1
    MIG_CMD_PING = 2
    MIG_CMD_POSTCOPY_ADVISE = 3
    MIG_CMD_POSTCOPY_LISTEN = 4
    MIG_CMD_POSTCOPY_RUN = 5
    MIG_CMD_POSTCOPY_RAM_DISCARD = 6
    MIG_CMD_PACKAGED = 7
    MIG_CMD_ENABLE_COLO = 8
    MIG_CMD_POSTCOPY_RESUME = 9
    MIG_CMD_RECV_BITMAP = 10
    MIG_CMD_SWITCHOVER_START = 11


#: What a command's data holds, as the loader reads it (loadvm_process_command and the handler of
#: each command); the commands not listed carry nothing. The loader wants no byte left over.
COMMAND_DATA = {
    # qemu_savevm_send_ping: a be32 value the destination echoes on the return path
    Cmd.MIG_CMD_PING: Struct("value" / Int32ub),
    # qemu_savevm_send_postcopy_advise: with postcopy-ram the OR of every RAM block's page size and
    # the target page size; without it nothing (loadvm_postcopy_handle_advise takes 0 or 16 bytes)
    Cmd.MIG_CMD_POSTCOPY_ADVISE: Struct(
        "page_sizes" / Optional(Struct("pagesize_summary" / Int64ub, "target_page_size" / Int64ub)),
    ),
    # qemu_savevm_send_postcopy_ram_discard: version 0, the block's name and a NUL, then ranges
    # (loadvm_postcopy_ram_handle_discard wants a name and at least one range)
    Cmd.MIG_CMD_POSTCOPY_RAM_DISCARD: Struct(
        "version" / Const(0, Int8ub),
        "ramid" / Str8,
        Check(lambda this: len(this.ramid) > 0),
        "nul" / Const(0, Int8ub),
        "ranges" / GreedyRange(Struct("start" / Int64ub, "length" / Int64ub)),
        Check(lambda this: len(this.ranges) > 0),
    ),
    # qemu_savevm_send_packaged: the length of the records that follow the command
    Cmd.MIG_CMD_PACKAGED: Struct("length" / Int32ub),
    # qemu_savevm_send_recv_bitmap: the name of the block whose received bitmap is asked for
    Cmd.MIG_CMD_RECV_BITMAP: Struct("ramid" / Str8, Check(lambda this: len(this.ramid) > 0)),
}


#: Commands whose data has one length the loader checks before anything else (mig_cmd_args
#: .len != -1): the ones that carry nothing, PING and PACKAGED.
CMD_LENGTHS = {cmd: COMMAND_DATA[cmd].sizeof() if cmd in COMMAND_DATA else 0 for cmd in (
    Cmd.MIG_CMD_OPEN_RETURN_PATH, Cmd.MIG_CMD_PING, Cmd.MIG_CMD_POSTCOPY_LISTEN, Cmd.MIG_CMD_POSTCOPY_RUN,
    Cmd.MIG_CMD_PACKAGED, Cmd.MIG_CMD_ENABLE_COLO, Cmd.MIG_CMD_POSTCOPY_RESUME, Cmd.MIG_CMD_SWITCHOVER_START)}


def command_name(cmd: int) -> str:
    try:
        return Cmd(cmd).name.removeprefix("MIG_CMD_")
    except ValueError:
        return f"UNKNOWN_{cmd}"
