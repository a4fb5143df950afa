"""What vmig offers around its commands: --version names the bundled QEMU knowledge, shell
completion (click's protocol) completes commands, file names and machine types, man pages
come from the help, and the pytest plugin costs nothing in a run that does not use it."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vfio_ramfb_mig.cli.main import COMMANDS, cli

from paths import ROOT

VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]


def test_version_names_the_bundled_qemu_builds() -> None:
    out = subprocess.run([*VMIG, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    from vfio_ramfb_mig.version import __version__

    assert out.splitlines()[0] == f"vmig {__version__}"
    data = json.loads(gzip.decompress((ROOT / "vfio_ramfb_mig" / "data" / "machines.json.gz").read_bytes()))
    for build in data["builds"]:
        assert f"QEMU {build['qemu']} {build['arch']}  {build['package']}" in out
    assert len(data["builds"]) >= 4 and "-dump-vmstate" in out


def complete(words: str, shell: str = "bash", cwd: Path | None = None) -> list[str]:
    """What click's completion protocol answers for the command line `words` (the last word is completed)."""
    parts = words.split(" ")
    env = {**os.environ, "_VMIG_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1)}
    if shell == "fish":
        env |= {"COMP_WORDS": words, "COMP_CWORD": parts[-1]}
    if shell == "zsh":
        env |= {"COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    result = subprocess.run([*VMIG], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_completion_of_commands_options_and_machines() -> None:
    assert complete("vmig de") == ["plain,decode"]
    assert "plain,--json" in complete("vmig decode --j")
    assert complete("vmig machines pc-q35-8") == ["plain,pc-q35-8.0", "plain,pc-q35-8.1", "plain,pc-q35-8.2"]
    assert "plain,pc-i440fx-7.2" in complete("vmig check x.bin --target pc-i440fx-7")
    assert complete("vmig schema decode-") == ["plain,decode-pages"]
    assert complete("vmig golden up") == ["plain,update"]
    assert set(complete("vmig ")) >= {f"plain,{name}" for name in COMMANDS} | {"plain,decode", "plain,encode"}


@pytest.mark.parametrize("words", ["vmig decode fix", "vmig diff a.bin fix", "vmig encode --from-json fix",
                                   "vmig check --schema fix", "vmig golden check fix", "vmig ram extract fix",
                                   "vmig decode x.bin -o fix"])
def test_completion_of_file_names(words: str) -> None:
    """File arguments answer "file": the shell's own file-name completion takes over (compgen -f)."""
    assert complete(words, cwd=ROOT) == ["file,fix"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_for_each_shell(shell: str) -> None:
    env = {**os.environ, "_VMIG_COMPLETE": f"{shell}_source"}
    script = subprocess.run([*VMIG], capture_output=True, text=True, timeout=60, env=env)
    assert script.returncode == 0 and "_VMIG_COMPLETE" in script.stdout and "vmig" in script.stdout


def test_completion_script_works_in_bash(tmp_path: Path) -> None:
    """The bash script, sourced in a real bash, completes a command (file names it hands to bash's
    own completion, `compopt -o default`, which only readline runs)."""
    if not Path("/bin/bash").exists():
        pytest.skip("no bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vmig").write_text(f"#!/bin/sh\nexec {sys.executable} -m vfio_ramfb_mig \"$@\"\n")
    (bin_dir / "vmig").chmod(0o755)
    script = ('eval "$(_VMIG_COMPLETE=bash_source vmig)"; complete -p vmig; COMP_WORDS=(vmig mach); COMP_CWORD=1; '
              '_vmig_completion vmig; printf "%s\\n" "${COMPREPLY[@]}"')  # bash passes the command name
    result = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.stdout.split()[-1] == "machines" and "_vmig_completion" in result.stdout, result.stderr


def test_man_pages_come_from_the_help(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "manpages.py"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120, cwd=tmp_path)
    pages = sorted(p.name for p in tmp_path.glob("*.1"))
    assert {"vmig.1", "vmig-decode.1", "vmig-encode.1", "vmig-golden-check.1", "vmig-ram-extract.1"} <= set(pages)
    assert {f"vmig-{name}.1" for name in COMMANDS} <= set(pages)
    decode = (tmp_path / "vmig-decode.1").read_text()
    assert decode.startswith('.TH "VMIG-DECODE" 1') and "\\fB\\-\\-summary\\fR" in decode
    assert "one table: a row per record" in decode  # the option's own help
    top = (tmp_path / "vmig.1").read_text()
    assert ".SH EXIT STATUS" in top and "NO_COLOR" in top
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(ROOT / "tools" / "manpages.py"), str(again)], check=True,
                   capture_output=True, timeout=120)
    assert (again / "vmig-decode.1").read_text() == decode  # no date: the same vmig, the same bytes
    if Path("/usr/bin/man").exists():
        shown = subprocess.run(["man", "-l", str(tmp_path / "vmig-decode.1")], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"})
        assert shown.returncode == 0 and "--summary" in shown.stdout.replace("‐", "-")


def test_the_pytest_plugin_imports_nothing_heavy() -> None:
    """pytest imports the plugin in every run of every project where vmig is installed."""
    code = ("import sys; import vfio_ramfb_mig.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.startswith(('vfio_ramfb_mig', 'construct', 'rich', 'click'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "['vfio_ramfb_mig', 'vfio_ramfb_mig.pytest_plugin']"


def test_the_pytest_plugin_still_works_when_used(tmp_path: Path) -> None:
    """A project's test run, in its own directory: the fixture comes by the entry point and works."""
    capture = ROOT / "fixtures" / "captures" / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"
    (tmp_path / "test_stream.py").write_text(f"def test_golden(vmig_golden):\n    vmig_golden(r\"{capture}\")\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_stream.py"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr
