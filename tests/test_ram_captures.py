"""Final guest RAM of real captures equals QEMU's own, by the sha256 real QEMU gave in each sidecar.

The captures engineer's bundled streams carry, in their sidecars, the sha256 (whole and per MiB)
of the main RAM block as the source held it after the migration, and as a destination QEMU held
it after loading the stream (`guest_ram`, `destination_guest_ram`). Streams of running guests
(pages re-sent in PART and END, 7968 XBZRLE records, mapped-ram, multifd + mapped-ram, postcopy's
precopy part) and UEFI-booted aarch64 virt guests. vmig's final page state, its guest-physical
reads through the machine's memory map, `ram extract` and the golden's page counts must all
agree with them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from paths import FIXTURES

from vfio_ramfb_mig import decode, ram
from vfio_ramfb_mig.ram.extract import MANIFEST, extract_ram
from vfio_ramfb_mig.ram.state import PageState
from vfio_ramfb_mig.source import Source

MiB = 1 << 20


def _with_ram_hashes() -> list[Path]:
    found = []
    for meta in sorted(FIXTURES.glob("*/*.meta.json")):
        facts = json.loads(meta.read_text())
        if facts.get("destination_guest_ram") or facts.get("guest_ram"):
            found.append(meta)
    return found


CAPTURES = _with_ram_hashes()


def _stream_of(meta: Path) -> Path:
    stem = meta.name[:-len(".meta.json")]
    for suffix in (".bin", ".bin.xz"):
        if (meta.parent / (stem + suffix)).exists():
            return meta.parent / (stem + suffix)
    raise AssertionError(f"no stream for {meta}")


def _qemu_ram(meta: Path) -> dict:
    facts = json.loads(meta.read_text())
    dest, source = facts.get("destination_guest_ram"), facts.get("guest_ram")
    if dest and source:
        assert dest["sha256"] == source["sha256"]  # the capture's own check: QEMU loaded what it saved
    return dest or source


def test_the_kinds_of_stream_are_there() -> None:
    names = " ".join(m.name for m in CAPTURES)
    for kind in ("live.", "live+xbzrle", "live+mapped-ram", "live+multifd+mapped-ram", "live+postcopy-ram",
                 "virt-10.0__uefi"):
        assert kind in names, kind


@pytest.mark.parametrize("meta", CAPTURES, ids=lambda m: m.name[:-len(".meta.json")])
def test_final_ram_is_qemus(meta: Path, tmp_path: Path) -> None:
    want = _qemu_ram(meta)
    block, size, ps = want["block"], want["size"], want.get("page_size", 4096)
    with Source.open(str(_stream_of(meta))) as src, PageState(src) as state:
        stream = decode(src, ram_runs=False, on_ram_item=state.feed)
        state.finish()
        state.check()
        pages = state.blocks[block]
        assert pages.used_length == size
        whole, per_mib, nonzero = hashlib.sha256(), [], 0
        for start in range(0, size, MiB):
            piece = hashlib.sha256()
            for i in range(start // ps, (start + MiB) // ps):
                data = state.read_page(pages, i)
                assert data is not None, f"page {i:#x} never sent"
                nonzero += data.count(0) != ps
                piece.update(data)
                whole.update(data)
            per_mib.append(piece.hexdigest())
        assert per_mib == want["sha256_per_mib"]
        assert whole.hexdigest() == want["sha256"]
        if "nonzero_pages" in want:
            assert nonzero == want["nonzero_pages"]
        # the same bytes through the machine's memory map (RAM at 0 on x86, at 1 GiB on aarch64 virt)
        with ram.open_guest_memory(stream, src) as mem:  # a walk of its own
            (region,) = [r for r in mem.map.regions if r.block == block]
            data, missing = mem.read(region.start, region.length)
            assert missing == [] and hashlib.sha256(data).hexdigest() == want["sha256"]
    # and ram extract's file of the block
    out = tmp_path / "ram"
    result = extract_ram(str(_stream_of(meta)), str(out), blocks=[block])
    (entry,) = json.loads((out / MANIFEST).read_text())["blocks"]
    assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == want["sha256"]
    assert result.blocks[0].used_length == size


@pytest.mark.parametrize("meta", CAPTURES, ids=lambda m: m.name[:-len(".meta.json")])
def test_json_form_rebuilds_the_stream(meta: Path) -> None:
    """decode --json, then encode --from-json with the stream as source: QEMU's bytes again, for
    re-sent pages, XBZRLE deltas (kept in the JSON itself), mapped-ram regions and postcopy."""
    from vfio_ramfb_mig import encode_bytes, jsonform

    with Source.open(str(_stream_of(meta))) as src:
        data = bytes(src.buf)
        again = encode_bytes(jsonform.loads(jsonform.dumps(decode(src))), src)
    assert again == data, f"first difference at {next(i for i, (a, b) in enumerate(zip(again, data)) if a != b)}" \
        if len(again) == len(data) else f"{len(again)} bytes, expected {len(data)}"
