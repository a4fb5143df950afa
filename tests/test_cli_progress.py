"""The progress bar on stderr: drawn on a terminal for long work, erased at the end; never when stderr
is not a terminal or with --quiet; never for quick work."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

import vfio_ramfb_mig.cli.main as climain
import vfio_ramfb_mig.render.progress as progress_module
from vfio_ramfb_mig.cli.main import App, cli
from vfio_ramfb_mig.render.progress import progress_bar, size_words

from paths import CAPTURES
from terminal import in_a_terminal as on_a_pty

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
OTHER = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"
GiB = 1 << 30
ERASE_LINE = "\x1b[2K"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


def test_bar_shows_bytes_rate_and_eta_after_the_delay_and_is_erased() -> None:
    console, out = terminal()
    clock = Clock()
    with progress_bar(console, GiB, "decode big.bin", clock=clock) as progress:
        progress(16 << 20)
        assert out.getvalue() == ""  # not yet: the work may end in a blink
        clock.now += 1
        progress(512 << 20)
        shown = out.getvalue()
        assert "decode big.bin" in shown and "512.0 MiB / 1.0 GiB" in shown and "ETA" in shown
        progress(GiB)
    final = out.getvalue()
    assert ERASE_LINE in final[len(shown):] and final.rstrip().endswith(ERASE_LINE)  # transient: erased


def test_quick_or_small_work_shows_nothing() -> None:
    console, out = terminal()
    clock = Clock()
    with progress_bar(console, GiB, "quick", clock=clock) as progress:
        progress(GiB // 2)  # before the delay
        clock.now += 5
        progress(GiB)  # done: nothing left to show
    with progress_bar(console, 10 << 20, "small", clock=clock) as progress:
        clock.now += 5
        progress(1 << 20)  # slow, but under MIN_SIZE
    assert out.getvalue() == ""


def test_unknown_total_and_a_total_learnt_on_the_way() -> None:
    console, out = terminal()
    clock = Clock()
    with progress_bar(console, None, "spool", clock=clock) as progress:
        clock.now += 1
        progress(3 << 20)
        assert "3.0 MiB / ?" in out.getvalue()
        progress(4 << 20, 2 * GiB)
        progress_bar_task = out.getvalue()
    assert "spool" in progress_bar_task


def test_disabled_bar_prints_nothing_and_loads_nothing() -> None:
    console, out = terminal()
    clock = Clock()
    with progress_bar(console, GiB, "x", enabled=False, clock=clock) as progress:
        clock.now += 5
        progress(1)
        progress(2, 3)
    assert out.getvalue() == ""
    code = ("import sys\nfrom vfio_ramfb_mig.render.progress import progress_bar\n"
            "with progress_bar(None, 1 << 40, 'x', enabled=False, delay=0) as p:\n    p(1)\n"
            "print(sorted(m for m in sys.modules if m.startswith('rich')))\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_bar_is_erased_when_the_work_fails() -> None:
    console, out = terminal()
    clock = Clock()
    with pytest.raises(RuntimeError, match="boom"), progress_bar(console, GiB, "fails", clock=clock) as progress:
        clock.now += 1
        progress(1 << 20)
        raise RuntimeError("boom")
    assert "fails" in out.getvalue() and out.getvalue().rstrip().endswith(ERASE_LINE)


def test_console_is_made_only_when_a_bar_is_drawn() -> None:
    made: list[Console] = []

    def make() -> Console:
        made.append(terminal()[0])
        return made[-1]

    clock = Clock()
    with progress_bar(make, GiB, "lazy", clock=clock) as progress:
        progress(1)
        assert made == []
        clock.now += 1
        progress(2)
        assert len(made) == 1


def test_size_words() -> None:
    assert [size_words(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 * GiB)] == \
        ["0 bytes", "1023 bytes", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 GiB"]


# --- the CLI's side: when is a bar asked for -----------------------------------------------------


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every progress bar the CLI asks for: its description, total and whether it is enabled."""
    asked: list[dict[str, Any]] = []
    real = progress_module.progress_bar

    def spy(console, total, description, *, enabled=True, **kw):
        asked.append({"description": description, "total": total, "enabled": enabled})
        return real(console, total, description, enabled=False, **kw)

    monkeypatch.setattr(progress_module, "progress_bar", spy)
    return asked


@pytest.mark.parametrize("tty, args, enabled", [
    (True, ["decode", str(BOOTED)], True),
    (False, ["decode", str(BOOTED)], False),
    (True, ["-q", "decode", str(BOOTED)], False),
    (True, ["--quiet", "decode", "--summary", str(BOOTED)], False),
    (True, ["decode", "-q", "--json", str(BOOTED)], False),
    (True, ["check", "--qemu", "10.0", "--device", "ramfb", str(BOOTED)], True),
    (True, ["check", "--qemu", "10.0", "--device", "ramfb", "--quiet", str(BOOTED)], False),
])
def test_cli_asks_for_a_bar_only_on_a_terminal_without_quiet(monkeypatch: pytest.MonkeyPatch, bars: list,
                                                             tty: bool, args: list[str], enabled: bool) -> None:
    monkeypatch.setattr(climain, "stderr_is_terminal", lambda: tty)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert bars == [{"description": f"decode {BOOTED}", "total": BOOTED.stat().st_size, "enabled": enabled}]


def test_diff_asks_for_one_bar_over_both_inputs(monkeypatch: pytest.MonkeyPatch, bars: list) -> None:
    monkeypatch.setattr(climain, "stderr_is_terminal", lambda: True)
    result = CliRunner().invoke(cli, ["diff", "--brief", str(BOOTED), str(OTHER)])
    assert result.exit_code == 1, result.output
    assert bars == [{"description": "diff: decode A and B", "total": BOOTED.stat().st_size + OTHER.stat().st_size,
                     "enabled": True},
                    {"description": "diff: compare RAM", "total": None, "enabled": True}]
    bars.clear()
    result = CliRunner().invoke(cli, ["diff", "-q", str(BOOTED), str(OTHER)])
    assert [b["enabled"] for b in bars] == [False, False]


def test_diff_reports_ram_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """What diff_streams reports reaches the bar: (0, total) first, (total, total) last."""
    seen: list[tuple] = []
    real = progress_module.progress_bar

    def spy(console, total, description, *, enabled=True, **kw):
        manager = real(console, total, description, enabled=False, **kw)

        class Recording:
            def __enter__(self):
                manager.__enter__()
                return lambda *args: seen.append((description, *args))

            def __exit__(self, *exc):
                return manager.__exit__(*exc)

        return Recording()

    monkeypatch.setattr(progress_module, "progress_bar", spy)
    result = CliRunner().invoke(cli, ["diff", "--brief", str(BOOTED), str(OTHER)])
    assert result.exit_code == 1, result.output
    compare = [args for description, *args in seen if description == "diff: compare RAM"]
    assert compare[0][0] == 0 and compare[-1][0] == compare[-1][1] == compare[0][1] > 0
    decoded = [args for description, *args in seen if description == "diff: decode A and B"]
    assert decoded[-1] == [BOOTED.stat().st_size + OTHER.stat().st_size]


def test_app_progress_follows_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeStderr(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for tty, quiet, expected in ((True, False, True), (False, False, False), (True, True, False)):
        monkeypatch.setattr(sys, "stderr", FakeStderr(tty))
        assert climain.stderr_is_terminal() is tty
        with App(quiet=quiet).progress("x", 1 << 40) as progress:
            assert (progress is not progress_module._nothing) is expected


# --- end to end, in a pseudo-terminal ------------------------------------------------------------

def in_a_terminal(*args: str) -> tuple[int, bytes]:
    return on_a_pty(*args, bar=True)


def test_terminal_gets_a_bar_that_is_erased_before_the_output() -> None:
    code, out = in_a_terminal("decode", "--summary", str(BOOTED))
    assert code == 0
    bar_at = out.index(b"ETA")
    assert out.index(b"ramfb-dev") > bar_at and b"decode " in out[:bar_at]
    assert b"\x1b[2K" in out[bar_at:out.index(b"ramfb-dev")]  # erased before the table
    code, out = in_a_terminal("diff", "--brief", str(BOOTED), str(OTHER))
    assert code == 1 and b"diff: decode A and B" in out and b"diff: compare RAM" in out and b"ETA" in out


@pytest.mark.parametrize("args", [["-q", "decode", "--summary"], ["decode", "--quiet", "--summary"]])
def test_quiet_terminal_gets_no_bar(args: list[str]) -> None:
    code, out = in_a_terminal(*args, str(BOOTED))
    assert code == 0 and b"ramfb-dev" in out and b"ETA" not in out


def test_stderr_not_a_terminal_gets_no_bar() -> None:
    code = ("import vfio_ramfb_mig.render.progress as p\np.MIN_SIZE, p.DELAY = 0, 0\n"
            "from vfio_ramfb_mig.cli.main import cli\nimport sys\ncli(sys.argv[1:], prog_name='vmig')\n")
    result = subprocess.run([sys.executable, "-c", code, "decode", "--summary", str(BOOTED)], check=False,
                            capture_output=True, timeout=120)
    assert result.returncode == 0 and result.stderr == b"" and b"ramfb-dev" in result.stdout


def test_compressed_and_stdin_input_get_a_bar_while_read(monkeypatch: pytest.MonkeyPatch, bars: list,
                                                         tmp_path: Path) -> None:
    """A verb that goes back over the stream (decode --json) copies a compressed file or stdin
    before it decodes: a bar follows that too (its total is the compressed file's size; unknown for
    stdin), then the decode's own. A verb that reads forward (decode --summary) decodes as it
    reads: one bar, whose total is unknown until the input ends."""
    import gzip

    monkeypatch.setattr(climain, "stderr_is_terminal", lambda: True)
    packed = tmp_path / "booted.bin.gz"
    packed.write_bytes(gzip.compress(BOOTED.read_bytes()))
    result = CliRunner().invoke(cli, ["decode", "--json", str(packed)])
    assert result.exit_code == 0, result.output
    assert bars == [{"description": f"read {packed}", "total": packed.stat().st_size, "enabled": True},
                    {"description": f"decode {packed}", "total": BOOTED.stat().st_size, "enabled": True}]
    bars.clear()
    result = CliRunner().invoke(cli, ["decode", "--json", "-"], input=BOOTED.read_bytes())
    assert result.exit_code == 0, result.output
    assert bars[0] == {"description": "read stdin", "total": None, "enabled": True}
    for source, stdin in ((str(packed), None), ("-", BOOTED.read_bytes())):
        bars.clear()
        result = CliRunner().invoke(cli, ["decode", "--summary", source], input=stdin)
        assert result.exit_code == 0, result.output
        assert bars == [{"description": f"decode {source}", "total": None, "enabled": True}]


@pytest.mark.parametrize("tty, quiet, enabled", [(True, False, True), (False, False, False), (True, True, False)])
def test_ram_extract_asks_for_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  tty: bool, quiet: bool, enabled: bool) -> None:
    """`ram extract` (a walk of the whole input, then every block written) has a bar over the
    input's size, on a terminal and without -q, and reports up to that size in order."""
    seen: list[tuple] = []
    real = progress_module.progress_bar

    def spy(console, total, description, *, enabled=True, **kw):
        seen.append(("bar", description, total, enabled))
        manager = real(console, total, description, enabled=False, **kw)

        class Recording:
            def __enter__(self):
                manager.__enter__()
                return lambda *args: seen.append(("at", *args))

            def __exit__(self, *exc):
                return manager.__exit__(*exc)

        return Recording()

    monkeypatch.setattr(progress_module, "progress_bar", spy)
    monkeypatch.setattr(climain, "stderr_is_terminal", lambda: tty)
    result = CliRunner().invoke(cli, ["ram", "extract", *(["-q"] if quiet else []), str(BOOTED),
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    size = BOOTED.stat().st_size
    assert [s for s in seen if s[0] == "bar"] == [("bar", f"extract {BOOTED}", size, enabled)]
    at = [s[1] for s in seen if s[0] == "at"]
    assert at == sorted(at) and at[-1] == size and len(at) > 1
