"""`vmig report`: the HTML page, loaded in a real headless browser (chromium through playwright).

The page is checked through its DOM as a person would use it: the facts it shows,
the tree, the search box, a click on a section and on a field and the bytes the
hexdump then shows, which must be the file's own bytes at that offset.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from browser import Page, browser  # noqa: F401  (fixture)
from paths import CAPTURES
from vfio_ramfb_mig.codec.decode import decode
from vfio_ramfb_mig.model import Section
from vfio_ramfb_mig.render import report
from vfio_ramfb_mig.render.report import ReportSide, report_html
from vfio_ramfb_mig.screen.config import choose_display
from vfio_ramfb_mig.source import Source

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"


def write_report(tmp_path: Path, capture: Path, **side: object) -> tuple[Path, object]:
    src = Source.open(str(capture))
    stream = decode(src, ram_runs=False)
    page = tmp_path / "report.html"
    page.write_text(report_html(ReportSide(capture.name, stream, src.buf, **side)), encoding="utf-8")
    return page, stream


@pytest.fixture
def booted_page(tmp_path: Path, browser):  # noqa: F811
    path, stream = write_report(tmp_path, BOOTED, screen_error="no screen in this test")
    page = Page(browser, path)
    yield page, stream
    page.close()


def test_page_shows_the_stream_and_makes_no_request(booted_page) -> None:
    page, stream = booted_page
    p = page.page
    assert p.text_content(".panel.active .fact-machine") == stream.configuration.machine
    assert p.text_content(".panel.active .fact-size") == f"{stream.size:,} bytes"
    # one top-level line per record, in stream order, each starting with its offset
    offsets = p.eval_on_selector_all(".panel.active .tree > ul > li > div .o", "os => os.map(o => o.textContent)")
    assert [int(o, 16) for o in offsets] == [r.span.offset for r in stream.records]
    # nothing but the file itself was loaded, and the policy forbids anything else
    assert page.requests == [p.url] and not page.errors
    csp = p.get_attribute("meta[http-equiv='Content-Security-Policy']", "content")
    assert "default-src 'none'" in csp
    # the ramfb config in words
    devices = p.text_content(".panel.active .devices")
    assert "ramfb-dev" in devices and "1024x768 XR24 (XRGB8888)" in devices


def test_click_a_section_then_a_field_shows_their_bytes(booted_page) -> None:
    page, stream = booted_page
    p = page.page
    data = BOOTED.read_bytes()
    index, section = next((i, r) for i, r in enumerate(stream.records)
                          if isinstance(r, Section) and r.idstr == "ramfb-dev")
    p.locator(".panel.active .tree > ul > li > div", has_text="ramfb-dev").click()
    rows = page.hexdump()
    assert min(rows) == section.span.offset
    shown = b"".join(rows[offset] for offset in sorted(rows))
    assert shown == data[section.span.offset:section.span.end]
    assert p.text_content(".panel.active .detail-span").startswith(f"offset {section.span.offset:#010x}")
    # open the section, its state struct, and click the cfg field: its 28 bytes are the selection
    display = choose_display(stream)
    p.locator(".panel.active li.selected > div .tw").click()  # the twisty opens it
    p.locator(".panel.active .tree li > div", has_text="state  struct  ramfb").locator(".tw").click()
    p.locator(".panel.active .tree li > div", has_text="cfg  ramfb cfg").click()
    start, selected = page.selected_bytes()
    assert start == display.offset and selected == data[display.offset:display.offset + 28]


def test_search_finds_names_and_offsets(booted_page) -> None:
    page, stream = booted_page
    p = page.page
    search = p.locator(".panel.active .search")
    search.fill("ramfb")
    p.locator(".panel.active .tree .hit").first.wait_for()
    hits = p.eval_on_selector_all(".panel.active .tree .hit", "ds => ds.map(d => d.textContent)")
    assert hits and all("ramfb" in h.lower() for h in hits)
    # only records with a hit stay, each holding one
    top = p.eval_on_selector_all(".panel.active .tree > ul > li", "ls => ls.map(l => l.querySelector('.hit') !== null)")
    assert 0 < len(top) < len(stream.records) and all(top)
    # an offset finds the innermost line whose bytes hold it: the cfg field
    display = choose_display(stream)
    search.fill(f"{display.offset + 5:#x}")
    hit = p.locator(".panel.active .tree .hit", has_text="ramfb cfg")
    hit.wait_for()
    assert int(hit.locator(".o").text_content(), 16) == display.offset
    expect(p.locator(".panel.active .tree .hit")).to_have_count(1)
    search.fill("")
    expect(p.locator(".panel.active .tree > ul > li")).to_have_count(len(stream.records))


def test_limits_are_said(tmp_path: Path, browser, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(report, "RECORD_BYTES", 64)
    monkeypatch.setattr(report, "MAX_NODES", 10)
    path, stream = write_report(tmp_path, BOOTED)
    page = Page(browser, path)
    try:
        p = page.page
        footer = p.text_content("#left-out")
        assert "at most 10 lines" in footer or "tree stops after 10 lines" in footer
        assert "at most 64 bytes of each record" in footer
        p.locator(".panel.active .tree > ul > li > div").nth(2).click()
        rows = page.hexdump()
        assert sum(len(v) for v in rows.values()) == 64
        assert "first 64 of" in p.text_content(".panel.active .detail")
    finally:
        page.close()


def test_report_of_two_streams_with_screens_ram_and_diff(tmp_path: Path, browser) -> None:  # noqa: F811
    import struct

    from vfio_ramfb_mig.render.report.collect import build_report
    from vfio_ramfb_mig.screen.config import CFG_OFFSETS

    data = bytearray(BOOTED.read_bytes())
    display = choose_display(decode(bytes(data), ram_runs=False))
    struct.pack_into(">I", data, display.offset + CFG_OFFSETS["width"], 800)
    other = tmp_path / "other.bin"
    other.write_bytes(bytes(data))
    path = tmp_path / "report.html"
    path.write_text(build_report(str(BOOTED), str(other)), encoding="utf-8")
    page = Page(browser, path)
    try:
        p = page.page
        assert not page.errors and page.requests == [p.url]
        # the diff is shown first: the cfg change, and the screens compared
        assert p.get_attribute(".panel.active", "id") == "panel-diff"
        # the config's width, and the screens (vmig diff compares them too)
        assert "2 change(s)" in p.text_content(".panel.active .diff-verdict")
        assert "screens differ in" in p.locator(".panel.active .changes tr", has_text="screen").first.text_content()
        assert "sizes differ: 1024x768 → 800x768" in p.text_content(".panel.active .screen-diff")
        row = p.locator(".panel.active .changes tr", has_text="ramfb-dev/state/cfg/width")
        assert "1024 → 800" in row.text_content()
        # its offset in A leads to the line holding it, with its bytes selected
        row.locator("a", has_text="A ").click()
        assert p.get_attribute(".panel.active", "id") == "panel-a"
        start, selected = page.selected_bytes()
        assert start == display.offset and selected == bytes(BOOTED.read_bytes()[start:start + 28])
        # A's screen as a picture of its own size, and the RAM map of every block
        size = p.eval_on_selector(".panel.active img.screen-image", "i => [i.naturalWidth, i.naturalHeight]")
        assert size == [1024, 768]
        blocks = p.eval_on_selector_all(".panel.active .ram-cells",
                                        "cs => cs.map(c => [c.dataset.block, c.children.length])")
        assert dict(blocks)["pc.ram"] == 1024 and dict(blocks)["pc.bios"] == 64
        ram_text = p.text_content(".panel.active .ram")
        assert "pc.ram 4,096 pages; 3,948 zero, sent once, 148 content, sent once; one cell is 4 pages" in ram_text
        # B's screen is 800 wide
        p.locator("button[data-tab=b]").click()
        size = p.eval_on_selector(".panel.active img.screen-image", "i => [i.naturalWidth, i.naturalHeight]")
        assert size == [800, 768]
    finally:
        page.close()


def test_vfio_device_and_a_stream_cut_short(tmp_path: Path, browser) -> None:  # noqa: F811
    from vfio_ramfb_mig.devstream import DeviceRequest, build_device_stream

    from vfio_ramfb_mig.render.report.collect import build_report

    vfio = tmp_path / "vfio.bin"
    vfio.write_bytes(build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True)).data)
    path = tmp_path / "vfio.html"
    path.write_text(build_report(str(vfio)), encoding="utf-8")
    page = Page(browser, path)
    try:
        p = page.page
        device = p.locator(".panel.active .devices li.device").first.text_content()
        # the PCI config space and the VFIODisplay ramfb config, in words
        assert "0000:00:01.0/vfio (VFIO PCI device)" in device and "vendor 8086  device 3e92" in device
        assert "ramfb (VFIODisplay subsection" in device and "not configured by the guest" in device
        assert "all zero" in p.text_content(".panel.active .screen")
    finally:
        page.close()
    # the booted capture cut inside its RAM: the error, the pages it lost, and why there is no screen
    cut = tmp_path / "cut.bin"
    cut.write_bytes(BOOTED.read_bytes()[:400_000])
    path = tmp_path / "cut.html"
    path.write_text(build_report(str(cut)), encoding="utf-8")
    page = Page(browser, path)
    try:
        p = page.page
        assert "stream ends inside" in p.text_content(".panel.active .fact-error")
        cells = p.eval_on_selector(".panel.active .ram-cells[data-block='pc.ram']",
                                   "c => Array.from(c.children).map(s => s.className.slice(5)).join('')")
        assert cells.startswith("n") and cells.endswith("m") and set(cells) <= set("nzm")
        assert "no ramfb state" in p.text_content(".panel.active .screen")
        assert "cut short" in p.text_content(".panel.active .screen")
    finally:
        page.close()


REPORT_MEMORY = """
import resource, sys
from vfio_ramfb_mig.render.report.collect import build_report
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
page = build_report(sys.argv[1], sys.argv[2])
assert "streams not compared" not in page
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_report_of_two_streams_keeps_memory_flat(tmp_path: Path) -> None:
    """The report of two streams walks each once into its final page state (the RAM map, the
    diff and the screen all read it) and keeps no page runs: 400,000 one-record runs per side
    would hold well over 100 MiB; the states hold 8 bytes a page."""
    import subprocess
    import sys

    from helpers import write_scattered_zero_stream

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    write_scattered_zero_stream(a, 400_000)
    write_scattered_zero_stream(b, 400_000)
    result = subprocess.run([sys.executable, "-c", REPORT_MEMORY, str(a), str(b)], capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    grown_kib = int(result.stdout)
    assert grown_kib < 48 * 1024, f"peak memory grew by {grown_kib} KiB for two 3.6 MB streams"
