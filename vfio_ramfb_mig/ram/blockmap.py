"""A RAM block as a row of cells, for a picture of what the stream holds (`vmig report`).

Each page of a block is in one of four states, from the final page state:

    n  its content came in one record (PAGE, or XBZRLE applied)
    z  a ZERO record (or a clear mapped-ram bit), sent once
    r  more than one record wrote it (sent again in a later round)
    m  no record wrote it: missing from the stream (cut short, or a block it skips)

A block of more pages than `cells` is drawn with several pages per cell; a cell
shows the most telling state among its pages (m, then r, then n, then z), so a
single missing or re-sent page is never hidden by its neighbours.

Imports: ram.state.
"""

from __future__ import annotations

from dataclasses import dataclass

from .state import _KIND_MASK, NOT_SENT, ZERO, BlockPages, PageState

#: the letters of a map, in the order a cell prefers them (a cell shows its highest)
STATES = {"z": "zero, sent once", "n": "content, sent once", "r": "sent more than once",
          "m": "missing from the stream"}
_RANK = {letter: rank for rank, letter in enumerate(STATES)}
_LETTERS = list(STATES)


@dataclass(frozen=True)
class BlockMap:
    block: str
    pages: int
    pages_per_cell: int
    #: one letter of STATES per cell
    cells: str
    #: pages in each state (every page counts once: a re-sent page is "r" whatever it holds now)
    counts: dict[str, int]


def block_map(pages: BlockPages, cells: int = 1024) -> BlockMap:
    """The block's pages in at most `cells` cells."""
    n = pages.pages
    per = max(1, -(-n // max(cells, 1)))
    count = -(-n // per) if n else 0
    ranks = bytearray(count)
    counts = dict.fromkeys(STATES, 0)

    def paint(first: int, end: int, rank: int) -> None:
        for cell in range(first // per, (end - 1) // per + 1):
            if ranks[cell] < rank:
                ranks[cell] = rank

    for first, end, value, _ in pages.extents():
        if value == NOT_SENT:
            letter = "m"
        else:
            letter = "z" if value & _KIND_MASK == ZERO else "n"
        counts[letter] += end - first
        paint(first, end, _RANK[letter])
    resent = pages.resent
    if resent is not None:
        i = resent.find(1)
        while i >= 0:
            j = resent.find(0, i)
            j = n if j < 0 else j
            # a re-sent page is counted as re-sent, not as what it holds now
            for page in range(i, j):
                value = pages.value(page)
                counts["z" if value & _KIND_MASK == ZERO else "n"] -= 1
            counts["r"] += j - i
            paint(i, j, _RANK["r"])
            i = resent.find(1, j)
    return BlockMap(pages.idstr, n, per, "".join(_LETTERS[r] for r in ranks), counts)


def block_maps(state: PageState, cells: int = 1024) -> list[BlockMap]:
    """A map of every block the stream's block list names, in its order."""
    return [block_map(pages, cells) for pages in state.blocks.values()]
