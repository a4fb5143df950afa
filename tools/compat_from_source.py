#!/usr/bin/env python3
"""Read QEMU's machine compat facts out of its source tree, as data (never code or comments).

    python tools/compat_from_source.py QEMU_SRC_7.2 QEMU_SRC_10.0

QEMU 9.1 and later report each machine's compat properties (query-machines); QEMU 7.2
does not, so vmig reads them from its source. For the pc-i440fx, pc-q35 and virt machines
of each tree this script records:

* every GlobalProperty array a machine applies (hw_compat_X_Y in hw/core/machine.c,
  pc_compat_X_Y in hw/i386/pc.c, the boards' own): (driver, property, value, optional),
  with TYPE_* names and PC_CPU_MODEL_IDS() expanded as the preprocessor would for
  qemu-system-x86_64 / qemu-system-aarch64;
* for every machine version, the arrays its options function appends, in the order QEMU
  applies them (each X_Y_options() first calls the next newer one), and the class fields
  the options functions set (``no_tcg_lpa2 = true``, ``smp_props.prefer_sockets = true``,
  ...), the last setting winning.

It checks itself against the QEMU 10.0 binaries: for every pc-i440fx, pc-q35 and virt
machine of the 10.0 tree, the arrays flattened must give exactly the compat properties
data/machines.json.gz recorded from query-machines. Output:
vfio_ramfb_mig/data/compat-source.json.gz.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "vfio_ramfb_mig" / "data"
#: the files that define the arrays and the machines, by family
FAMILY_FILES = {"pc-i440fx": "hw/i386/pc_piix.c", "pc-q35": "hw/i386/pc_q35.c", "virt": "hw/arm/virt.c"}
ARRAY_FILES = ("hw/core/machine.c", "hw/i386/pc.c", "hw/i386/pc_q35.c", "hw/i386/pc_piix.c", "hw/arm/virt.c")
HEADER_DIRS = ("include", "hw", "target/i386", "target/arm")
#: preprocessor symbols of the two targets (the first #define of a name wins, #ifdef branches aside)
_STRING = r'"(?:[^"\\]|\\.)*"'


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


class Macros:
    """Object-like #defines whose bodies are strings and names, and PC_CPU_MODEL_IDS-like function macros."""

    def __init__(self, root: Path) -> None:
        self.simple: dict[str, str] = {}
        self.functions: dict[str, tuple[list[str], str]] = {}
        for base in HEADER_DIRS:
            for path in sorted((root / base).rglob("*")):
                if path.suffix in (".h", ".c") and path.is_file():
                    self._scan(path.read_text(errors="replace"))

    def _scan(self, text: str) -> None:
        text = _strip_comments(text).replace("\\\n", " ")
        for m in re.finditer(r"^\s*#\s*define\s+(\w+)(\(([^)]*)\))?[ \t]+(.*)$", text, re.M):
            name, params, body = m[1], m[3], m[4].strip()
            if params is not None:
                self.functions.setdefault(name, ([p.strip() for p in params.split(",")], body))
            else:
                self.simple.setdefault(name, body)

    def expand(self, expr: str, depth: int = 0) -> str:
        """A C expression of string literals and names -> the string it is (adjacent literals joined)."""
        if depth > 20:
            raise ValueError(f"macro expansion too deep: {expr}")
        out = []
        for tok in re.findall(rf"{_STRING}|\w+|\S", expr.strip()):
            if tok.startswith('"'):
                out.append(json.loads(tok))
            elif tok in self.simple:
                out.append(self.expand(self.simple[tok], depth + 1))
            elif re.fullmatch(r"-?\w+", tok):
                out.append(tok)  # a bare number or name stands for itself
            else:
                raise ValueError(f"cannot evaluate {expr!r}")
        return "".join(out)


def _entries(body: str, macros: Macros) -> list[list[Any]]:
    """The entries of a GlobalProperty initializer: [driver, property, value, optional]."""
    # function-like macros that expand to entries (PC_CPU_MODEL_IDS("2.4.0"))
    def call(m: re.Match[str]) -> str:
        params, text = macros.functions[m[1]]
        args = [a.strip() for a in re.findall(rf"{_STRING}|[^,]+", m[2])]
        for p, a in zip(params, args):
            text = re.sub(rf"\b{re.escape(p)}\b", a, text)
        return text

    names = "|".join(map(re.escape, macros.functions))
    body = re.sub(rf"\b({names})\s*\(([^)]*)\)", call, body)
    entries = []
    for m in re.finditer(r"\{([^{}]*)\}", body):
        parts = [p.strip() for p in _split(m[1]) if p.strip()]
        optional = False
        plain = []
        for p in parts:
            if p.startswith(".optional"):
                optional = p.split("=", 1)[1].strip() == "true"
            elif p.startswith("."):
                plain.append(p.split("=", 1)[1].strip())
            else:
                plain.append(p)
        if len(plain) != 3:
            raise ValueError(f"not a GlobalProperty entry: {m[0]}")
        entries.append([macros.expand(x) for x in plain] + [optional])
    return entries


def _split(text: str) -> list[str]:
    """Split on commas outside string literals."""
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == '"':
            m = re.match(_STRING, text[i:])
            cur += m[0]
            i += len(m[0])
            continue
        if text[i] == ",":
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    return parts


def arrays(root: Path, macros: Macros) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for rel in ARRAY_FILES:
        text = _strip_comments((root / rel).read_text(errors="replace"))
        for m in re.finditer(r"GlobalProperty\s+(\w+)\s*\[\s*\]\s*=\s*\{(.*?)\n?\s*\};", text, re.S):
            found[m[1]] = {"file": rel, "entries": _entries(m[2], macros)}
    return found


def functions(text: str) -> dict[str, str]:
    """static void NAME(MachineClass *x) { body } -> body (bodies without nested braces beyond one level)."""
    out = {}
    for m in re.finditer(r"^static void (\w+)\(MachineClass \*\w+\)\s*\{(.*?)^\}", text, re.S | re.M):
        out[m[1]] = m[2]
    return out


def machines(root: Path, family: str) -> dict[str, str]:
    """machine name -> its options function, from the DEFINE_*_MACHINE lines of the family's file."""
    text = _strip_comments((root / FAMILY_FILES[family]).read_text(errors="replace"))
    kind = {"pc-i440fx": "I440FX", "pc-q35": "Q35", "virt": "VIRT"}[family]
    prefix = {"pc-i440fx": "pc_i440fx", "pc-q35": "pc_q35", "virt": "virt"}[family]
    out = {}
    for m in re.finditer(rf"^DEFINE_{kind}_MACHINE\w*\(([^;]*?)\)\s*;?\s*$", text, re.M | re.S):
        args = [a.strip() for a in _split(m[1].replace("\n", " "))]
        named = [a for a in args if a.startswith('"')]
        if named:  # QEMU 7.2: DEFINE_I440FX_MACHINE(v7_1, "pc-i440fx-7.1", NULL, pc_i440fx_7_1_machine_options)
            out[json.loads(named[0])] = args[-1]
        elif all(a.isdigit() for a in args):  # QEMU 10.0: DEFINE_I440FX_MACHINE(7, 1)
            out[f"{family}-{'.'.join(args)}"] = f"{prefix}_machine_{'_'.join(args)}_options"
    return out


def chain(name: str, funcs: dict[str, str], seen: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]]]:
    """The arrays and class-field settings an options function applies, in order."""
    if name in seen or name not in funcs:
        return [], []
    arrays_: list[str] = []
    options: list[list[str]] = []
    for stmt in re.finditer(r"(\w+)\s*\(([^;]*)\)\s*;|([\w>.\-\[\]]+)\s*=\s*([^;]+);", funcs[name]):
        if stmt[1]:
            callee, args = stmt[1], stmt[2]
            if callee == "compat_props_add":
                arrays_.append(_split(args)[1].strip())
            elif callee in funcs:
                a, o = chain(callee, funcs, (*seen, name))
                arrays_ += a
                options += o
        else:
            lhs = re.sub(r"^\w+->", "", stmt[3])
            if "->" in stmt[3] and lhs not in ("compat_props",):
                options.append([lhs, " ".join(stmt[4].split()), name])
    return arrays_, options


def tree(root: Path) -> dict[str, Any]:
    macros = Macros(root)
    table = arrays(root, macros)
    out: dict[str, Any] = {"version": (root / "VERSION").read_text().strip(), "arrays": {}, "machines": {}}
    used: set[str] = set()
    for family, rel in FAMILY_FILES.items():
        text = _strip_comments((root / rel).read_text(errors="replace"))
        funcs = functions(text)
        # arrays a family's class_init/compat helper adds before any versioned options (arm_virt_compat)
        base = [a for fn, body in funcs.items() for a in re.findall(r"compat_props_add\(\s*\w+->compat_props,\s*(\w+)",
                                                                       body)
                if not fn.endswith("_options")]
        for machine, fn in machines(root, family).items():
            arrays_, options = chain(fn, funcs)
            arrays_ = base + arrays_
            used.update(arrays_)
            settled: dict[str, list[str]] = {}
            for field, value, where in options:
                settled[field] = [value, where]
            out["machines"][machine] = {"family": family, "options_function": fn, "file": rel, "arrays": arrays_,
                                        "options": [[f, v, w] for f, (v, w) in settled.items()]}
    missing = sorted(a for a in used if a not in table)
    if missing:
        raise SystemExit(f"{root}: arrays applied but not found: {', '.join(missing)}")
    out["arrays"] = {name: table[name] for name in sorted(used)}
    return out


def flatten(doc: dict[str, Any], machine: str) -> list[tuple[str, str, str]]:
    return [(d, p, v) for a in doc["machines"][machine]["arrays"] for d, p, v, _ in doc["arrays"][a]["entries"]]


def check_against_binaries(doc: dict[str, Any]) -> None:
    builds = json.loads(gzip.decompress((DATA / "machines.json.gz").read_bytes()))["builds"]
    bad = []
    for b in builds:
        if not b["qemu"].startswith(doc["version"].rsplit(".", 1)[0]):
            continue
        for m in b["machines"]:
            if m["compat_props"] is None or m["name"] not in doc["machines"]:
                continue
            want = [tuple(p) for p in b["tables"]["compat_props"][m["compat_props"]]]
            if flatten(doc, m["name"]) != want:
                bad.append(m["name"])
    if bad:
        raise SystemExit(f"QEMU {doc['version']}: the source gives other compat properties than the binary "
                         f"for {', '.join(bad)}")
    print(f"QEMU {doc['version']}: source tables equal query-machines for every machine the binary reports",
          file=sys.stderr)


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    trees = {}
    for arg in sys.argv[1:]:
        doc = tree(Path(arg))
        check_against_binaries(doc)
        trees[doc["version"]] = doc
        print(f"QEMU {doc['version']}: {len(doc['machines'])} machines, {len(doc['arrays'])} arrays", file=sys.stderr)
    out = {"format": "vmig-compat-source/1",
           "about": "made by tools/compat_from_source.py from QEMU's source trees; do not edit by hand",
           "qemu": trees}
    path = DATA / "compat-source.json.gz"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as dst, gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=9) as gz:
        gz.write(json.dumps(out, separators=(",", ":"), sort_keys=True).encode() + b"\n")
    os.replace(tmp, path)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
