"""`vmig screenshot` and `vmig report` from the command line: outputs, exit statuses, one-line
errors that leave no file, and the terminal preview on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageChops

from helpers import with_ramfb_cfg
from paths import CAPTURES
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.codec.decode import decode
from vfio_ramfb_mig.screen import screenshot
from vfio_ramfb_mig.screen.config import CFG_OFFSETS, choose_display

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def patched(tmp_path: Path, **values: int) -> Path:
    data = BOOTED.read_bytes()
    display = choose_display(decode(data, ram_runs=False))
    out = tmp_path / "patched.bin"
    out.write_bytes(with_ramfb_cfg(data, display.offset, **values))
    return out


def test_screenshot_writes_the_png(tmp_path: Path) -> None:
    out = tmp_path / "screen.png"
    result = run("screenshot", str(BOOTED), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "ramfb-dev: 1024x768 XR24 (XRGB8888) at 0xc00000, stride 4096"
    written = Image.open(out)
    assert written.format == "PNG" and written.mode == "RGB"
    assert ImageChops.difference(written, screenshot(str(BOOTED)).image).getbbox() is None


def test_two_streams_side_by_side(tmp_path: Path) -> None:
    other = patched(tmp_path, width=800, height=600)  # same RAM, a smaller mode
    out = tmp_path / "d.png"
    result = run("screenshot", str(BOOTED), str(other), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "screens differ in" in result.stdout and "sizes differ: 1024x768 → 800x600" in result.stdout
    assert Image.open(out).width == 3 * 1024 + 2 * 8


@pytest.mark.parametrize("stream, values, words", [
    ("qemu-10.0.2__pc-q35-8.1__ramfb.bin", {}, "no ramfb state in this stream (machine type pc-q35-8.1)"),
    ("qemu-7.2.22__pc-q35-7.2__ramfb+booted.bin", {}, "no ramfb state"),
    ("qemu-10.0.2__pc-q35-8.2__ramfb.bin", {}, "all zero: the guest firmware has not set a display mode yet"),
    (None, {"addr": 0x2000000}, "ramfb cfg addr 0x2000000 is outside guest RAM (0x0-0xffffff (pc.ram))"),
    (None, {"addr": 0xFFF000}, "runs past the end of guest RAM at 0x1000000"),
    (None, {"stride": 0x10000}, "ramfb cfg stride 65536: a framebuffer of 50,270,208 bytes is larger than the "
                                "guest's RAM (16,777,216 bytes)"),
    (None, {"fourcc": 0x3231564E}, "fourcc 0x3231564e (NV12) is not a format QEMU's ramfb accepts"),
    (None, {"width": 16001}, "ramfb cfg width 16001 is outside what QEMU shows (16..16000)"),
    (None, {"stride": 1000}, "ramfb cfg stride 1000 is shorter than a row of 1024 XR24 pixels (4096 bytes)"),
])
def test_no_screen_is_one_line_exit_2_and_no_file(tmp_path: Path, stream: str | None, values: dict[str, int],
                                                  words: str) -> None:
    path = CAPTURES / stream if stream else patched(tmp_path, **values)
    out = tmp_path / "screen.png"
    result = run("screenshot", str(path), "-o", str(out))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("vmig: error: ") and words in lines[0], result.stderr
    assert all(line.startswith("hint: ") for line in lines[1:])
    assert not out.exists() and list(tmp_path.glob("*.png")) == [] and list(tmp_path.glob(".*")) == []
    if values:  # the error names the field's offset in the stream and its JSON pointer
        field = next(iter(values))
        display = choose_display(decode(str(BOOTED), ram_runs=False))
        if "addr" not in values or "outside" in words:
            assert f"at offset {display.offset + CFG_OFFSETS[field]}" in lines[0]
            assert lines[0].rstrip().endswith(f"/value/{field}")


def test_without_output_off_a_terminal_is_a_usage_error() -> None:
    result = run("screenshot", str(BOOTED))
    assert result.exit_code == 2 and "give -o FILE" in result.stderr


def _on_a_terminal(args: list[str], columns: int, lines: int, env_extra: dict[str, str] | None = None,
                   status: int = 0) -> str:
    """Run vmig with stdout on a pseudo-terminal of that size; what it printed, as text."""
    main, child = pty.openpty()
    import fcntl
    import termios

    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    env.pop("COLUMNS", None), env.pop("LINES", None), env.pop("NO_COLOR", None)
    env.update(env_extra or {})
    proc = subprocess.Popen([sys.executable, "-m", "vfio_ramfb_mig", *args], stdout=child, stderr=subprocess.PIPE,
                            env=env)
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 30)
        if not ready:
            proc.kill()
            raise AssertionError("vmig did not finish on the terminal")
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(30)
    os.close(main)
    err = proc.stderr.read().decode()
    assert proc.returncode == status, err
    return b"".join(chunks).decode() + err


def test_terminal_preview_fits_the_terminal() -> None:
    import re

    text = _on_a_terminal(["screenshot", str(BOOTED)], columns=100, lines=30)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r", "")
    rows = [line for line in plain.split("\n") if line]
    assert rows[0] == "ramfb-dev: 1024x768 XR24 (XRGB8888) at 0xc00000, stride 4096"
    picture = rows[1:]
    # 1024x768 in at most 100 columns and 30 - 2 lines of two pixel rows each: 4:3 kept, height bound
    assert len(picture) <= 28 and all(set(row) == {"▀"} for row in picture)
    assert max(len(row) for row in picture) <= 100 and len(picture[0]) == round(1024 * 56 / 768)
    assert "\x1b[" in text and "48;2;" in text  # drawn with true-colour backgrounds


def test_no_preview_without_colours() -> None:
    text = _on_a_terminal(["screenshot", str(BOOTED)], columns=100, lines=30, env_extra={"NO_COLOR": "1"}, status=2)
    assert "the preview needs colours" in text and "▀" not in text


def test_preview_in_a_terminal_without_unicode() -> None:
    import io

    from rich.console import Console

    from vfio_ramfb_mig.render.screenview import ScreenPreview

    image = screenshot(str(BOOTED)).image
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=64, height=40)
    console.print(ScreenPreview(image, reserve=None))
    out.flush()
    text = out.buffer.getvalue().decode("ascii")
    import re

    rows = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", text).split("\n") if line]
    # one pixel per cell at half height: 64 columns for 1024 pixels, 768 / 16 / 2 = 24 lines
    assert len(rows) == 24 and all(row == " " * 64 for row in rows)


def test_report_cli_writes_one_page(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run("report", str(BOOTED), "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page and "https://" not in page
    assert "wrote" in result.stderr
