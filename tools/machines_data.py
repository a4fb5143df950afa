#!/usr/bin/env python3
"""Regenerate vmig's bundled machine data from the QEMU binaries themselves.

    python tools/machines_data.py                       # every build found (see BUILDS)
    python tools/machines_data.py --only aarch64-10.0   # one build

For each QEMU build (x86_64 and aarch64, QEMU 10.0 and 7.2) it asks the binary:

* ``-machine help``: every machine type, its alias, default and deprecation;
* ``query-machines`` (with ``compat-props`` on QEMU 9.1 and later): default RAM id and
  CPU type, and each machine's compat properties in the order QEMU applies them;
* for every machine of the versioned families vmig judges (pc-i440fx, pc-q35, virt):
  a stock VM of it (STOCK_ARGS), paused, saves its own state; vmig decodes it
  (compat.profile.stream_facts) into the sections, instances and versions the machine
  has, its RAM blocks, TARGET_PAGE_BITS and, on aarch64, the CPU's cpreg list;
* ``-dump-vmstate`` for the aarch64 builds (the x86 ones are bundled already).

It writes vfio_ramfb_mig/data/machines.json.gz and vmstate-qemu-<release>-aarch64.json.gz,
gzip with mtime 0 so an unchanged result is byte-identical. QEMU 7.2's compat properties
are not reported by the binary; they come from tools/compat_from_source.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfio_ramfb_mig.codec.decode import decode  # noqa: E402
from vfio_ramfb_mig.compat.profile import save_own_state, stream_facts  # noqa: E402
from vfio_ramfb_mig.qemurun import QemuRun, run_once  # noqa: E402
from vfio_ramfb_mig.errors import VmigError  # noqa: E402

DATA = ROOT / "vfio_ramfb_mig" / "data"
Q72 = Path(os.environ.get("VMIG_Q72_PREFIX", "/opt/qemu-7.2"))
#: (name, binary argv prefix) of every build vmig bundles data for
BUILDS: dict[str, list[str]] = {
    "x86_64-10.0": ["qemu-system-x86_64"],
    "x86_64-7.2": [str(Q72 / "usr/bin/qemu-system-x86_64"), "-L", str(Q72 / "usr/share/qemu"),
                   "-L", str(Q72 / "usr/share/seabios"), "-L", str(Q72 / "usr/lib/ipxe/qemu")],
    "aarch64-10.0": ["qemu-system-aarch64"],
    "aarch64-7.2": [str(Q72 / "usr/bin/qemu-system-aarch64"), "-L", str(Q72 / "usr/share/qemu")],
}
#: the families whose every version gets a stock profile
FAMILIES = ("pc-i440fx", "pc-q35", "virt")
BASE = ["-accel", "tcg", "-m", "16M", "-nodefaults", "-display", "none", "-net", "none", "-no-user-config"]
#: what a stock VM of each architecture runs with (aarch64: the CPU real-world-captures.md uses)
STOCK_ARGS = {"x86_64": BASE, "aarch64": [*BASE, "-cpu", "cortex-a57"]}
VERSIONED = re.compile(r"^(?P<family>.+?)-(?P<version>\d+\.\d+(?:\.\d+)?)$")
TIMEOUT = 60.0


def machine_help(prefix: list[str]) -> list[dict[str, Any]]:
    status, out, err = run_once([*prefix, "-machine", "help"], timeout=TIMEOUT, what="-machine help")
    if status != 0:
        raise SystemExit(f"{prefix[0]} -machine help failed: {err.strip()}")
    rows = []
    for line in out.splitlines()[1:]:
        m = re.match(r"^(\S+)\s+(.*)$", line)
        if not m:
            continue
        name, text = m.groups()
        alias = re.search(r"\(alias of (\S+)\)", text)
        rows.append({"name": alias[1] if alias else name, "listed_as": name, "alias_line": bool(alias),
                     "description": re.sub(r"\s*\((alias of \S+|default|deprecated)\)", "", text).strip(),
                     "default": "(default)" in text, "deprecated_help": "(deprecated)" in text})
    return rows


def query(prefix: list[str]) -> dict[str, Any]:
    with QemuRun([*prefix, "-M", "none", "-S", "-display", "none", "-nodefaults"], timeout=TIMEOUT,
                 what="query-machines") as run:
        greeting = run.connect()
        q = greeting["version"]["qemu"]
        version = (q["major"], q["minor"], q["micro"])
        machines = run.cmd("query-machines", {"compat-props": True} if version[:2] >= (9, 1) else None)
        caps = [c["capability"] for c in run.cmd("query-migrate-capabilities")]
        arch = run.cmd("query-target")["arch"]
        run.quit()
    return {"version": ".".join(map(str, version)), "package": greeting["version"].get("package", "").strip(),
            "arch": arch, "machines": machines, "capabilities": caps}


def stock(prefix: list[str], arch: str, machine: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vmig-machines-") as tmp:
        out = Path(tmp) / "own.bin"
        try:
            save_own_state([*prefix, "-M", machine, *STOCK_ARGS[arch]], TIMEOUT, out)
        except Exception as exc:  # a machine that cannot run stock: say why in the data
            return {"error": str(exc)}
        try:
            facts = stream_facts(decode(str(out), ram_runs=False))
        except VmigError as exc:  # e.g. machines from before section footers and vmdesc
            return {"error": f"vmig cannot decode its own state: {exc}"}
    return {k: facts[k] for k in ("sections", "ram", "target_page_bits", "cpus", "section_footers")}


def intern(table: list[Any], value: Any) -> int:
    """Index of `value` in `table`, appending it when new (identical lists are stored once)."""
    key = json.dumps(value, sort_keys=True)
    for i, row in enumerate(table):
        if json.dumps(row, sort_keys=True) == key:
            return i
    table.append(value)
    return len(table) - 1


def build(name: str, prefix: list[str], jobs: int) -> dict[str, Any]:
    asked = query(prefix)
    arch, release = asked["arch"], asked["version"]
    helped = {row["name"]: row for row in machine_help(prefix) if not row["alias_line"]}
    tables: dict[str, list[Any]] = {"sections": [], "compat_props": [], "cpregs": [], "ram": []}
    machines = []
    todo = []
    for info in sorted(asked["machines"], key=lambda m: m["name"]):
        mname = info["name"]
        m = VERSIONED.match(mname)
        family = m["family"] if m else mname
        version = [int(p) for p in m["version"].split(".")] if m else None
        row = {"name": mname, "family": family, "version": version, "alias": info.get("alias"),
               "is_default": bool(info.get("is-default", False)), "deprecated": bool(info.get("deprecated", False)),
               "description": helped.get(mname, {}).get("description", ""),
               "default_ram_id": info.get("default-ram-id"), "default_cpu_type": info.get("default-cpu-type"),
               "compat_props": None, "stock": None}
        if "compat-props" in info:
            props = [[p["qom-type"], p["property"], p["value"]] for p in info["compat-props"]]
            row["compat_props"] = intern(tables["compat_props"], props)
        machines.append(row)
        if family in FAMILIES and version is not None:
            todo.append(row)
    print(f"{name}: QEMU {release} {arch}: {len(machines)} machines, {len(todo)} stock profiles", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda r: stock(prefix, arch, r["name"]), todo))
    for row, facts in zip(todo, results):
        if "error" in facts:
            print(f"  {row['name']}: {facts['error']}", file=sys.stderr)
            row["stock"] = {"error": facts["error"]}
            continue
        cpus = [[c["idstr"], c["instance_id"], intern(tables["cpregs"], c["cpreg_indexes"])] for c in facts["cpus"]]
        row["stock"] = {"sections": intern(tables["sections"], facts["sections"]),
                        "ram": intern(tables["ram"], facts["ram"]),
                        "target_page_bits": facts["target_page_bits"], "cpus": cpus,
                        "section_footers": facts["section_footers"]}
    schema_file = f"vmstate-qemu-{release}.json.gz" if arch == "x86_64" else f"vmstate-qemu-{release}-{arch}.json.gz"
    if arch != "x86_64":
        with tempfile.TemporaryDirectory(prefix="vmig-machines-") as tmp:
            raw = Path(tmp) / "dump.json"
            status, _, err = run_once([*prefix, "-M", "virt", *STOCK_ARGS[arch], "-dump-vmstate", str(raw)],
                                      timeout=TIMEOUT, what="-dump-vmstate")
            if status != 0:
                raise SystemExit(f"{name}: -dump-vmstate failed: {err.strip()}")
            write_gz(DATA / schema_file, raw.read_bytes())
    return {"build": name, "qemu": release, "package": asked["package"], "arch": arch, "binary": Path(prefix[0]).name,
            "stock_args": STOCK_ARGS[arch], "schema": schema_file, "capabilities": asked["capabilities"],
            "machines": machines, "tables": tables}


def write_gz(path: Path, raw: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as dst, gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(BUILDS), help="only these builds (repeatable)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="stock VMs run at once (default 2)")
    args = parser.parse_args()
    out = DATA / "machines.json.gz"
    old = {}
    if out.exists():
        old = {b["build"]: b for b in json.loads(gzip.decompress(out.read_bytes()))["builds"]}
    builds = dict(old)
    for name in args.only or BUILDS:
        builds[name] = build(name, BUILDS[name], args.jobs)
    doc = {"format": "vmig-machines/1",
           "about": "made by tools/machines_data.py from the QEMU binaries; do not edit by hand",
           "builds": [builds[name] for name in BUILDS if name in builds]}
    write_gz(out, json.dumps(doc, separators=(",", ":")).encode() + b"\n")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
