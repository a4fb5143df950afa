"""RAM comparison input: which blocks to compare, and each block's result in words.

The RAM itself is ram/'s: each side's final page state is ram.state's (the last record for
a page wins; an XBZRLE record applies to the page's previous content) and ram.compare
compares two of them block by block. Here: blocks on one side only, length and page size
changes, the ram_pages change of a block, and progress in bytes of guest RAM.

Imports: model, ram.state, ram.compare, diff.comparison, diff.words.
"""

from __future__ import annotations

from ..model import RamBlock, RamBody, Section
from ..ram.compare import compare_block
from ..ram.state import PageState
from .comparison import Comparison
from .words import counted, differ_word, ram_counts


def _block_list(state: PageState) -> dict[str, RamBlock]:
    """The blocks of a stream's block list (and those its records name without one)."""
    return {name: pages.block for name, pages in state.blocks.items()}


def ram_plan(diff: Comparison, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> int:
    """Bytes of guest RAM `compare_ram` will compare for this pair of sections (for progress): what it
    decides, without adding changes."""
    if diff.ignore(name) or not (any(isinstance(s.body, RamBody) for _, s in ra)
                             or any(isinstance(s.body, RamBody) for _, s in rb)):
        return 0
    sa, sb = diff.ram_a, diff.ram_b
    assert sa is not None and sb is not None
    if sa.page_size != sb.page_size and sa.page_size and sb.page_size:
        return 0
    blocks_a, blocks_b = _block_list(sa), _block_list(sb)
    total = 0
    for block in dict.fromkeys(list(blocks_a) + list(blocks_b)):
        ia, ib = blocks_a.get(block), blocks_b.get(block)
        if diff.ignore(f"{name}/{block}") or (ia is not None and ib is None and blocks_b) \
                or (ib is not None and ia is None and blocks_a):
            continue
        total += max(sa.blocks[block].pages if ia else 0, sb.blocks[block].pages if ib else 0) * \
            (sa.page_size or sb.page_size)
    return total


def report(diff: Comparison, done: int) -> None:
    done = min(done, diff.ram_total)
    if diff.progress is not None and done > diff.ram_reported:
        diff.ram_reported = done
        diff.progress(done, diff.ram_total)


def compare_ram(diff: Comparison, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> None:
    sa, sb = diff.ram_a, diff.ram_b
    assert sa is not None and sb is not None
    page_size, page_size_b = sa.page_size or sb.page_size, sb.page_size or sa.page_size
    if page_size != page_size_b:
        diff.add("ram_block", name, f"{name}/page_size", f"page size {page_size} → {page_size_b}",
                 old=page_size, new=page_size_b)
        return
    blocks_a, blocks_b = _block_list(sa), _block_list(sb)
    can_read = diff.ra.source is not None and diff.rb.source is not None
    if not can_read:
        diff.notes.append("RAM page contents not compared (no source to read them from); counts only")
    for block in dict.fromkeys(list(blocks_a) + list(blocks_b)):
        path = f"{name}/{block}"
        if diff.skip(path):
            continue
        ia, ib = blocks_a.get(block), blocks_b.get(block)
        if ia is not None and ib is None and blocks_b:
            diff.add("ram_block", name, path, f"RAM block of {ia.used_length:#x} bytes only in A", old=ia.used_length)
            continue
        if ib is not None and ia is None and blocks_a:
            diff.add("ram_block", name, path, f"RAM block of {ib.used_length:#x} bytes only in B", new=ib.used_length)
            continue
        if ia is not None and ib is not None and ia.used_length != ib.used_length:
            diff.add("ram_block", name, f"{path}/length", f"length {ia.used_length:#x} → "
                     f"{ib.used_length:#x}", old=ia.used_length, new=ib.used_length)
        ram_block(diff, name, path, block, page_size, can_read)


def ram_block(diff: Comparison, name: str, path: str, block: str, page_size: int, can_read: bool) -> None:
    done = diff.ram_done
    result = compare_block(block, diff.ram_a, diff.ram_b, page_size, can_read,
                           lambda page: report(diff, done + page * page_size))
    diff.ram_done = done + result.pages * page_size
    differing, only_a, only_b, first = result.differing, result.only_a, result.only_b, result.first
    ka, kb = result.records_a, result.records_b
    counts = f"records {ram_counts(ka)} → {ram_counts(kb)}" if ka != kb else f"records {ram_counts(ka)}"
    parts = []
    if differing:
        assert first is not None
        parts.append(f"{counted(differing, 'page')} {differ_word(differing)}, first at block "
                     f"offset {first[0]:#x}")
    if only_a:
        parts.append(f"{counted(only_a, 'page')} sent only in A")
    if only_b:
        parts.append(f"{counted(only_b, 'page')} sent only in B")
    # the same final contents written with other records is not a difference of the state
    if parts or (ka != kb and not can_read):
        if not parts:
            parts.append("contents not compared")
        diff.add("ram_pages", name, path, f"{'; '.join(parts)} ({counts})",
                 old=dict(ka), new=dict(kb), count=differing,
                 old_offset=first[1] if first else result.first_record_a,
                 new_offset=first[2] if first else result.first_record_b)
