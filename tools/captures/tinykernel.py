"""A 55-byte multiboot kernel for x86 guests that only need to run and touch memory.

QEMU's -kernel (and libvirt's <kernel>) loads it through the multiboot "a.out kludge"
(flag bit 16: the header gives the load and entry addresses), so no bootloader or disk is
needed. Its code, entered in 32-bit protected mode, loops forever over the 512 KiB at
0x200000-0x27ffff adding one to the first dword of every 4 KiB page: the guest's RAM keeps
changing, and the stream carries a few hundred pages that are neither zero nor ROM.
(real-world-captures.md, "Live streams", describes the same idea over 6 MiB.)
"""

from __future__ import annotations

import struct
import sys

MULTIBOOT_MAGIC = 0x1BADB002
AOUT_KLUDGE = 1 << 16
LOAD_ADDR = 0x100000
HEADER_SIZE = 32


def kernel(first: int = 0x200000, end: int = 0x280000) -> bytes:
    flags = AOUT_KLUDGE
    header = struct.pack("<8I", MULTIBOOT_MAGIC, flags, -(MULTIBOOT_MAGIC + flags) & 0xFFFFFFFF,
                         LOAD_ADDR, LOAD_ADDR, 0, 0, LOAD_ADDR + HEADER_SIZE)
    code = b"\xbf" + struct.pack("<I", first)          # start: mov edi, first
    loop = len(code)
    code += b"\xff\x07"                                 # loop:  inc dword [edi]
    code += b"\x81\xc7" + struct.pack("<I", 0x1000)     #        add edi, 4096
    code += b"\x81\xff" + struct.pack("<I", end)        #        cmp edi, end
    code += bytes([0x72, (loop - (len(code) + 2)) & 0xFF])  # jb loop
    code += bytes([0xEB, (0 - (len(code) + 2)) & 0xFF])     # jmp start
    return header + code


if __name__ == "__main__":
    sys.stdout.buffer.write(kernel())
