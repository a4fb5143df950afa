"""`vmig decode --pages` as the CLI wires it (the listing itself: tests/test_pages.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from paths import CAPTURES

from vfio_ramfb_mig.cli.main import cli

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"


@pytest.mark.parametrize("extra", [["--summary"], ["--section", "ram"], ["--strict"], ["--partial"]])
def test_pages_takes_no_other_view(extra: list[str]) -> None:
    result = CliRunner().invoke(cli, ["decode", "--pages", *extra, str(BOOTED)])
    assert result.exit_code == 2 and "--pages lists every page record" in result.output


def test_pages_to_a_file_is_atomic_and_same_as_stdout(tmp_path: Path) -> None:
    out = tmp_path / "pages.txt"
    result = CliRunner().invoke(cli, ["decode", "--pages", "-o", str(out), str(BOOTED)])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(cli, ["decode", "--pages", str(BOOTED)]).stdout
    assert out.read_text() == shown and shown.startswith("0x000000c6  PART id 1  pc.ram  0x00000000  normal\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages.txt"]
