"""`vmig decode` as a user runs it: outputs, filters, stdin and compressed input, colour rules."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from vfio_ramfb_mig import decode
from vfio_ramfb_mig import Source
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.model import Blob, MigrationStream, OpaqueBody, Section, Span
from vfio_ramfb_mig.render.theme import THEME
from vfio_ramfb_mig.render.tree import stream_tree

from paths import CAPTURES

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]


def run(*args: str, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VMIG, *args], input=input, capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_tree_shows_offsets_versions_and_ramfb_words() -> None:
    result = CliRunner().invoke(cli, ["decode", str(BOOTED)])
    assert result.exit_code == 0
    out = result.stdout
    assert "0x000d935e +56     FULL ramfb-dev  id 37  instance 0  version 1" in out
    assert "1024x768 XR24 (XRGB8888) framebuffer at 0xc00000, stride 4096" in out
    assert "pc.ram: 3948 zero, 148 normal pages" in out
    assert "\x1b[" not in out  # no colour when not a terminal


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def on_terminal(renderable: object, width: int) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=width, theme=THEME)
    console.print(renderable)
    return console.file.getvalue()


def test_piped_tree_keeps_long_lines_whole() -> None:
    """Piped output is for reading and grep: a line wider than 120 columns is printed whole, not cut."""
    out = CliRunner().invoke(cli, ["decode", str(BOOTED)]).stdout
    line = next(line for line in out.splitlines() if "env.mce_banks" in line)
    assert len(line) > 120 and line.startswith("│   ├── ") and line.endswith(", … +32 more] (40 items; --full shows all)")
    assert out == stream_tree(decode(str(BOOTED)), title=str(BOOTED)).plain()


def test_terminal_tree_has_styles_and_wraps_long_lines_under_their_guides() -> None:
    tree = stream_tree(decode(str(BOOTED)))
    wide = on_terminal(tree, 400)
    assert "\x1b[" in wide and ANSI.sub("", wide) == tree.plain()  # styles change no text
    lines = ANSI.sub("", on_terminal(tree, 100)).splitlines()
    assert max(len(line) for line in lines) <= 100
    at = next(i for i, line in enumerate(lines) if "env.mce_banks" in line)
    assert lines[at].startswith("│   ├── 0x") and lines[at + 1].startswith("│   │   ")  # continued under the guides
    assert "(40 items;" in lines[at + 1] or "(40 items;" in lines[at + 2]


def test_names_from_the_stream_are_never_markup() -> None:
    name = "[bold red]x[/] [link=https://example.com]y\x1b[31mz"
    stream = MigrationStream((Section("section_full", 5, name, 0, 1, OpaqueBody(Blob(17, 3), reason="[b]r[/b]"),
                                      span=Span(0, 30)),), 30, source="[i]dump[/i].bin")
    shown = "[bold red]x[/] [link=https://example.com]y\\x1b[31mz"
    for out in (stream_tree(stream).plain(), ANSI.sub("", on_terminal(stream_tree(stream), 200))):
        assert out.splitlines() == ["[i]dump[/i].bin  30 bytes, 1 records, no vmdesc",
                                    (f"└── 0x00000000 +30     FULL {shown}  id 5  instance 0  version 1  "
                                     "opaque 3 bytes: [b]r[/b]")]
    assert "\x1b[31mz" not in on_terminal(stream_tree(stream), 200)


def test_section_filter_and_summary() -> None:
    result = CliRunner().invoke(cli, ["decode", "--section", "ramfb*", str(BOOTED)])
    assert result.exit_code == 0 and "ramfb-dev" in result.stdout and " timer " not in result.stdout
    result = CliRunner().invoke(cli, ["decode", "--summary", str(BOOTED)])
    assert result.exit_code == 0
    devices = json.loads(BOOTED.read_bytes()[BOOTED.read_bytes().rindex(b"{\"configuration"):])["devices"]
    assert result.stdout.count(" FULL ") == len(devices) == 30 and "0000:00:1f.0/ICH9LPC" in result.stdout


def test_json_section_filter() -> None:
    result = CliRunner().invoke(cli, ["decode", "--json", "--section", "ramfb-dev", str(BOOTED)])
    doc = json.loads(result.stdout)
    sections = [r for r in doc["records"] if r["type"].startswith("section_")]
    assert [s["idstr"] for s in sections] == ["ramfb-dev"]


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, bz2.compress, lambda b: b],
                         ids=["gzip", "xz", "bzip2", "plain"])
def test_stdin_and_compressed_input_round_trip(tmp_path: Path, compress) -> None:
    data = BOOTED.read_bytes()
    packed = tmp_path / "dump.bin.x"
    packed.write_bytes(compress(data))
    # from a file (read again by encode) and from stdin (the JSON must carry the bytes itself)
    for args, stdin in ((["decode", "--json", str(packed)], None), (["decode", "--json", "-"], compress(data))):
        result = run(*args, input=stdin)
        assert result.returncode == 0, result.stderr.decode()
        doc_path = tmp_path / "dump.json"
        doc_path.write_bytes(result.stdout)
        out = tmp_path / "again.bin"
        # --bare: the stream itself; by default the compression it came in is made again
        result = run("encode", "--from-json", str(doc_path), "--bare", "-o", str(out))
        assert result.returncode == 0, result.stderr.decode()
        assert out.read_bytes() == data
        result = run("encode", "--from-json", str(doc_path), "-o", str(out))
        assert result.returncode == 0, result.stderr.decode()
        assert out.read_bytes()[:3] == compress(data)[:3]
        with Source.open(str(out)) as src:
            assert bytes(src.buf) == data


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path: Path) -> None:
    script = ("import pty, os, sys\n"
              "pid, fd = pty.fork()\n"
              "if pid == 0:\n"
              f"    os.execv(sys.executable, [sys.executable, '-m', 'vfio_ramfb_mig', 'decode', '--section', 'ramfb',"
              f" {str(BOOTED)!r}])\n"
              "out = b''\n"
              "while True:\n"
              "    try:\n"
              "        chunk = os.read(fd, 65536)\n"
              "    except OSError:\n"
              "        break\n"
              "    if not chunk:\n"
              "        break\n"
              "    out += chunk\n"
              "os.waitpid(pid, 0)\n"
              "sys.stdout.buffer.write(out)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")} | {"TERM": "xterm-256color"}
    coloured = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, timeout=60).stdout
    assert b"\x1b[" in coloured
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env | {"NO_COLOR": "1"},
                           timeout=60).stdout
    assert b"\x1b[" not in plain and b"ramfb-dev" in plain


def test_output_file_is_written_atomically(tmp_path: Path) -> None:
    out = tmp_path / "tree.txt"
    result = CliRunner().invoke(cli, ["decode", "--summary", str(BOOTED), "-o", str(out)])
    assert result.exit_code == 0 and "ramfb-dev" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.txt"]


#: runs `vmig decode --json FILE` in a child, counts the zero runs it writes as they come, and
#: prints the child's peak RSS (wait4) and that count. It is started by this small interpreter, not
#: by pytest: Linux starts a child's ru_maxrss at the peak RSS of the process that spawned it.
JSON_MEMORY = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "vfio_ramfb_mig", "decode", "--json", sys.argv[1]],
                         stdout=subprocess.PIPE)
runs, tail = 0, b""
while chunk := child.stdout.read(1 << 20):
    text = tail + chunk
    runs += text.count(b'{"kind": "zero"')
    tail = text[-16:]
    runs -= tail.count(b'{"kind": "zero"')
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, runs)
"""


def test_json_of_a_million_runs_keeps_memory_flat(tmp_path: Path) -> None:
    """decode --json keeps only so many RAM page runs from its decode, and walks the sections
    past them again as it writes them: a 9 MB stream of 1,000,000 one-record runs (which would
    hold some 250 MiB kept) peaks near a stream of one, and every run is written."""
    from helpers import write_scattered_zero_stream

    def peak(path: Path, records: int) -> int:
        write_scattered_zero_stream(path, records)
        result = subprocess.run([sys.executable, "-c", JSON_MEMORY, str(path)], capture_output=True, text=True,
                                timeout=600, check=True)
        status, peak_kib, runs = map(int, result.stdout.split())
        assert (status, runs) == (0, records)
        return peak_kib

    tiny, large = peak(tmp_path / "tiny.bin", 1), peak(tmp_path / "large.bin", 1_000_000)
    assert large - tiny < 48 * 1024, f"peak RSS {large >> 10} MiB for a million runs, {tiny >> 10} MiB for one"
