"""vmig diff: real pairs of captures, RAM by final page content, ignore patterns, CLI and rendering.

The pairs are real QEMU streams (fixtures/captures). What the tests assert is read
off the bytes independently where it can be: the offsets a change reports must
point at the bytes that changed.
"""

from __future__ import annotations

import json
import random
import struct
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import (FILE_HEADER, PAGE, configuration, full_section, mapped_ram_pages, ram_stream, vfio_stream,
                     vfio_with_data)
from paths import CAPTURES
from rich.console import Console

from vfio_ramfb_mig import Source, decode
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.diff import Change, StreamDiff, diff_json, diff_streams
from vfio_ramfb_mig.errors import CorruptError
from vfio_ramfb_mig.ram import compare as ram_compare
from vfio_ramfb_mig.wire.xbzrle import xbzrle_apply
from vfio_ramfb_mig.render.diffview import diff_brief, diff_tree
from vfio_ramfb_mig.render.theme import THEME

Q72_PLAIN_72 = CAPTURES / "qemu-7.2.22__pc-q35-7.2__plain.bin"
Q72_PLAIN_10 = CAPTURES / "qemu-10.0.2__pc-q35-7.2__plain.bin"
Q81_RAMFB = CAPTURES / "qemu-10.0.2__pc-q35-8.1__ramfb.bin"
Q82_RAMFB = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"
Q82_BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
Q10_RAMFB = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb.bin"
Q10_NOVMDESC = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+novmdesc.bin"
Q10_NOFOOTER = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+nofooter.bin"
Q10_CAPS = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+cap-x-ignore-shared.bin"


def run_diff(a: Path | bytes, b: Path | bytes, ignore: tuple[str, ...] = (), sources: bool = True) -> StreamDiff:
    sa = Source.from_bytes(a, "A") if isinstance(a, bytes) else Source.open(str(a))
    sb = Source.from_bytes(b, "B") if isinstance(b, bytes) else Source.open(str(b))
    with sa, sb:
        return diff_streams(decode(sa), decode(sb), sa if sources else None, sb if sources else None, ignore=ignore)


def by_path(result: StreamDiff) -> dict[str, Change]:
    return {c.path: c for c in result.changes}


def render(renderable) -> str:
    console = Console(record=True, width=120, color_system=None, theme=THEME)
    console.print(renderable)
    return console.export_text()


# ---------------------------------------------------------------- real pairs


def test_same_machine_from_qemu_72_and_100_matches_every_section() -> None:
    """pc-q35-7.2 from QEMU 7.2 and 10.0: other section ids (ram is 2 vs 1), same sections."""
    a, b = decode(str(Q72_PLAIN_72)), decode(str(Q72_PLAIN_10))
    ids_a = {s.idstr: s.section_id for s in a.sections}
    ids_b = {s.idstr: s.section_id for s in b.sections}
    assert ids_a["ram"] != ids_b["ram"]  # so matching by id would pair the wrong sections
    result = run_diff(Q72_PLAIN_72, Q72_PLAIN_10)
    kinds = {c.kind for c in result.changes}
    assert not kinds & {"section_added", "section_removed", "version", "machine"}
    paths = by_path(result)
    # what changed, not how each vmdesc spelled it: a renamed field and a retyped one carry the same
    # bytes (equivalent, not differences); the re-split runstate buffer differs in one byte, named
    assert paths["hpet/num_timers_save"].kind == "equivalent"
    assert paths["hpet/num_timers_save"].text == "num_timers ≡ num_timers_save: renamed, the same 1 byte"
    assert paths["0000:00:1f.2/ich9_ahci/ahci/ports"].kind == "equivalent"
    assert paths["0000:00:1f.2/ich9_ahci/ahci/ports"].text.startswith("type int32 equal ≡ uint32 equal: the same 4 bytes")
    runstate = paths["globalstate/runstate"]
    assert runstate.kind == "bytes" and runstate.count == 1
    assert runstate.text == ("runstate → runstate, has_vm_was_suspended, vm_was_suspended, unused (re-split, "
                             "100 bytes): 1 byte differs, first at runstate byte 32 → has_vm_was_suspended (00 → 01)")
    data_a, data_b = Q72_PLAIN_72.read_bytes(), Q72_PLAIN_10.read_bytes()
    assert (data_a[runstate.old_offset], data_b[runstate.new_offset]) == (0, 1)
    assert not any(p.startswith(("hpet/num_timers", "globalstate/has_vm")) and p not in
                   ("hpet/num_timers_save",) for p in paths)
    assert paths["ram/pc.bios"].kind == "ram_pages" and paths["ram/pc.bios"].count == 47
    # the AHCI port array: 7.2 names its last element dev[5], 10.0 "dev" (vmdesc quirk), not a difference
    assert not any("ahci/dev" in p for p in paths)
    assert set(result.groups()) == {"ram", "hpet", "0000:00:1f.2/ich9_ahci", "globalstate"}


def test_ramfb_dev_only_in_82() -> None:
    result = run_diff(Q81_RAMFB, Q82_RAMFB)
    assert [(c.kind, c.path) for c in result.changes] == [
        ("machine", "configuration/machine"), ("section_added", "ramfb-dev")]
    machine, added = result.changes
    assert machine.text == "pc-q35-8.1 → pc-q35-8.2"
    assert added.text == "only in B: FULL section (ramfb-dev), version 1"
    data = Q82_RAMFB.read_bytes()
    assert data[added.new_offset:added.new_offset + 15] == b"\x04\x00\x00\x00\x25\x09ramfb-dev"
    assert added.old_offset is None


def test_paused_vs_booted_ramfb_in_words() -> None:
    result = run_diff(Q82_RAMFB, Q82_BOOTED)
    paths = by_path(result)
    cfg = "ramfb-dev/state/cfg"
    assert paths[f"{cfg}/width"].text == "0 → 1024"
    assert paths[f"{cfg}/height"].text == "0 → 768"
    assert paths[f"{cfg}/stride"].text == "0 → 4096"
    assert paths[f"{cfg}/addr"].text == "0x0 → 0xc00000"
    assert paths[f"{cfg}/fourcc"].text == "0 → XR24 (0x34325258)"
    assert f"{cfg}/flags" not in paths
    booted = Q82_BOOTED.read_bytes()
    paused = Q82_RAMFB.read_bytes()
    width = paths[f"{cfg}/width"]
    assert struct.unpack(">I", booted[width.new_offset:width.new_offset + 4]) == (1024,)
    assert struct.unpack(">I", paused[width.old_offset:width.old_offset + 4]) == (0,)
    fourcc = paths[f"{cfg}/fourcc"]
    assert booted[fourcc.new_offset:fourcc.new_offset + 4] == b"42RX"
    # RAM: the guest ran, so pages differ; counted per block
    ram = paths["ram/pc.ram"]
    assert ram.kind == "ram_pages" and ram.count and ram.count > 100
    assert "pages differ" in ram.text


def test_identical_streams_have_no_changes() -> None:
    result = run_diff(Q10_RAMFB, Q10_RAMFB)
    assert result.same and result.changes == () and result.notes == ()


def test_stream_level_facts() -> None:
    assert [(c.path, c.text) for c in run_diff(Q10_RAMFB, Q10_NOVMDESC).changes] == [
        ("stream/vmdesc", "vmdesc trailer present → absent")]
    assert [(c.path, c.text) for c in run_diff(Q10_RAMFB, Q10_NOFOOTER).changes] == [
        ("stream/footers", "section footers on → off")]
    caps = by_path(run_diff(Q10_RAMFB, Q10_CAPS))
    assert caps["configuration/capabilities/x-ignore-shared"].text == "off → on"
    # x-ignore-shared: the block list carries addresses, and pages of shared RAM are not sent (none here)
    assert not any(c.kind.startswith("section") for c in caps.values())


# ---------------------------------------------------------------- ignore patterns


def test_ignore_ram_and_timer() -> None:
    full = run_diff(Q82_RAMFB, Q82_BOOTED)
    ignored = run_diff(Q82_RAMFB, Q82_BOOTED, ignore=("ram", "timer", "*/cfg/addr"))
    assert {c.path for c in ignored.changes} == {c.path for c in full.changes
                                                  if not c.path.startswith(("ram/", "timer/"))
                                                  and not c.path.endswith("cfg/addr")}
    assert ignored.ignored == 3  # ram and timer as whole sections, and one field


# ---------------------------------------------------------------- RAM by final content (synthetic)



def page(byte: int) -> bytes:
    return bytes([byte]) * PAGE


def test_ram_last_record_wins() -> None:
    twice = ram_stream([("page", 0, page(1)), ("page", 0, page(2)), ("zero", 1, b"")])
    once = ram_stream([("page", 0, page(2)), ("zero", 1, b"")])
    other = ram_stream([("page", 0, page(3)), ("zero", 1, b"")])
    assert run_diff(twice, once).same  # the same final contents, sent with other records
    result = run_diff(twice, other)
    (change,) = result.changes
    assert change.path == "ram/pc.ram" and change.count == 1
    assert change.text.startswith("1 page differs, first at block offset 0x0")
    # the offsets point at the payloads that win: the second record in A, the only one in B
    second = 8 + 15 + 14 + 3 + 8 + 7 + 8 + 8 + 5  # header, config, START(+payload), footer
    second += 5 + 8 + 7 + PAGE + 8  # PART header, first record, word of the second
    assert change.old_offset == second and twice[second:second + PAGE] == page(2)
    assert other[change.new_offset:change.new_offset + PAGE] == page(3)


def test_ram_zero_page_equals_page_of_zeros_and_not_sent_is_counted() -> None:
    a = ram_stream([("zero", 0, b""), ("zero", 1, b"")])
    b = ram_stream([("page", 0, page(0)), ("zero", 1, b""), ("zero", 2, b"")])
    (change,) = run_diff(a, b).changes
    assert change.count == 0 and "1 page sent only in B" in change.text


@pytest.mark.parametrize("delta", [bytes([0, 0]), bytes([0x80 | 0x7F, 0x7F, 1, 0xAA]), bytes([10, 5, 0xAA])],
                         ids=["no-new-run", "past-the-page", "past-the-delta"])
def test_ram_bad_xbzrle_delta_is_a_corrupt_stream(delta: bytes) -> None:
    """QEMU fails the load of a delta that reaches past the page or its own end; so does diff."""
    a = ram_stream([("page", 0, page(7)), ("xbzrle", 0, delta)])
    b = ram_stream([("page", 0, page(7))])
    with pytest.raises(CorruptError, match="bad XBZRLE delta"):
        run_diff(a, b)


def test_ram_xbzrle_applies_to_the_previous_content() -> None:
    base = page(7)
    delta = bytes([10, 2, 0xAA, 0xBB])  # keep 10 bytes, then 2 literal bytes
    expected = base[:10] + b"\xaa\xbb" + base[12:]
    assert xbzrle_apply(base, delta) == expected
    a = ram_stream([("page", 0, base), ("xbzrle", 0, delta)])
    b = ram_stream([("page", 0, expected)])
    assert run_diff(a, b).same
    c = ram_stream([("page", 0, base)])
    assert run_diff(a, c).changes[0].count == 1


def test_without_sources_ram_is_counted_not_compared() -> None:
    result = run_diff(Q82_RAMFB, Q82_BOOTED, sources=False)
    assert any("RAM page contents not compared" in n for n in result.notes)
    assert by_path(result)["ram/pc.ram"].text.endswith(")")  # counts are still there
    assert by_path(result)["ramfb-dev/state/cfg/width"].text == "0 → 1024"  # inline values still compared



# ---------------------------------------------------------------- RAM at memory speed (synthetic, checked page by page)


def final_pages(records: list[tuple[str, int, bytes]]) -> dict[int, bytes]:
    """What a destination holds after loading `records` (ram_stream's form), worked out the plain way."""
    pages: dict[int, bytes] = {}
    for kind, index, data in records:
        if kind == "page":
            pages[index] = data
        elif kind == "zero":
            pages[index] = bytes(PAGE)
        else:
            pages[index] = xbzrle_apply(pages.get(index, bytes(PAGE)), data)
    return pages


def random_records(rng: random.Random, pages: int, contents: list[bytes]) -> list[tuple[str, int, bytes]]:
    """One pass over the pages (zero records, pages of zeros, pages, some not sent), then maybe
    a few pages sent again (pages, zero records, XBZRLE deltas)."""
    records: list[tuple[str, int, bytes]] = []
    for i in range(pages):
        if rng.random() < 0.05:
            continue
        data = contents[i]
        if data == bytes(PAGE) and rng.random() < 0.8:
            records.append(("zero", i, b""))
        else:
            records.append(("page", i, data))
    for _ in range(rng.choice([0, 0, 1, 3])):
        i = rng.randrange(pages)
        what = rng.random()
        if what < 0.3:
            records.append(("xbzrle", i, bytes([rng.randrange(100), 2]) + rng.randbytes(2)))
        elif what < 0.5:
            records.append(("zero", i, b""))
        else:
            records.append(("page", i, rng.choice(contents)))
    return records


@pytest.mark.parametrize("chunk", [ram_compare.RAM_CHUNK, 5000, 1])
@pytest.mark.parametrize("seed", range(10))
def test_ram_compared_in_slices_finds_every_page(seed: int, chunk: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole slices of both files are compared where both sides have pages; what differs is still
    exactly the pages whose final contents differ: pages straddling slices (chunk 5000), a slice
    per byte (chunk 1), pages sent again, XBZRLE, zero pages against pages of zeros, not sent."""
    monkeypatch.setattr(ram_compare, "RAM_CHUNK", chunk)
    monkeypatch.setattr(ram_compare, "DROP_AFTER", 64 << 10)  # let mapped pages go often
    rng = random.Random(seed)
    n = 40
    pool = [bytes(PAGE), page(1), page(2)] + [rng.randbytes(PAGE) for _ in range(4)]
    contents_a = [rng.choice(pool) for _ in range(n)]
    contents_b = [c if rng.random() < 0.8 else rng.choice(pool) for c in contents_a]
    rec_a, rec_b = random_records(rng, n, contents_a), random_records(rng, n, contents_b)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"  # through the files' mmaps
    a.write_bytes(ram_stream(rec_a, pages=n))
    b.write_bytes(ram_stream(rec_b, pages=n))
    fa, fb = final_pages(rec_a), final_pages(rec_b)
    differing = sorted(i for i in fa.keys() & fb.keys() if fa[i] != fb[i])
    only_a, only_b = len(fa.keys() - fb.keys()), len(fb.keys() - fa.keys())
    change = by_path(run_diff(a, b)).get("ram/pc.ram")
    if not (differing or only_a or only_b):
        assert change is None
        return
    assert change is not None and change.count == len(differing)
    parts = []
    if differing:
        parts.append(f"{len(differing)} page{'s' if len(differing) > 1 else ''} "
                     f"{'differ' if len(differing) > 1 else 'differs'}, first at block offset {differing[0] * PAGE:#x}")
    if only_a:
        parts.append(f"{only_a} page{'s' if only_a > 1 else ''} sent only in A")
    if only_b:
        parts.append(f"{only_b} page{'s' if only_b > 1 else ''} sent only in B")
    assert change.text.startswith("; ".join(parts) + " (records")
    if differing:  # the offsets point at the contents that win (None for a zero page or XBZRLE)
        first = differing[0]
        for offset, data, final in ((change.old_offset, a.read_bytes(), fa), (change.new_offset, b.read_bytes(), fb)):
            if offset is not None:
                assert data[offset:offset + PAGE] == final[first]


def test_ram_slices_see_past_equal_record_words() -> None:
    """Pages in runs split by zero pages on both sides are one range of both files; a page that
    differs inside it, and a normal page of zeros against a zero page, are still found one by one."""
    contents = [page(i % 5) if i % 7 else bytes(PAGE) for i in range(64)]
    recs = [("zero", i, b"") if c == bytes(PAGE) else ("page", i, c) for i, c in enumerate(contents)]
    same = ram_stream(recs, pages=64)
    assert run_diff(same, ram_stream(recs, pages=64)).same
    zeros_sent_as_pages = [("page", i, bytes(PAGE)) if kind == "zero" else (kind, i, d) for kind, i, d in recs]
    assert run_diff(same, ram_stream(zeros_sent_as_pages, pages=64)).same  # zero page == page of zeros
    changed = list(recs)
    changed[40] = ("page", 40, page(9))
    changed[14] = ("page", 14, page(3))  # page 14 is a zero page in A
    (change,) = run_diff(same, ram_stream(changed, pages=64)).changes
    assert change.count == 2 and change.text.startswith("2 pages differ, first at block offset 0xe000")
    assert change.old_offset is None  # A's page 14 is a zero record
    assert ram_stream(changed, pages=64)[change.new_offset:change.new_offset + PAGE] == page(3)


def test_ram_mapped_ram_against_records() -> None:
    """mapped-ram pages lie a page apart, record pages a page + 8 apart: compared page by page;
    mapped-ram against mapped-ram in slices. A clear bit is a zero page."""
    contents = [page(i % 3 + 1) if i % 4 else None for i in range(20)]
    mapped = mapped_ram_pages(contents)
    records = ram_stream([("zero", i, b"") if c is None else ("page", i, c) for i, c in enumerate(contents)],
                         pages=20)
    assert "ram/pc.ram" not in by_path(run_diff(mapped, records))
    assert run_diff(mapped, mapped_ram_pages(contents)).same
    changed = list(contents)
    changed[5], changed[8] = page(7), bytes(PAGE)  # a zero page sent as a page of zeros: no difference
    for other in (mapped_ram_pages(changed),
                  ram_stream([("zero", i, b"") if c is None else ("page", i, c) for i, c in enumerate(changed)],
                             pages=20)):
        change = by_path(run_diff(mapped, other))["ram/pc.ram"]
        assert change.count == 1 and change.text.startswith("1 page differs, first at block offset 0x5000")
        assert mapped[change.old_offset:change.old_offset + PAGE] == contents[5]
        assert other[change.new_offset:change.new_offset + PAGE] == page(7)


def test_progress_reports_guest_ram_compared() -> None:
    calls: list[tuple[int, int]] = []
    with Source.open(str(Q82_RAMFB)) as sa, Source.open(str(Q82_BOOTED)) as sb:
        a, b = decode(sa), decode(sb)
        result = diff_streams(a, b, sa, sb, progress=lambda done, total: calls.append((done, total)))
        assert result == diff_streams(a, b, sa, sb)  # the same answer with and without progress
        blocks = {blk.idstr: blk.used_length for s in a.sections if s.idstr == "ram" and s.body.items
                  for item in s.body.items if hasattr(item, "blocks") for blk in item.blocks}
        total = sum(blocks.values())
        assert calls[0] == (0, total) and calls[-1] == (total, total)
        assert all(t == total for _, t in calls)
        assert [d for d, _ in calls] == sorted({d for d, _ in calls})  # forward only, never twice
        ignoring: list[tuple[int, int]] = []
        diff_streams(a, b, sa, sb, ignore=("ram",), progress=lambda done, total: ignoring.append((done, total)))
        assert ignoring == [(0, 0)]


def test_progress_every_32_mib_of_a_large_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ram_compare, "PROGRESS_EVERY", 4 * PAGE)
    monkeypatch.setattr(ram_compare, "RAM_CHUNK", PAGE)  # reported after a slice at the earliest
    recs = [("page", i, page(i % 3)) for i in range(32)]
    calls: list[tuple[int, int]] = []
    a, b = ram_stream(recs, pages=32), ram_stream(recs[:20] + [("page", 20, page(9))] + recs[21:], pages=32)
    sa, sb = Source.from_bytes(a), Source.from_bytes(b)
    result = diff_streams(decode(sa), decode(sb), sa, sb, progress=lambda done, total: calls.append((done, total)))
    assert result.changes[0].count == 1
    assert calls[0] == (0, 32 * PAGE) and calls[-1] == (32 * PAGE, 32 * PAGE)
    reported = [done for done, _ in calls[:-1]]  # the last one says the end, however close
    assert len(reported) >= 6 and all(y - x >= 4 * PAGE for x, y in pairwise(reported))

# ---------------------------------------------------------------- VFIO (synthetic, wire-format §8.4)


def test_vfio_display_geometry_in_words() -> None:
    result = run_diff(vfio_stream(width=1024), vfio_stream(width=1280, section_id=0x30))
    (change,) = result.changes  # the section id differs too, and is no difference
    assert change.path == "0000:00:02.0/vfio/config/VFIODisplay/dpy/ramfb/cfg/width"
    assert change.text == "1024 → 1280"
    assert vfio_stream(width=1280)[change.new_offset:change.new_offset + 4] == struct.pack(">I", 1280)


def test_vfio_display_subsection_on_one_side() -> None:
    (change,) = run_diff(vfio_stream(width=None), vfio_stream()).changes
    assert change.kind == "subsection_added" and change.path == "0000:00:02.0/vfio/config/VFIODisplay"


# ---------------------------------------------------------------- JSON, rendering, CLI


def test_diff_json_is_plain_json() -> None:
    doc = diff_json(run_diff(Q81_RAMFB, Q82_RAMFB))
    assert json.loads(json.dumps(doc)) == doc
    assert doc["same"] is False and doc["changes"][1] == {
        "kind": "section_added", "group": "ramfb-dev", "path": "ramfb-dev",
        "text": "only in B: FULL section (ramfb-dev), version 1", "new": 1, "new_offset": 0x453d3}


def test_render_tree_and_brief() -> None:
    result = run_diff(Q82_RAMFB, Q82_BOOTED, ignore=("ram", "cpu"))
    text = render(diff_tree(result))
    assert "ramfb-dev  5 changes" in text
    assert "~ state/cfg/width  0 → 1024  @0x453fa → 0xd9385" in text
    brief = render(diff_brief(result))
    assert "  ramfb-dev  5 changed" in brief.splitlines()


def test_cli_exit_status_and_json() -> None:
    runner = CliRunner()
    same = runner.invoke(cli, ["diff", str(Q10_RAMFB), str(Q10_RAMFB)])
    assert same.exit_code == 0, same.output
    assert "no differences" in same.stdout
    different = runner.invoke(cli, ["diff", "--json", str(Q81_RAMFB), str(Q82_RAMFB)])
    assert different.exit_code == 1
    assert [c["path"] for c in json.loads(different.stdout)["changes"]] == ["configuration/machine", "ramfb-dev"]
    brief = runner.invoke(cli, ["diff", "--brief", str(Q81_RAMFB), str(Q82_RAMFB)])
    assert brief.exit_code == 1 and "ramfb-dev  1 added" in brief.stdout
    trouble = runner.invoke(cli, ["diff", str(CAPTURES / "missing.bin"), str(Q10_RAMFB)])
    assert trouble.exit_code == 2 and "cannot open" in trouble.stderr


def test_cli_compat_both_directions() -> None:
    runner = CliRunner()
    # 7.2 and 10.0 streams of the same machine type load both ways (QEMU versions from the sidecars)
    ok = runner.invoke(cli, ["diff", "--compat", "--brief", str(Q72_PLAIN_72), str(Q72_PLAIN_10)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.count("would load") == 2
    # 8.1 vs 8.2 with ramfb: refused both ways (machine type), so exit 1
    bad = runner.invoke(cli, ["diff", "--compat", "--json", str(Q81_RAMFB), str(Q82_RAMFB)])
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)["compat"]
    assert doc["a_where_b_was_made"]["qemu_output"][0] == \
        "Machine type received is 'pc-q35-8.1' and local is 'pc-q35-8.2'"
    assert doc["b_where_a_was_made"]["loadable"] is False


def test_cli_compat_needs_the_qemu_version(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(Q81_RAMFB.read_bytes())
    b.write_bytes(Q82_RAMFB.read_bytes())
    runner = CliRunner()
    result = runner.invoke(cli, ["diff", "--compat", str(a), str(b)])
    assert result.exit_code == 2 and "--compat needs the QEMU version" in result.stderr
    assert runner.invoke(cli, ["diff", "--compat", "--qemu", "10.0", str(a), str(b)]).exit_code == 1


def test_sections_without_vmdesc_compare_raw_payloads() -> None:
    a = CAPTURES / "qemu-7.2.22__pc-q35-7.2__novmdesc.bin"
    b = CAPTURES / "qemu-10.0.2__pc-q35-7.2__novmdesc.bin"
    result = run_diff(a, b, ignore=("ram",))
    (change,) = result.changes  # with a vmdesc this is runstate 100 → 32 bytes + has_vm_was_suspended...
    assert change.path == "globalstate/payload"
    assert change.text == "payload of 104 bytes: 1 byte differs, first at payload byte 0x24"
    assert a.read_bytes()[change.old_offset] != b.read_bytes()[change.new_offset]


def test_ram_block_length_change() -> None:
    a = ram_stream([("page", 0, page(1))], pages=4)
    b = ram_stream([("page", 0, page(1))], pages=8)
    changes = by_path(run_diff(a, b))
    assert changes["ram/pc.ram/length"].text == "length 0x4000 → 0x8000"
    assert "ram/pc.ram" not in changes  # the pages sent are the same


def test_streams_decoded_without_page_runs_are_refused() -> None:
    """A summary decode (ram_runs=False) keeps no pages; diffing it would call all RAM equal."""
    stream = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"), ram_runs=False)
    with pytest.raises(ValueError, match="ram_runs=True"):
        diff_streams(stream, stream)


def test_scalar_fields_of_a_cpu_after_reset_against_a_booted_one() -> None:
    """A capture made with -S (the CPU never ran) holds x86's architectural reset state (Intel SDM
    vol. 3, "Processor state following power-up, reset or INIT": EIP 0000FFF0H, CS base FFFF0000H,
    EFLAGS 00000002H, CR0 60000010H, GDTR and IDTR limits FFFFH); the booted capture's CPU has run
    SeaBIOS. Each of those registers is one "value" change of one scalar field, old = the reset
    value, and its old offset points at that value in A (big-endian on the wire)."""
    reset = {"cpu/env.eip": 0xFFF0, "cpu/env.segs[1]/base": 0xFFFF_0000, "cpu/env.eflags": 0x2,
             "cpu/env.cr[0]": 0x6000_0010, "cpu/env.gdt/limit": 0xFFFF, "cpu/env.idt/limit": 0xFFFF}
    changes = {c.path: c for c in run_diff(Q82_RAMFB, Q82_BOOTED).changes}
    data = Q82_RAMFB.read_bytes()
    for path, value in reset.items():
        change = changes[path]
        assert (change.kind, change.group, change.old) == ("value", "cpu", value), path
        assert isinstance(change.new, int) and change.new != value, path
        assert change.old_offset is not None and change.new_offset is not None
    eip = changes["cpu/env.eip"]
    assert int.from_bytes(data[eip.old_offset:eip.old_offset + 8], "big") == 0xFFF0


def test_an_opaque_payload_that_only_grew_is_a_change() -> None:
    """A section no vmdesc describes is compared by its payload bytes: B's payload is A's with two
    more bytes, so the first difference is where A's payload ends."""
    a = FILE_HEADER + configuration(b"pc-q35-8.2") + full_section(0x10, b"mystery", b"abcdefgh") + b"\x00"
    b = FILE_HEADER + configuration(b"pc-q35-8.2") + full_section(0x10, b"mystery", b"abcdefghij") + b"\x00"
    (change,) = run_diff(a, b).changes
    assert (change.kind, change.path, change.old, change.new, change.count) == ("payload", "mystery/payload", 8, 10, 0)
    assert change.old_offset == change.new_offset == a.index(b"abcdefgh") + 8


def test_vfio_device_data_of_the_same_length_that_differs() -> None:
    """One byte of a VFIO device's opaque data changed (same chunks, same lengths): a vfio_data change."""
    a = vfio_with_data()
    chunk = bytes(i % 251 for i in range(5000))
    at = a.index(chunk) + 1234
    b = a[:at] + bytes([a[at] ^ 0xFF]) + a[at + 1:]
    (change,) = run_diff(a, b).changes
    assert (change.kind, change.old, change.new) == ("vfio_data", 5064, 5064)
    assert "content differs" in change.text
