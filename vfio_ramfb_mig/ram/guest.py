"""Guest-physical memory: where each RAM block sits in the guest's address space, and reads from it.

A device register such as the ramfb config's `addr` is a guest-physical address;
the stream carries RAM blocks by name and offset. The machine maps the main RAM
block (`pc.ram`, `mach-virt.ram`, or the id of a `memory-backend` object) into
the guest-physical space by its own rules, which depend on the machine type and
the RAM size, never on anything else the stream says:

x86 (hw/i386/pc_piix.c, pc_q35.c, pc.c pc_memory_init): the block is split in two.
  Its first `below_4g` bytes are at guest-physical 0, the rest at 4 GiB.
  * q35: below_4g is 2 GiB when the RAM is 2.75 GiB (0xb0000000) or more, else 2.75
    GiB; a smaller max-ram-below-4g (machine option, default 4 GiB) lowers it.
  * i440fx ("pc-i440fx-*", "pc-*", "pc"): below_4g is max-ram-below-4g, 3.5 GiB
    (0xe0000000) by default; when the RAM reaches it and the machine type aligns to a
    gigabyte (all but isapc and pc-i440fx-1.7 and older), at most 3 GiB.
  * either way, RAM smaller than below_4g is all below 4 GiB.
  * not modelled: AMD guests with RAM reaching the 1 TiB HyperTransport hole
    (the part above 4 GiB then starts at 1 TiB), SGX EPC and CXL windows.
aarch64 virt (hw/arm/virt.c): the block is at 1 GiB (0x40000000), whole.

The legacy VGA window and option ROM area below 1 MiB read as the RAM block's
bytes there (what the guest sees when the chipset routes them to RAM).

`GuestMemory.read(addr, length)` returns the bytes and the guest-physical ranges
it could not give: not RAM on this machine (holes, MMIO), or pages the stream
never sent (a cut stream). Those bytes read as zero in the returned buffer, and
are listed, never silently invented.

Imports: errors, model, source, codec (decode), ram.state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..text import printable
from ..errors import InputError
from ..model import Configuration, MigrationStream, RamBody, RamMemSize, Section
from ..source import Source
from .state import PageState

GiB = 1 << 30
#: guest-physical start of the part of x86 RAM above the 32-bit hole
X86_ABOVE_4G = 4 * GiB
#: hw/arm/virt.c: memmap[VIRT_MEM].base
VIRT_RAM_BASE = 1 * GiB
#: the main RAM block's name when no memory-backend is given (MachineClass.default_ram_id)
DEFAULT_RAM_IDS = {"x86": "pc.ram", "aarch64-virt": "mach-virt.ram"}
_PIIX_DEFAULT_BELOW_4G = 0xE0000000
_PIIX_GIGABYTE_BELOW_4G = 0xC0000000
_Q35_SMALL_LOWMEM, _Q35_LARGE_LOWMEM, _Q35_SPLIT_AT = 0xB0000000, 0x80000000, 0xB0000000
_VERSION = re.compile(r"-(\d+)\.(\d+)$")


@dataclass(frozen=True, slots=True)
class Region:
    """`length` bytes of RAM block `block` from `block_offset` appear at guest-physical `start`."""

    start: int
    length: int
    block: str
    block_offset: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class MemoryMap:
    """How a machine lays its RAM out in guest-physical space (see the module docstring)."""

    machine: str
    family: str  # "q35", "i440fx", "isapc", "aarch64-virt"
    regions: tuple[Region, ...]

    def locate(self, addr: int) -> tuple[Region, int] | None:
        """The region holding guest-physical `addr`, and the offset in its block."""
        for region in self.regions:
            if region.start <= addr < region.end:
                return region, region.block_offset + addr - region.start
        return None


def machine_family(machine: str, block_names: Sequence[str] = (), target_page_bits: bool = False) -> str | None:
    """The memory-map family of a machine type name as the configuration record gives it
    ("pc-q35-8.2", "pc-i440fx-7.2", "virt-10.0"...). Without a name it known, the block names
    decide: mach-virt.ram (or a target-page-bits subsection, which only targets with a variable
    page size send) is aarch64 virt, pc.ram is x86 of an unknown chipset ("x86": the same map as
    both chipsets while the RAM is below 2.75 GiB). None: no memory map vmig knows."""
    if machine.startswith("pc-q35-") or machine == "q35":
        return "q35"
    if machine.startswith(("pc-i440fx-", "pc-")) or machine == "pc":
        return "i440fx"
    if machine == "isapc":
        return "isapc"
    if machine.startswith("virt-") or machine == "virt":
        return "aarch64-virt"
    if "mach-virt.ram" in block_names or target_page_bits:
        return "aarch64-virt"
    if "pc.ram" in block_names:
        return "x86"
    return None


def _gigabyte_aligned(machine: str) -> bool:
    """pc_piix.c: every i440fx machine type aligns the split to a gigabyte but those of QEMU 1.7 and
    older (pc-i440fx-1.7 ... and the pc-1.x / pc-0.x types), and isapc."""
    if machine == "isapc":
        return False
    m = _VERSION.search(machine)
    return m is None or (int(m.group(1)), int(m.group(2))) > (1, 7)


def x86_below_4g(family: str, machine: str, ram_size: int, max_ram_below_4g: int | None = None) -> int:
    """Bytes of x86 RAM below 4 GiB (x86ms->below_4g_mem_size) for a machine and RAM size."""
    if family in ("q35", "x86"):
        lowmem = _Q35_LARGE_LOWMEM if ram_size >= _Q35_SPLIT_AT else _Q35_SMALL_LOWMEM
        limit = max_ram_below_4g or X86_ABOVE_4G
        lowmem = min(lowmem, limit)
    else:
        limit = max_ram_below_4g or _PIIX_DEFAULT_BELOW_4G
        lowmem = limit
        if ram_size >= limit and _gigabyte_aligned(machine):
            lowmem = min(lowmem, _PIIX_GIGABYTE_BELOW_4G)
    return min(ram_size, lowmem)


def memory_map(machine: str, blocks: dict[str, int], *, target_page_bits: bool = False, ram_block: str | None = None,
               max_ram_below_4g: int | None = None) -> MemoryMap:
    """The memory map of a machine whose RAM blocks (name -> used_length) are `blocks`.

    `ram_block` names the main RAM block when it is neither the machine's default name nor
    the one largest block without a '/' in its name (a memory-backend's id); InputError when
    vmig cannot tell the machine or its RAM block."""
    family = machine_family(machine, list(blocks), target_page_bits)
    if family is None:
        raise InputError(f"vmig has no guest-physical memory map for machine '{printable(machine)}'",
                         hint="x86 (pc-q35-*, pc-i440fx-*, isapc) and aarch64 virt are known")
    name = ram_block or _main_block(family, blocks)
    if name not in blocks:
        raise InputError(f"the stream has no RAM block '{printable(name)}'",
                         hint="its blocks: " + ", ".join(f"'{printable(b)}'" for b in blocks))
    size = blocks[name]
    if family == "aarch64-virt":
        return MemoryMap(machine, family, (Region(VIRT_RAM_BASE, size, name, 0),))
    if family == "x86" and size >= _Q35_SPLIT_AT and max_ram_below_4g is None:
        raise InputError(f"machine '{printable(machine)}' is not a known x86 type, and with "
                         f"{size:#x} bytes of RAM q35 and i440fx split it differently",
                         hint="a stream with a configuration record names its machine type")
    below = x86_below_4g(family, machine, size, max_ram_below_4g)
    regions = [Region(0, below, name, 0)]
    if size > below:
        regions.append(Region(X86_ABOVE_4G, size - below, name, below))
    return MemoryMap(machine, family, tuple(regions))


def _main_block(family: str, blocks: dict[str, int]) -> str:
    default = DEFAULT_RAM_IDS["aarch64-virt" if family == "aarch64-virt" else "x86"]
    if default in blocks:
        return default
    # -machine memory-backend=ID: the block is named by the backend's id; device and firmware
    # blocks have a '/' in theirs (0000:00:02.0/vga.vram, /rom@etc/acpi/tables) or are known
    candidates = [b for b in blocks if "/" not in b and b not in ("pc.bios", "pc.rom", "isa-bios")]
    if candidates:
        return max(candidates, key=lambda b: blocks[b])
    raise InputError("cannot tell which RAM block is the guest's main RAM",
                     hint="its blocks: " + ", ".join(f"'{printable(b)}'" for b in blocks))


# ---------------------------------------------------------------- reading


class GuestMemory:
    """Guest-physical reads from a stream's final RAM (see the module docstring).

    Made by `open_guest_memory`; close it (or use `with`) to let its page tables go."""

    def __init__(self, layout: MemoryMap, state: PageState) -> None:
        self.map, self.state = layout, state
        self.page_size = state.page_size

    def read(self, addr: int, length: int) -> tuple[bytes, list[tuple[int, int]]]:
        """`length` bytes at guest-physical `addr`, and the (address, length) ranges among them
        that the stream does not give: outside the machine's RAM, or pages it never sent. Those
        bytes are zero in the result."""
        if addr < 0 or length < 0:
            raise ValueError(f"bad guest-physical range {addr:#x}+{length}")
        out = bytearray(length)
        missing: list[tuple[int, int]] = []
        ps = self.page_size
        pos, end = addr, addr + length
        while pos < end:
            found = self.map.locate(pos)
            if found is None:
                nxt = min((r.start for r in self.map.regions if r.start > pos), default=end)
                _add(missing, pos, min(nxt, end) - pos)
                pos = min(nxt, end)
                continue
            region, offset = found
            pages = self.state.blocks.get(region.block)
            stop = min(end, region.end)
            while pos < stop:
                index, within = divmod(offset, ps)
                n = min(ps - within, stop - pos)
                data = self.state.read_page(pages, index) if pages is not None and index < pages.pages else None
                if data is None:
                    _add(missing, pos, n)
                else:
                    out[pos - addr:pos - addr + n] = data[within:within + n]
                pos += n
                offset += n
        return bytes(out), missing

    def close(self) -> None:
        self.state.close()

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _add(ranges: list[tuple[int, int]], start: int, length: int) -> None:
    if ranges and ranges[-1][0] + ranges[-1][1] == start:
        ranges[-1] = (ranges[-1][0], ranges[-1][1] + length)
    else:
        ranges.append((start, length))


def _target_page_bits(config: Configuration | None) -> bool:
    return config is not None and any(s.name == "configuration/target-page-bits" for s in config.subsections)


def _block_list(stream: MigrationStream) -> dict[str, int]:
    for record in stream.records:
        if isinstance(record, Section) and isinstance(record.body, RamBody):
            for item in record.body.items:
                if isinstance(item, RamMemSize):
                    return {b.idstr: b.used_length for b in item.blocks}
    return {}


def open_guest_memory(stream: MigrationStream, source: Source, *, ram_block: str | None = None,
                      max_ram_below_4g: int | None = None, max_ram: int | None = None,
                      state: PageState | None = None) -> GuestMemory:
    """Guest-physical memory of a decoded stream, read from `source` (the input it was decoded from).

    A stream decoded with its page runs (decode's default) is not walked again; one decoded
    with ram_runs=False is (its pages are read from `source`), unless `state` is the PageState
    that decode fed as it walked (decode(on_ram_item=state.feed)): then that is used, and the
    GuestMemory closes it. A stream cut short gives what it has: the pages it never sent are
    reported missing by `read`. Raises InputError when the machine or its RAM block is unknown,
    CorruptError on a page QEMU would refuse."""
    from ..codec.decode import decode  # ram sits above codec; the import is here for the walk-again case

    blocks = _block_list(stream)
    if not blocks:
        raise InputError("the stream has no RAM block list (no ram section_start with MEM_SIZE)")
    config = stream.configuration
    layout = memory_map(config.machine if config else "", blocks, target_page_bits=_target_page_bits(config),
                        ram_block=ram_block, max_ram_below_4g=max_ram_below_4g)
    runs_kept = all(r.body.runs_kept for r in stream.records if isinstance(r, Section) and isinstance(r.body, RamBody))
    if state is not None:
        pass  # fed by the walk that decoded the stream
    elif runs_kept and stream.error is None:  # a stream cut short lost its last RAM section's runs
        state = PageState.of(stream, source, max_ram)
    else:
        state = PageState(source.sibling(), max_ram)
        decode(source.sibling(), ram_runs=False, partial=True, on_ram_item=state.feed)
        state.finish()
    state.check()
    return GuestMemory(layout, state)


def describe(layout: MemoryMap) -> list[dict[str, Any]]:
    """The regions of a memory map, for JSON."""
    return [{"start": r.start, "length": r.length, "block": r.block, "block_offset": r.block_offset}
            for r in layout.regions]
