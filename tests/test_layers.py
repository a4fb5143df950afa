"""Imports point down only (design.md "Layers"): every import in the package, run-time, lazy
or under TYPE_CHECKING, goes to a module of the same or a lower layer.

A module that no row of LAYERS places fails the test: new code says where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "vfio_ramfb_mig"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: (rank, module prefixes); a module may import modules of its own rank or lower. The longest
#: matching prefix places a module ("vfio_ramfb_mig.cli" places vfio_ramfb_mig.cli.main).
LAYERS: tuple[tuple[int, tuple[str, ...]], ...] = (
    # front ends: the click CLI, `python -m`, the pytest plugin (golden checks as tests) and the
    # package itself (its __init__ is the public API, importing the layers below on first use)
    (10, ("cli", "__main__", "pytest_plugin", "")),
    (9, ("render",)),
    # compare decoded streams; devstream builds a device's stream from compat's rules (encode --machine)
    (8, ("diff", "golden", "devstream")),
    (7, ("compat",)),
    (6, ("screen",)),
    # guest RAM: the final page state and what is built on it (listing, extract, compare, summaries)
    (5, ("ram",)),
    # ram.walk is the page-record walk the decoder runs for RAM sections, ram.limits the RAM bounds
    # the walk and encode share: below codec, above source
    (4, ("codec", "ram.walk", "ram.limits")),
    # where bytes come from: inputs
    (3, ("source",)),
    (2, ("vmstate",)),
    (1, ("wire",)),
    # no imports from the package but of each other: the model, the exception tree, wire names as
    # text, the version; qemurun (the one QEMU process runner and QMP client) and qemu.py (the capture
    # helper built on it: drives real QEMU, standard library only but for qemurun, errors and outfile's
    # file mode) may be used by any layer; schemas (the JSON Schemas of the outputs, data
    # and a loader); naming (section names, field paths, ignore patterns) is shared by diff, golden
    # and compat; outfile (where every output file is written, vmig's verbs' and the capture helper's);
    # notices (hooks the CLI sets to hear what the library says that is not an error)
    (0, ("model", "errors", "text", "textin", "naming", "version", "qemu", "qemurun", "schemas", "outfile",
         "notices")),
)


def rank(module: str) -> int:
    """The layer of a dotted module name inside the package."""
    assert module == PACKAGE or module.startswith(PACKAGE + "."), module
    inner = module[len(PACKAGE) + 1:]
    best: tuple[int, int] | None = None  # (prefix length, rank)
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if inner == prefix or (prefix and inner.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), layer)
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in {Path(__file__).name}")
    return best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT.parent / relative).with_suffix(".py").exists() or (ROOT.parent / relative / "__init__.py").exists()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a package module in the file, wherever it stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # `from . import jsonform` imports a module; `from .. import __version__` a name
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else target))
    return found


SOURCES = sorted(ROOT.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for path in SOURCES:
        try:
            rank(module_name(path))
        except AssertionError as exc:
            unplaced.append(str(exc))
    assert not unplaced, "\n".join(unplaced)


def test_imports_point_down() -> None:
    upward = []
    for path in SOURCES:
        importer = module_name(path)
        for line, imported in imports(path):
            if rank(imported) > rank(importer):
                upward.append(f"{path.relative_to(ROOT.parent)}:{line}: {importer} (layer {rank(importer)}) "
                              f"imports {imported} (layer {rank(imported)})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


@pytest.mark.parametrize(("module", "expected"), [
    (PACKAGE, 10), (f"{PACKAGE}.cli.main", 10), (f"{PACKAGE}.render.tree", 9), (f"{PACKAGE}.compat.check", 7),
    (f"{PACKAGE}.codec.decode", 4), (f"{PACKAGE}.source.buffer", 3), (f"{PACKAGE}.vmstate.compile", 2),
    (f"{PACKAGE}.wire.stream", 1), (f"{PACKAGE}.errors", 0),
])
def test_rank_places_modules(module: str, expected: int) -> None:
    assert rank(module) == expected


#: what a CLI command may not reach into: the data model and the wire. A command parses options,
#: calls the library and hands the result to render/ (design.md: each CLI command a thin function);
#: a command that walks records or reads fields is doing the library's work
BELOW_THE_CLI = ("model", "wire", "vmstate")


def test_cli_commands_are_thin() -> None:
    reaching = []
    for path in sorted((ROOT / "cli").rglob("*.py")):
        for line, imported in imports(path):
            inner = imported[len(PACKAGE) + 1:]
            if any(inner == layer or inner.startswith(layer + ".") for layer in BELOW_THE_CLI):
                reaching.append(f"{path.relative_to(ROOT.parent)}:{line}: imports {imported}")
    assert not reaching, "CLI code that does the library's work:\n" + "\n".join(reaching)


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    """The walker sees relative, absolute, lazy and TYPE_CHECKING imports."""
    probe = ROOT / "wire" / "stream.py"
    found = dict((m, line) for line, m in imports(probe))
    assert f"{PACKAGE}.wire.primitives" in found
    lazy = ROOT / "cli" / "main.py"
    assert f"{PACKAGE}.codec.decode" in {m for _, m in imports(lazy)}  # imported inside a function


#: third-party libraries and the package prefixes allowed to import them (design.md: construct
#: only in wire/, vmstate/ and codec/, and source/ for the container headers it parses; rich only
#: where output is drawn; click only in the CLI)
LIBRARIES = {
    "construct": ("wire", "vmstate", "codec", "source"),
    "rich": ("render", "cli"),
    "click": ("cli",),
}


def third_party_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) for every absolute import of a module outside the package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return [(line, name) for line, name in found if name != PACKAGE]


def allowed_here(module: str, library: str) -> bool:
    """Whether a package module (dotted, without the package) may import a third-party library."""
    allowed = LIBRARIES.get(library)
    return allowed is None or any(module == p or module.startswith(p + ".") for p in allowed)


def test_libraries_stay_in_their_layers() -> None:
    misplaced = []
    for path in SOURCES:
        inner = module_name(path)[len(PACKAGE) + 1:]
        for line, library in third_party_imports(path):
            if not allowed_here(inner, library):
                misplaced.append(f"{path.relative_to(ROOT.parent)}:{line}: {library} outside "
                                 f"{', '.join(LIBRARIES[library])}")
    assert not misplaced, "\n".join(misplaced)


def test_a_misplaced_library_is_found(tmp_path: Path) -> None:
    """The walker sees lazy and TYPE_CHECKING imports, and the rule refuses them outside their layers."""
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rich.text import Text\n"
                     "def f():\n    import click.testing\n    from . import construct\n")
    assert third_party_imports(probe) == [(1, "typing"), (3, "rich"), (5, "click")]
    assert not allowed_here("ram.walk", "construct") and not allowed_here("diff", "rich")
    assert not allowed_here("render.tree", "click") and not allowed_here("wirex", "construct")
    assert allowed_here("source.buffer", "construct") and allowed_here("cli", "click") and allowed_here("ram", "typing")
