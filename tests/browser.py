"""A real headless browser for the HTML tests: Debian's chromium driven by playwright.

`playwright install` downloads browser builds and is not used: playwright drives
/usr/bin/chromium (or $VMIG_CHROMIUM). Without chromium or playwright a test
skips locally and fails under VMIG_REQUIRE_QEMU=1 (CI installs both: .ci/run
and the test extra).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest



def chromium_path() -> str | None:
    given = os.environ.get("VMIG_CHROMIUM")
    if given:
        return given
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable(request: pytest.FixtureRequest, why: str) -> None:
    # the same switch as the real-QEMU tests (tests/conftest.py): CI must run them
    if request.config.getoption("--require-qemu", False) or os.environ.get("VMIG_REQUIRE_QEMU") == "1":
        pytest.fail(f"{why} [VMIG_REQUIRE_QEMU=1: browser tests must run]", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        _unavailable(request, "chromium not found: apt-get install chromium (see .ci/run)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable(request, "playwright not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """One loaded report: the playwright page, every request it made and every script error."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=15_000)

    def close(self) -> None:
        self.page.close()

    def hexdump(self) -> dict[int, bytes]:
        """The active panel's hexdump: row offset -> the bytes its hex column shows."""
        rows = self.page.eval_on_selector_all(
            ".panel.active .hex .hexrow", "rows => rows.map(r => [Number(r.dataset.offset), "
            "r.querySelector('.hx').textContent])")
        return {offset: bytes.fromhex(text) for offset, text in rows}

    def selected_bytes(self) -> tuple[int, bytes]:
        """(offset, bytes) of the hexdump's bytes marked as the selection (class sel)."""
        rows = self.page.eval_on_selector_all(
            ".panel.active .hex .hexrow", "rows => rows.map(r => [Number(r.dataset.offset), "
            "Array.from(r.querySelectorAll('.hx > span')).map(s => [s.classList.contains('sel'), s.textContent]), "
            "r.querySelector('.hx').textContent])")
        start, out = None, bytearray()
        for offset, spans, _ in rows:
            pos = offset
            for is_sel, text in spans:
                data = bytes.fromhex(text)
                if is_sel:
                    start = pos if start is None else start
                    out += data
                pos += len(data)
        assert start is not None, "no selected bytes in the hexdump"
        return start, bytes(out)
