"""ram.blockmap: each RAM block as cells (content sent once, zero, sent again, missing)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from paths import CAPTURES
from vfio_ramfb_mig.codec.decode import decode
from vfio_ramfb_mig.codec.encode import encode_bytes
from vfio_ramfb_mig.model import RamBody, RamMarker, RamPages, Section
from vfio_ramfb_mig.ram.blockmap import block_map, block_maps
from vfio_ramfb_mig.ram.state import PageState
from vfio_ramfb_mig.source import Source

CAPTURED = sorted(CAPTURES.glob("*.bin"))


def maps_of(source: Source, cells: int = 1024):
    with PageState(Source(source.buf, source.name)) as state:
        decode(Source(source.buf, source.name), ram_runs=False, on_ram_item=state.feed)
        return block_maps(state, cells), {name: pages.resent_pages() for name, pages in state.blocks.items()}


@pytest.mark.parametrize("capture", CAPTURED, ids=lambda p: p.stem)
def test_counts_agree_with_qemus_query_migrate(capture: Path) -> None:
    """A stream that sends each page once: content pages are QEMU's 'normal' count, zero pages its
    'duplicate' count (query-migrate at the source, in the sidecar), nothing missing."""
    meta = json.loads(capture.with_name(capture.stem + ".meta.json").read_text())
    ram = meta["query_migrate"].get("return", meta["query_migrate"])["ram"]
    with Source.open(str(capture)) as src:
        maps, resent = maps_of(src)
    assert not any(resent.values())
    assert sum(m.counts["n"] for m in maps) == ram["normal"]
    assert sum(m.counts["z"] for m in maps) == ram["duplicate"]
    assert not any(m.counts["m"] or m.counts["r"] for m in maps)
    for m in maps:
        assert sum(m.counts.values()) == m.pages and len(m.cells) == -(-m.pages // m.pages_per_cell)


def test_pages_sent_again_and_pages_never_sent() -> None:
    """The booted capture with one run of pc.ram records sent again at the end (as a later round
    would), and one block's records left out (as a stream cut short would)."""
    capture = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
    src = Source.open(str(capture))
    stream = decode(src)
    runs = [i for r in stream.records if isinstance(r, Section) and isinstance(r.body, RamBody) for i in r.body.items
            if isinstance(i, RamPages)]
    again = next(r for r in runs if r.block == "pc.ram" and r.kind == "page" and r.count >= 3)
    records = []
    for record in stream.records:
        if isinstance(record, Section) and isinstance(record.body, RamBody):
            items = [i for i in record.body.items if not (isinstance(i, RamPages) and i.block == "pc.rom")]
            if record.type == "section_end":
                eos = next(k for k, i in enumerate(items) if isinstance(i, RamMarker) and i.kind == "eos")
                items.insert(eos, replace(again, named=True))
            record = replace(record, body=replace(record.body, items=tuple(items)))
        records.append(record)
    edited = Source.from_bytes(encode_bytes(replace(stream, records=tuple(records)), src))
    src.close()
    maps, resent = maps_of(edited, cells=4096)
    by_block = {m.block: m for m in maps}
    ram = by_block["pc.ram"]
    first = again.offset // 4096
    assert resent["pc.ram"] == again.count and ram.counts["r"] == again.count
    assert ram.cells[first:first + again.count] == "r" * again.count
    assert ram.cells[first - 1] != "r" and ram.cells[first + again.count] != "r"
    rom = by_block["pc.rom"]
    assert rom.cells == "m" * rom.pages and rom.counts == {"z": 0, "n": 0, "r": 0, "m": rom.pages}
    # fewer cells than pages: a cell shows the most telling of its pages
    coarse = {m.block: m for m in maps_of(edited, cells=64)[0]}["pc.ram"]
    assert coarse.pages_per_cell == 64 and coarse.cells[first // 64] == "r"
    assert coarse.counts == ram.counts


def test_a_block_no_record_touched() -> None:
    from vfio_ramfb_mig.model import RamBlock
    from vfio_ramfb_mig.ram.state import BlockPages

    pages = BlockPages(RamBlock("empty", 10 * 4096), 4096)
    assert block_map(pages, 4) == block_map(pages, 4)
    m = block_map(pages, 4)
    assert (m.pages_per_cell, m.cells, m.counts["m"]) == (3, "mmmm", 10)
