"""`vmig decode` as a user runs it: outputs, filters, stdin and compressed input, colour rules."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vfio_ramfb_mig.cli.main import cli

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
    # from a file and from stdin: the JSON must carry the bytes itself (the source cannot be re-read)
    for args, stdin in ((["decode", "--json", str(packed)], None), (["decode", "--json", "-"], compress(data))):
        result = run(*args, input=stdin)
        assert result.returncode == 0, result.stderr.decode()
        doc_path = tmp_path / "dump.json"
        doc_path.write_bytes(result.stdout)
        out = tmp_path / "again.bin"
        result = run("encode", "--from-json", str(doc_path), "-o", str(out))
        assert result.returncode == 0, result.stderr.decode()
        assert out.read_bytes() == data


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
