"""Start-up: `vmig --help` and `vmig decode --help` load neither rich, construct nor the codec; every
verb imports only what it uses; the package's public names are imported on first use."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from paths import CAPTURES

from vfio_ramfb_mig.cli.main import COMMANDS, LazyGroup, cli

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"

#: modules that a help screen has no use for
HEAVY = ("rich", "construct", "vfio_ramfb_mig.codec", "vfio_ramfb_mig.compat", "vfio_ramfb_mig.diff",
         "vfio_ramfb_mig.golden", "vfio_ramfb_mig.model", "vfio_ramfb_mig.render", "vfio_ramfb_mig.vmstate",
         "vfio_ramfb_mig.devstream")

#: run the CLI in a fresh interpreter, then print the names of the loaded modules as JSON on stderr
PROBE = """
import json, sys
from vfio_ramfb_mig.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="vmig")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def loaded_by(*args: str) -> set[str]:
    """The modules a fresh `vmig ARGS...` has loaded when it exits (stdout discarded)."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "80"})
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    doc = json.loads(line.removeprefix("MODULES "))
    assert doc["code"] in (0, None), result.stderr
    return set(doc["modules"])


def heavy(modules: set[str], names: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("args", [["--help"], ["decode", "--help"], ["encode", "--help"], ["diff", "--help"],
                                  ["check", "--help"], ["golden", "check", "--help"], ["machines", "--help"],
                                  ["--version"]], ids=" ".join)
def test_help_imports_neither_rich_nor_construct_nor_the_codec(args: list[str]) -> None:
    assert heavy(loaded_by(*args)) == []


def test_help_lists_every_command_without_importing_it() -> None:
    modules = loaded_by("--help")
    assert not {spec.partition(":")[0] for spec, _ in COMMANDS.values()} & modules
    result = CliRunner().invoke(cli, ["--help"])
    commands = result.stdout.split("Commands:\n", 1)[1]
    for name in ("check", "decode", "diff", "encode", "golden", "machines", *COMMANDS):
        assert f"\n  {name} " in "\n" + commands
    # the column of help texts starts after the longest command name, whichever that is
    assert re.search(r"\n  decode +Decode a migration stream: every record, section", "\n" + commands)
    assert re.search(r"\n  check +Would a destination QEMU load STREAM\? If not, which rule", "\n" + commands)
    assert re.search(r"\n  golden +Golden-file checks for CI: compare streams with checked-in", "\n" + commands)
    assert "-q, --quiet" in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_help_is_the_commands_own(name: str) -> None:
    """The help `vmig --help` shows from the table is what click would make of the docstring."""
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    stand_in = click.Command(name, help=COMMANDS[name][1])
    for limit in (30, 45, 60, 74, 200):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), limit


def test_lazy_group_lists_without_loading_and_loads_on_lookup() -> None:
    group = LazyGroup("g", lazy={"json": ("json:JSONDecoder", "not a command"),
                                 "m": ("vfio_ramfb_mig.cli.machinescmd:machines_cmd", "List machine types.")})
    ctx = click.Context(group)
    assert group.list_commands(ctx) == ["json", "m"]
    assert "m" not in group.commands
    assert group.get_command(ctx, "m").name == "machines"
    assert group.get_command(ctx, "nope") is None
    with pytest.raises(TypeError, match="not a click command"):
        group.get_command(ctx, "json")


def test_text_decode_imports_only_what_decode_needs() -> None:
    modules = loaded_by("decode", str(BOOTED))
    assert "vfio_ramfb_mig.codec.decode" in modules and "vfio_ramfb_mig.render.tree" in modules
    assert heavy(modules, ("vfio_ramfb_mig.diff", "vfio_ramfb_mig.golden", "vfio_ramfb_mig.compat",
                           "vfio_ramfb_mig.codec.jsonform", "vfio_ramfb_mig.devstream",
                           "vfio_ramfb_mig.codec.encode", "rich.progress")) == []
    modules = loaded_by("decode", "--json", str(BOOTED))
    assert "vfio_ramfb_mig.codec.jsonform" in modules
    assert heavy(modules, ("vfio_ramfb_mig.diff", "vfio_ramfb_mig.golden", "vfio_ramfb_mig.compat",
                           "vfio_ramfb_mig.devstream", "vfio_ramfb_mig.render.tree")) == []


def test_piped_golden_check_imports_no_rich() -> None:
    """Its plain lines need no rich: the import would delay the walk that feeds the hash worker."""
    modules = loaded_by("golden", "check", "-v", str(BOOTED))
    assert "vfio_ramfb_mig.golden.summary" in modules and heavy(modules, ("rich",)) == []
    assert "rich.console" in loaded_by("--color", "golden", "check", str(BOOTED))


def test_package_names_load_on_first_use() -> None:
    code = ("import json, sys, vfio_ramfb_mig as v\n"
            "heavy = sorted(m for m in sys.modules if m.startswith(('rich', 'construct', 'vfio_ramfb_mig.')))\n"
            "names = {n: type(getattr(v, n)).__name__ for n in v.__all__}\n"
            "from vfio_ramfb_mig import *\n"
            "print(json.dumps({'heavy': heavy, 'names': names, 'listed': set(v.__all__) <= set(dir(v))}))\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["heavy"] == []  # importing the package imports nothing heavy
    assert doc["names"] == {"Source": "type", "VmigError": "type", "__version__": "str", "check_stream": "function",
                            "decode": "function", "destination": "function", "diff_streams": "function",
                            "encode": "function", "encode_bytes": "function", "jsonform": "module",
                            "screenshot": "function"}
    assert doc["listed"]
    import vfio_ramfb_mig

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vfio_ramfb_mig.nope  # noqa: B018
    from vfio_ramfb_mig import decode
    from vfio_ramfb_mig.codec.decode import decode as real

    assert decode is real


@pytest.mark.parametrize("args, runs", [([], False), (["--summary"], False), (["--json"], True),
                                        (["--section", "ram"], False)])
def test_text_decode_keeps_no_page_runs(monkeypatch: pytest.MonkeyPatch, args: list[str], runs: bool) -> None:
    import vfio_ramfb_mig.codec.decode as decode_module

    seen: list[dict] = []
    real = decode_module.decode

    def spy(*a, **kw):
        seen.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(decode_module, "decode", spy)
    result = CliRunner().invoke(cli, ["decode", *args, str(BOOTED)])
    assert result.exit_code == 0, result.output
    assert [kw["ram_runs"] for kw in seen] == [runs] and callable(seen[0]["progress"])


@pytest.mark.parametrize("path", sorted(CAPTURES.glob("*.bin")), ids=lambda p: p.name)
def test_tree_and_summary_are_the_same_without_page_runs(path: Path) -> None:
    from rich.console import Console

    from vfio_ramfb_mig import decode
    from vfio_ramfb_mig.render.tree import stream_tree, summary_table

    def text(stream, render) -> str:
        with open(os.devnull, "w") as devnull:
            console = Console(record=True, width=120, no_color=True, file=devnull)
            console.print(render(stream))
        return console.export_text()

    with_runs, without = decode(str(path)), decode(str(path), ram_runs=False)
    for render in (stream_tree, summary_table):
        assert text(with_runs, render) == text(without, render)
