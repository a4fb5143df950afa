"""vmig on odd terminals and in pipes: encodings without Unicode, 80 columns, colour switches,
piped output that a script parses, and the small courtesies of a command line (usage instead
of a silent wait, --debug anywhere, suggestions for typos, a missing section named)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paths import CAPTURES
from terminal import CLEAN, in_a_terminal

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
Q81 = CAPTURES / "qemu-10.0.2__pc-q35-8.1__ramfb.bin"
Q82 = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]


def run(*args: object, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*VMIG, *map(str, args)], capture_output=True, timeout=120, env=CLEAN | (env or {}),
                          **kwargs)


@functools.cache
def plain(*args: object) -> bytes:
    return run(*args).stdout


def on_terminal(columns: int, *args: object, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run vmig with stdin, stdout and stderr on a pseudo-terminal of `columns` columns; the screen's lines."""
    code, out = in_a_terminal(*args, columns=columns, bar=bool((env or {}).get("VMIG_TEST_BAR")))
    text = ANSI.sub(b"", out).decode("utf-8", "replace").replace("\r\n", "\n")
    return code, [line.split("\r")[-1] for line in text.split("\n")]


# --- encodings without Unicode ----------------------------------------------------------------------

CASES = [
    (["decode", BOOTED], 0), (["decode", "--summary", BOOTED], 0), (["diff", Q81, Q82], 1),
    (["check", Q82, "--qemu", "10.0"], 1), (["golden", "check", Q82], 0), (["machines", "pc-8.1"], 0),
    (["diff", "--compat", Q81, Q82], 1), (["decode", "--section", "nosuch", BOOTED], 1),
]


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"},
                                 {"LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}],
                         ids=["PYTHONIOENCODING=ascii", "LANG=C"])
@pytest.mark.parametrize(("args", "status"), CASES, ids=[" ".join(map(str, a[:2])) for a, _ in CASES])
def test_an_ascii_stream_gets_ascii_and_the_usual_status(args: list, status: int, env: dict[str, str]) -> None:
    result = run(*args, env=env)
    assert result.returncode == status, result.stderr.decode()
    assert b"Traceback" not in result.stderr and b"internal error" not in result.stderr
    result.stdout.decode("ascii")
    result.stderr.decode("ascii")
    if args[0] in ("diff", "check"):
        assert b" -> " in result.stdout


# --- pipes: nothing wrapped -------------------------------------------------------------------------

@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_piped_output_is_never_wrapped(columns: str) -> None:
    diff = run("diff", Q81, Q82, env={"COLUMNS": columns}).stdout.decode()
    assert diff.splitlines()[0] == f"diff {Q81} → {Q82}  2 changes in 2 groups"
    check = run("check", Q82, "--qemu", "10.0", env={"COLUMNS": columns}).stdout.decode()
    assert ("│   ├── Unknown savevm section or instance 'ramfb-dev' 0. Make sure that your current VM setup matches "
            "your saved VM setup, including any hotplugged devices\n") in check
    summary = run("decode", "--summary", BOOTED, env={"COLUMNS": columns}).stdout.decode().splitlines()
    row = next(line for line in summary if "ich9_ahci" in line)
    assert re.search(r"│ 0000:00:1f.2/ich9_ahci +│ +0 │ +1 │ ich9_ahci v1: \d+ fields", row), row


# --- colour -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "env", "coloured"), [
    ([], {}, False),
    (["--color"], {}, True),
    (["--color"], {"NO_COLOR": "1"}, True),
    ([], {"FORCE_COLOR": "1"}, True),
    ([], {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
    (["--no-color"], {"FORCE_COLOR": "1"}, False),
])
def test_colour_switches(flags: list[str], env: dict[str, str], coloured: bool) -> None:
    for args in (["diff", Q81, Q82], ["decode", "--section", "ramfb", BOOTED], ["check", Q82, "--qemu", "10.0"]):
        out = run(*flags, *args, env=env).stdout
        assert (b"\x1b[" in out) is coloured, (flags, env, args)
        assert ANSI.sub(b"", out) == plain(*args)  # colour changes no text
    out = run(args[0], "--no-color", *args[1:], env={"FORCE_COLOR": "1"}).stdout  # after the verb too
    assert b"\x1b[" not in out


def test_a_terminal_gets_colour_unless_told_not_to() -> None:
    assert b"\x1b[" in in_a_terminal("decode", "--section", "ramfb", BOOTED)[1]
    out = in_a_terminal("--no-color", "decode", "--section", "ramfb", BOOTED)[1]
    assert b"\x1b[3" not in out and b"ramfb-dev" in out


# --- 80 columns -------------------------------------------------------------------------------------

def test_summary_on_80_columns_shows_idstrs_whole() -> None:
    code, lines = on_terminal(80, "decode", "--summary", BOOTED)
    assert code == 0
    assert max(map(len, lines)) <= 80, max(lines, key=len)
    text = "\n".join(lines)
    for idstr in ("0000:00:1f.2/ich9_ahci", "0000:00:1f.0/ICH9LPC", "0000:00:1f.3/ich9_smb", "mc146818rtc"):
        assert idstr in text, idstr
    assert "…" not in text


@pytest.mark.parametrize("args", [["diff", Q81, Q82], ["check", Q82, "--qemu", "10.0"], ["decode", BOOTED],
                                  ["machines", "pc-8.1"]], ids=["diff", "check", "decode", "machines"])
def test_output_fits_80_columns(args: list) -> None:
    code, lines = on_terminal(80, *args)
    assert code in (0, 1)
    assert max(map(len, lines)) <= 80, max(lines, key=len)


def test_the_progress_bar_fits_80_columns() -> None:
    code, lines = on_terminal(80, "decode", "--summary", BOOTED, env={"VMIG_TEST_BAR": "1"})
    assert code == 0
    bars = [line for line in lines if "ETA" in line]
    assert bars and all(len(line) <= 80 for line in bars), bars


# --- arrays: how many were left out, and how to see them ------------------------------------------

def test_long_arrays_say_how_many_are_left_out_and_full_shows_them() -> None:
    line = next(x for x in run("decode", BOOTED).stdout.decode().splitlines() if "env.mce_banks" in x)
    assert line.endswith("0, 0, 0, … +32 more] (40 items; --full shows all)")
    full = next(x for x in run("decode", "--full", BOOTED).stdout.decode().splitlines() if "env.mce_banks" in x)
    values = full.split("= [", 1)[1].split("]", 1)[0].split(", ")
    assert len(values) == 40 and "…" not in full and full.endswith("] (40 items)")


def test_diff_says_how_many_items_and_bytes_are_left_out() -> None:
    from vfio_ramfb_mig.diff import value_text

    assert value_text(bytes(range(66))).endswith("0e 0f … +50 more)")
    assert value_text(list(range(40)), "uint8") == "[0, 1, 2, 3, 4, 5, 6, 7, … +32 more] (40 items; --json shows all)"
    assert value_text(list(range(8)), "uint8") == "[0, 1, 2, 3, 4, 5, 6, 7] (8 items)"


# --- courtesies -------------------------------------------------------------------------------------

def test_decode_without_a_file_on_a_terminal_prints_usage() -> None:
    code, lines = on_terminal(120, "decode")
    text = "\n".join(lines)
    assert code == 2 and "Usage: vmig decode" in text and "give a STREAM file" in text


@pytest.mark.parametrize("args", [["decode", "-"], ["diff", "-", Q82], ["check", "-", "--qemu", "10.0"],
                                  ["ram", "extract", "-", "ramdir"], ["encode", "--from-json", "-", "-o", "x.bin"]],
                         ids=["decode", "diff", "check", "ram-extract", "encode"])
def test_stdin_on_a_terminal_is_a_usage_error_not_a_wait(args: list, tmp_path: Path) -> None:
    code, lines = on_terminal(120, *args)
    assert code == 2 and "stdin is a terminal" in "\n".join(lines)
    assert not (Path.cwd() / "ramdir").exists() and not (Path.cwd() / "x.bin").exists()


def test_decode_reads_a_pipe_without_a_file_name() -> None:
    result = run("decode", "--summary", input=BOOTED.read_bytes())
    assert result.returncode == 0 and b"ramfb-dev" in result.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_and_after_the_verb(tmp_path: Path, where: str) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"QEVM\x00\x00\x00\x03\x42junk")
    args = ["--debug", "decode", bad] if where == "before" else ["decode", bad, "--debug"]
    result = run(*args)
    assert result.returncode != 0 and b"Traceback" in result.stderr
    assert b"Traceback" not in run("decode", bad).stderr


@pytest.mark.parametrize(("args", "suggestion"), [
    (["decod", "x"], "'decode'"), (["machnes"], "'machines'"), (["golden", "chek", "x"], "'check'"),
    (["ram", "extrct", "x", "y"], "'extract'"), (["decode", "--jsn", "x"], "--json"), (["schem"], "'schema'"),
])
def test_typos_get_a_suggestion(args: list[str], suggestion: str) -> None:
    result = run(*args)
    assert result.returncode == 2 and suggestion in result.stderr.decode(), result.stderr


def test_a_section_that_matches_nothing_is_named_with_the_sections_there_are() -> None:
    for extra in ([], ["--json"], ["--summary"]):
        result = run("decode", *extra, "--section", "nosuch", BOOTED)
        assert result.returncode == 1 and result.stdout == b""
        assert result.stderr.decode().startswith("vmig: no section matches 'nosuch'; the stream has: ram, timer, ")
    assert run("decode", "--section", "ramfb", BOOTED).returncode == 0


def test_encode_says_vmig_once_and_q_silences_the_rules(tmp_path: Path) -> None:
    result = run("encode", "--machine", "pc-8.1", "--ramfb", "-o", tmp_path / "a.bin")
    assert result.returncode == 0 and b"vmig: vmig:" not in result.stderr
    assert b"vmig: display=on, implied by --ramfb" in result.stderr
    quiet = run("encode", "-q", "--machine", "pc-8.1", "--ramfb", "-o", tmp_path / "b.bin")
    assert quiet.returncode == 0 and quiet.stderr == b""
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
