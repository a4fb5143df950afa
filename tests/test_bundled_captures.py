"""The captures tools/captures/ made: running x86 guests, aarch64 virt (UEFI booted, stopped or
running), x86 displays, QEMU 7.2's `compress` capability.

What a test expects comes from QEMU, never from vmig: the sidecar's query-migrate
counters and QEMU trace counts at the end of the migration, the sha256 of the
guest's RAM that QEMU itself held (the source's memory-backend-file once it
stopped, and a destination's after it loaded the stream), QEMU's screendump and
the verdicts of real loads.  The qemu-marked tests ask the installed QEMU again.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import assert_same_bytes, assert_tiles
from paths import AARCH64, BUNDLES, COMPRESS, DISPLAY, LIVE, ROOT

from vfio_ramfb_mig import decode, encode_bytes, jsonform, ram
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.golden import golden_path
from vfio_ramfb_mig.model import Command, RamBody, RamMemSize, RamPages, Section
from vfio_ramfb_mig.qemu import QemuBinary, capture, find_aavmf, load, sha256_file
from vfio_ramfb_mig.source import Source

METAS = sorted(p for d in BUNDLES for p in d.glob("*.meta.json"))
IDS = [f"{p.parent.name}/{p.name.removesuffix('.meta.json')}" for p in METAS]


def meta_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def stored(meta_path: Path) -> Path:
    return meta_path.parent / meta_of(meta_path)["stored_as"]["file"]


def raw(meta_path: Path) -> bytes:
    data = stored(meta_path).read_bytes()
    return lzma.decompress(data) if meta_of(meta_path)["stored_as"]["compression"] == "xz" else data


def by_name(directory: Path, variant: str) -> Path:
    (found,) = [m for m in METAS if m.parent == directory and m.name.endswith(f"__{variant}.meta.json")]
    return found


def runs(stream) -> list[tuple[Section, RamPages]]:
    return [(s, i) for s in stream.sections if isinstance(s.body, RamBody) for i in s.body.items
            if isinstance(i, RamPages)]


def count(stream, kind: str) -> int:
    return sum(r.count for _, r in runs(stream) if r.kind == kind)


def ram_blocks(stream) -> dict[str, Any]:
    return {b.idstr: b for s in stream.sections if isinstance(s.body, RamBody) for i in s.body.items
            if isinstance(i, RamMemSize) for b in i.blocks}


# ------------------------------------------------------------------ the files
def test_the_bundles_are_there() -> None:
    names = {m.parent.name for m in METAS}
    assert names == {"live", "aarch64", "display", "compress"}
    assert {m.name for m in COMPRESS.glob("*.meta.json")} == {"qemu-7.2.22__pc-q35-7.2__booted+compress.meta.json"}
    live = {m.name.split("__")[-1].removesuffix(".meta.json") for m in LIVE.glob("*.meta.json")}
    assert live == {"live", "live+xbzrle", "live+xbzrle+ramfb", "live+mapped-ram", "live+multifd+mapped-ram",
                    "live+postcopy-ram"}
    booted = {m.name.split("__")[1] + "@" + m.name.split("__")[0] for m in AARCH64.glob("*uefi+ramfb.meta.json")}
    assert booted == {"virt-8.1@qemu-10.0.2", "virt-8.2@qemu-10.0.2", "virt-10.0@qemu-10.0.2",
                      "virt-7.2@qemu-10.0.2", "virt-7.2@qemu-7.2.22"}
    running = {m.name.removesuffix(".meta.json") for m in AARCH64.glob("*.meta.json") if meta_of(m)["mode"] == "live"}
    assert running == {"qemu-10.0.2__virt-10.0__live+xbzrle+ramfb"}


def test_fixtures_stay_small() -> None:
    total = sum(f.stat().st_size for d in BUNDLES for f in d.iterdir())
    assert total < 40 << 20, f"{total} bytes in {', '.join(d.name for d in BUNDLES)}"


@pytest.mark.parametrize("meta_path", METAS, ids=IDS)
def test_sidecar_describes_the_file(meta_path: Path) -> None:
    meta = meta_of(meta_path)
    st = meta["stored_as"]
    f = stored(meta_path)
    assert (f.stat().st_size, sha256_file(f)) == (st["size"], st["sha256"])
    data = raw(meta_path)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (meta["size"], meta["sha256"])
    assert (ROOT / meta["made_by"]["script"]).is_file()
    assert meta["qemu"]["version"] in meta["qemu"]["version_text"] and meta["packages"]
    assert meta["arch"] == ("aarch64" if meta_path.parent == AARCH64 else "x86_64")


@pytest.mark.parametrize("meta_path", METAS, ids=IDS)
def test_decodes_strictly_and_round_trips(meta_path: Path) -> None:
    data = raw(meta_path)
    with Source.open(str(stored(meta_path))) as src:
        stream = decode(src, strict=True)
        assert_tiles(stream)
        assert stream.configuration is not None and stream.configuration.machine == meta_of(meta_path)["machine"]
        assert_same_bytes(encode_bytes(stream, src), data)
        assert_same_bytes(encode_bytes(jsonform.loads(jsonform.dumps(stream)), src), data)


def test_every_capture_has_a_golden_that_holds() -> None:
    missing = [stored(m).name for m in METAS if not golden_path(stored(m)).is_file()]
    assert not missing, f"no golden for {missing}: vmig golden update fixtures/{{live,aarch64,display,compress}}"
    # the directory form finds the xz'd streams too, and no golden without its stream
    result = CliRunner().invoke(cli, ["golden", "check", *map(str, BUNDLES)])
    assert result.exit_code == 0, result.output
    assert f"{len(METAS)} streams: {len(METAS)} ok" in result.output


# ------------------------------------------------------------------ what QEMU counted
def _counters(meta: dict[str, Any]) -> dict[str, Any]:
    return meta["query_migrate"]


@pytest.mark.parametrize("meta_path", METAS, ids=IDS)
def test_page_counts_are_qemus(meta_path: Path) -> None:
    """Records of each kind, counted as QEMU counts them (query-migrate, trace events)."""
    meta = meta_of(meta_path)
    mig = meta["query_migrate"]
    stream = decode(str(stored(meta_path)))
    blocks = ram_blocks(stream)
    trace = meta.get("trace_counts") or {}
    mapped = [b for b in blocks.values() if b.mapped_ram is not None]
    if mapped:
        # a page's last save is all the file keeps: a set bit for a page with data, a clear one for a zero page
        main = blocks[meta["guest_ram"]["block"]]
        assert main.present_pages == meta["guest_ram"]["nonzero_pages"] == meta["destination_guest_ram"]["nonzero_pages"]
        assert sum(b.present_pages for b in mapped) <= mig["ram"]["normal"]  # QEMU counts every resend
        return
    if mig["status"] == "completed":
        assert count(stream, "page") == mig["ram"]["normal"]
        if "compress" not in meta["migration_capabilities_set"]:  # see _compress_counts_are_qemus
            assert count(stream, "zero") == mig["ram"]["duplicate"]
        xbz = mig.get("xbzrle-cache")
        if meta["query_migrate_capabilities"] and any(c["capability"] == "xbzrle" and c["state"]
                                                      for c in meta["query_migrate_capabilities"]):
            # QEMU counts every cache hit as an XBZRLE page; unchanged ones (skipped) and overflows
            # (sent as normal pages) are not XBZRLE records
            expected = (xbz["pages"] - trace["save_xbzrle_page_skipping"] - trace["save_xbzrle_page_overflow"])
            assert count(stream, "xbzrle") == expected == meta["xbzrle_records"]
        else:
            assert count(stream, "xbzrle") == 0
        if "compress" in meta["migration_capabilities_set"]:
            _compress_counts_are_qemus(stream, mig)
        else:
            assert count(stream, "compressed") == 0
    else:
        # postcopy-ram to a file: the source fails at the end and reports no counters
        assert mig["status"] == "failed"
        assert count(stream, "zero") >= meta["query_migrate_last_active"]["ram"]["duplicate"]
    if "ram_save_page" in trace:  # one event per page QEMU sends whole
        assert count(stream, "page") == trace["ram_save_page"]


def _compress_counts_are_qemus(stream, mig: dict[str, Any]) -> None:
    """QEMU 7.2 counts a compression thread's page when it copies the thread's buffer into the
    stream, by the kind of the thread's last page, and a flush (new block, end of a pass) counts
    every thread, also one whose buffer is empty (flush_compressed_data, update_compress_thread_
    counts): its counters run ahead of the records by a few pages, one per thread and flush, and
    `compressed-size` loses 8 bytes (a record's page header) for each of them. With those
    uncounted flushes worked out from the records, the size is exact: length word and data of
    every compressed record."""
    compressed = [r for _, r in runs(stream) if r.kind == "compressed"]
    assert len(compressed) == count(stream, "compressed") >= 100
    empty_compressed = mig["compression"]["pages"] - len(compressed)
    empty_zero = mig["ram"]["duplicate"] - count(stream, "zero")
    assert 0 <= empty_compressed and 0 <= empty_zero and (empty_compressed + empty_zero) % 2 == 0  # 2 threads
    size = sum(4 + r.data[0].length for r in compressed)
    assert mig["compression"]["compressed-size"] == size - 8 * empty_compressed
    # the first page of each block goes out whole (a compressed record always continues its block)
    assert not any(r.named for r in compressed)


@pytest.mark.parametrize("meta_path", [m for m in METAS if meta_of(m).get("guest_ram") or
                                       meta_of(m).get("destination_guest_ram")],
                         ids=lambda p: f"{p.parent.name}/{p.name.removesuffix('.meta.json')}")
def test_extracted_ram_is_qemus_memory(meta_path: Path, tmp_path: Path) -> None:
    meta = meta_of(meta_path)
    want = meta["destination_guest_ram"]
    if meta.get("guest_ram"):
        assert meta["guest_ram"]["sha256"] == want["sha256"]  # the source's and the destination's agree
    result = CliRunner().invoke(cli, ["ram", "extract", "-q", "--block", want["block"], str(stored(meta_path)),
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (entry,) = [b for b in manifest["blocks"] if b["idstr"] == want["block"]]
    extracted = tmp_path / "out" / entry["file"]
    assert extracted.stat().st_size == want["size"]
    assert sha256_file(extracted) == want["sha256"]
    # and the final page state the screen and diff read (ram.PageState), page by page
    with Source.open(str(stored(meta_path))) as src:
        state = ram.PageState(src)
        decode(src, ram_runs=False, on_ram_item=state.feed)
        state.check()
        pages = state.blocks[want["block"]]
        digest, zero = hashlib.sha256(), bytes(4096)
        nonzero = 0
        for i in range(pages.pages):
            page = state.read_page(pages, i) or zero
            digest.update(page)
            nonzero += page != zero
    assert (digest.hexdigest(), nonzero) == (want["sha256"], want["nonzero_pages"])


# ------------------------------------------------------------------ the shape of each kind
def test_running_guest_pages_are_resent() -> None:
    stream = decode(str(stored(by_name(LIVE, "live"))))
    seen: dict[tuple[str, int], int] = {}
    end_pages = 0
    for section, r in runs(stream):
        if r.kind != "page":
            continue
        for i in range(r.count):
            key = (r.block, r.offset + i * 4096)
            if section.type == "section_part":
                seen[key] = seen.get(key, 0) + 1
            elif section.type == "section_end":
                end_pages += 1
                assert key in seen, "END sends again a page PART sent"
    assert end_pages > 0 and max(seen.values()) >= 3  # at least two passes over the dirtied pages in PART


XBZRLE_CAPTURES = [m for m in METAS if "xbzrle" in meta_of(m)["migration_capabilities_set"]]


@pytest.mark.parametrize("meta_path", XBZRLE_CAPTURES,
                         ids=lambda p: f"{p.parent.name}/{p.name.removesuffix('.meta.json')}")
def test_xbzrle_records_by_the_thousand(meta_path: Path) -> None:
    """Every running guest migrated with xbzrle (x86 and aarch64) left thousands of XBZRLE records: at
    least what its script waited for (QEMU's counters, before it let the migration complete)."""
    kinds = {(m.parent.name, meta_of(m)["arch"]) for m in XBZRLE_CAPTURES}
    assert kinds >= {("live", "x86_64"), ("aarch64", "aarch64")}
    least = meta_of(meta_path)["made_by"]["recipe"]["min_xbzrle_records"]
    assert least >= 1000 and count(decode(str(stored(meta_path))), "xbzrle") >= least


def test_postcopy_stream_has_its_commands() -> None:
    stream = decode(str(stored(by_name(LIVE, "live+postcopy-ram"))))
    names = [r.name for r in stream.records if isinstance(r, Command)]
    for cmd in ("OPEN_RETURN_PATH", "PING", "POSTCOPY_ADVISE"):
        assert any(cmd in n for n in names), names


@pytest.mark.parametrize("meta_path", sorted(AARCH64.glob("*uefi+ramfb.meta.json")),
                         ids=lambda p: p.name.removesuffix(".meta.json"))
def test_booted_virt_has_qemus_screendump(meta_path: Path) -> None:
    meta = meta_of(meta_path)
    png = meta_path.parent / meta["screendump"]["file"]
    data = png.read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta["screendump"]["sha256"]
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (800, 600)
    # ramfb-dev migrates from virt-8.2 on (x-migrate: hw_compat_8_1) and never in QEMU 7.2; without it
    # the destination has a screen of its own, not the source's
    stream = decode(str(stored(meta_path)))
    has_ramfb = any(s.idstr == "ramfb-dev" for s in stream.sections)
    assert has_ramfb == (meta["machine"] in ("virt-8.2", "virt-10.0"))
    assert meta["destination_screendump"]["same_as_source"] == has_ramfb


# ------------------------------------------------------------------ real QEMU, now
def _qemu(request: pytest.FixtureRequest, meta: dict[str, Any], version: str | None = None) -> QemuBinary:
    """The QEMU that made the capture (or the build `version` names), of the capture's architecture."""
    version = version or meta["qemu"]["version"]
    series = ".".join(version.split(".")[:2])
    name = {"10.0": "qemu10", "7.2": "qemu72"}[series] + ("_arm" if meta["arch"] == "aarch64" else "")
    q = request.getfixturevalue(name)
    assert q.version == version, f"the sidecar names QEMU {version}, installed is {q.version}"
    return q


LOADS = [(m, i) for m in METAS for i in range(len(meta_of(m)["qemu_loads"]))]


@pytest.mark.qemu
@pytest.mark.parametrize("meta_path,index", LOADS,
                         ids=[f"{m.parent.name}/{m.name.removesuffix('.meta.json')}#{i}" for m, i in LOADS])
def test_recorded_verdict_holds(meta_path: Path, index: int, request: pytest.FixtureRequest,
                                tmp_path: Path) -> None:
    """Each load the script recorded gives the same verdict now; an accepted one rebuilds the same RAM."""
    meta = meta_of(meta_path)
    entry = meta["qemu_loads"][index]
    q = _qemu(request, meta, entry.get("qemu"))  # the capture's own QEMU unless the entry names another
    stream = stored(meta_path)
    if meta["stored_as"]["compression"]:
        stream = tmp_path / "stream.bin"
        stream.write_bytes(raw(meta_path))
    firmware = find_aavmf() if entry.get("firmware") == "aavmf" else None
    if entry.get("firmware") == "aavmf":
        request.getfixturevalue("aavmf")
    hash_ram = entry["accepted"] and "qemu" not in entry and meta.get("destination_guest_ram") is not None
    v = load(q, stream, meta["machine"], devices=entry.get("devices", meta["devices"]),
             capabilities=entry.get("capabilities", []), memory=meta["memory"], firmware=firmware,
             hash_ram=hash_ram, timeout=120)
    assert v.accepted == entry["accepted"], v.errors
    if not entry["accepted"]:
        assert v.errors[:1] == entry["errors"][:1]
    if hash_ram:
        assert v.guest_ram is not None and v.guest_ram["sha256"] == meta["destination_guest_ram"]["sha256"]


PAUSED = [m for m in METAS if meta_of(m)["mode"] == "paused"]


@pytest.mark.qemu
@pytest.mark.parametrize("meta_path", PAUSED, ids=lambda p: f"{p.parent.name}/{p.name.removesuffix('.meta.json')}")
def test_paused_capture_is_reproducible(meta_path: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    meta = meta_of(meta_path)
    """Paused, the same QEMU writes the same bytes.  It cuts a RAM pass into sections by the clock
    (50 ms), so a busy host can add a section: three tries (the script kept a file made twice alike)."""
    options = [o for o in meta["machine_options"].split(",") if o]
    sizes = []
    for _ in range(3):
        res = capture(_qemu(request, meta), tmp_path / "again.bin", meta["machine"], devices=meta["devices"],
                      memory=meta["memory"], cpu=meta["cpu"], machine_options=options)
        if (res.size, res.sha256) == (meta["size"], meta["sha256"]):
            return
        sizes.append(res.size)
    pytest.fail(f"{meta_path.name}: QEMU wrote {sizes} bytes, never the bundled {meta['size']} (sha256 differs)")
