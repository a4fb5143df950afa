"""The guest that dirties memory while it is migrated: a 55-byte multiboot kernel.

QEMU's x86 machines boot it with ``-kernel dirtier.img`` (SeaBIOS runs QEMU's
multiboot option ROM, which loads the image and jumps to it in 32-bit protected
mode, paging off).  The kernel then loops forever::

    outer:  mov  edi, FIRST          ; first page of the range
    inner:  inc  dword [edi]         ; change the page's first 4 bytes
            add  edi, 4096           ; next 4 KiB page
            cmp  edi, END
            jb   inner
            jmp  outer

so every page of [FIRST, END) changes again and again, a few bytes at a time:
a migration of the running guest must send those pages more than once (and
XBZRLE finds tiny deltas).  Nothing else in guest RAM changes after boot.

The bytes are written here by hand (no assembler): the multiboot header uses the
"a.out kludge" (flags bit 16), so the image is a flat binary loaded at LOAD and
entered at LOAD + 32, right after the header.  The Multiboot 0.6.96
specification (GNU GRUB) gives the header layout; the opcodes are the standard
IA-32 encodings.

    python tools/captures/dirtier.py -o fixtures/live/dirtier.img
    python tools/captures/dirtier.py --first 0xc00000 --end 0xd00000 -o fixtures/live/dirtier-fb.img
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

MULTIBOOT_MAGIC = 0x1BADB002
FLAG_ADDRESSES_IN_HEADER = 1 << 16  # the a.out kludge: load addresses come from the header
LOAD = 0x100000                     # 1 MiB, where multiboot images conventionally load
FIRST = 0x200000                    # the dirtied range: 2 MiB ...
END = 0x300000                      # ... up to 3 MiB (256 pages): the guest needs >= 3 MiB of RAM
PAGE = 4096


def multiboot_header(image_size: int) -> bytes:
    flags = FLAG_ADDRESSES_IN_HEADER
    checksum = (-(MULTIBOOT_MAGIC + flags)) & 0xFFFFFFFF
    header_addr = LOAD          # the header is the first thing in the image
    load_addr = LOAD
    load_end_addr = LOAD + image_size
    bss_end_addr = 0            # no bss
    entry_addr = LOAD + 32      # code follows the 32-byte header
    return struct.pack("<8I", MULTIBOOT_MAGIC, flags, checksum, header_addr, load_addr,
                       load_end_addr, bss_end_addr, entry_addr)


def loop_code(first: int = FIRST, end: int = END) -> bytes:
    mov_edi = b"\xbf" + struct.pack("<I", first)          # mov edi, imm32
    inc_dword_edi = b"\xff\x07"                             # inc dword [edi]   (FF /0, modrm 00 000 111)
    add_edi_page = b"\x81\xc7" + struct.pack("<I", PAGE)   # add edi, imm32    (81 /0, modrm 11 000 111)
    cmp_edi_end = b"\x81\xff" + struct.pack("<I", end)     # cmp edi, imm32    (81 /7, modrm 11 111 111)
    inner = inc_dword_edi + add_edi_page + cmp_edi_end
    jb_inner = b"\x72" + struct.pack("<b", -(len(inner) + 2))                 # jb rel8 back to inc
    jmp_outer = b"\xeb" + struct.pack("<b", -(len(mov_edi) + len(inner) + 2 + 2))  # jmp rel8 back to mov
    return mov_edi + inner + jb_inner + jmp_outer


def kernel(first: int = FIRST, end: int = END) -> bytes:
    """The image that dirties [first, end) (both page-aligned, above the image itself)."""
    if first % PAGE or end % PAGE or not LOAD + PAGE <= first < end:
        raise ValueError(f"dirtied range {first:#x}..{end:#x}: page-aligned, above {LOAD + PAGE:#x}")
    code = loop_code(first, end)
    return multiboot_header(32 + len(code)) + code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", required=True, help="where to write the kernel image")
    p.add_argument("--first", type=lambda v: int(v, 0), default=FIRST, help=f"first dirtied byte (default {FIRST:#x})")
    p.add_argument("--end", type=lambda v: int(v, 0), default=END, help=f"end of the dirtied range (default {END:#x})")
    args = p.parse_args(argv)
    data = kernel(args.first, args.end)
    Path(args.output).write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
