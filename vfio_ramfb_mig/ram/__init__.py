"""Guest RAM, once: the page-record walk, the final page state, and what is built on them.

Modules:

* `walk`    the one walk over RAM page records (the decoder calls it for RAM sections);
            `records()` expands a run of records one by one; `run_in_source()` says whether
            encode may copy a run whole.
* `limits`  how much RAM a stream may make vmig allocate or write (--max-ram, $VMIG_MAX_RAM).
* `state`   the final page state: for each block and page, the record that last wrote it
            and what it holds (PAGE at an input offset, ZERO with its fill byte, XBZRLE
            applied, mapped-ram from the bitmap, or not sent); the records QEMU refuses
            (a page past its block's end: IllegalOffset, IllegalOffsetScan for `vmig check`).
* `listing` `vmig decode --pages`: one line per page record.
* `extract` `vmig ram extract`: each block to a sparse file.
* `compare` two final page states compared block by block (`vmig diff`).
* `summary` per-block page counts and sha256 of the final pages (golden files), in the one
            walk when pages come once and in order.
* `blockmap` a block as a row of cells (sent once, zero, sent more than once, missing) for
            `vmig report`; `BlockPages.resent` says which pages more than one record wrote.
* `guest`   guest-physical memory maps (x86 q35/i440fx split below/above 4 GiB, aarch64
            virt at 1 GiB) and reads through them.

Guest-physical reads (what `vmig screenshot` builds on)::

    from vfio_ramfb_mig import decode, ram
    from vfio_ramfb_mig.source import Source

    with Source.open("dump.bin") as src:
        stream = decode(src)                        # ram_runs=False works too (walks again)
        with ram.open_guest_memory(stream, src) as mem:
            data, missing = mem.read(0xC00000, 1024 * 768 * 4)

`read(addr, length)` gives `length` bytes and a list of (address, length) ranges it could
not give (not RAM on this machine, or pages the stream never sent: a cut stream); those
bytes are zero in `data`. `mem.map` is the machine's memory map (regions of blocks).
`open_guest_memory` raises InputError for a machine or RAM block vmig cannot place,
CorruptError for a page record QEMU would refuse, LimitError for RAM blocks larger than
the stream can hold and than the limit (`max_ram`, $VMIG_MAX_RAM).

The final page state alone::

    state = ram.PageState(src)
    stream = decode(src, ram_runs=False, on_ram_item=state.feed)
    state.check()
    pages = state.blocks["pc.ram"]                  # BlockPages: .page(i), .extents(), .records
    data = state.read_page(pages, 0)                # bytes, or None when never sent

Layering: ram sits above codec (it decodes), but `ram.walk` and `ram.limits` sit beside
it: the decoder imports the walk, encode the walk and the limits, and those two import only
wire, model, errors, source and text (tests/test_layers.py).
This package's names are therefore imported lazily (PEP 562), so that importing the
walk does not import the decoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY: dict[str, tuple[str, str]] = {
    "BlockMap": (".blockmap", "BlockMap"),
    "block_map": (".blockmap", "block_map"),
    "block_maps": (".blockmap", "block_maps"),
    "GuestMemory": (".guest", "GuestMemory"),
    "MemoryMap": (".guest", "MemoryMap"),
    "memory_map": (".guest", "memory_map"),
    "open_guest_memory": (".guest", "open_guest_memory"),
    "BlockPages": (".state", "BlockPages"),
    "PageState": (".state", "PageState"),
    "RamWalk": (".walk", "RamWalk"),
    "records": (".walk", "records"),
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .blockmap import BlockMap, block_map, block_maps
    from .guest import GuestMemory, MemoryMap, memory_map, open_guest_memory
    from .state import BlockPages, PageState
    from .walk import RamWalk, records


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(__import__(__name__ + module_name, fromlist=("__name__",)), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
