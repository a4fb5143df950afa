"""The machine types of every bundled QEMU build, as the binaries themselves report them.

data/machines.json.gz is written by tools/machines_data.py from the QEMU binaries
(x86_64 and aarch64, QEMU 10.0 and 7.2): ``-machine help`` and ``query-machines``
(compat properties from QEMU 9.1 on) for every machine type, and for every version of
the families vmig judges (pc-i440fx, pc-q35, virt) the facts a stock VM of it gives
when it saves its own state (compat.profile.stream_facts): sections with instance and
version, RAM blocks, TARGET_PAGE_BITS, an arm CPU's cpreg list.

`builds` selects builds by architecture and QEMU series; `Build.machine` resolves a
name (or QEMU's alias) on one build; `guess_arch` reads a stream's architecture.

Imports: errors, model, vmstate.dump.
"""

from __future__ import annotations

import difflib
import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ..errors import CompatError
from ..model import Configuration, MigrationStream
from ..vmstate.dump import Schema, read_dump

DATA_FILE = "machines.json.gz"
DATA_FORMAT = "vmig-machines/1"
#: the families whose every version has stock facts (tools/machines_data.py FAMILIES)
JUDGED_FAMILIES = ("pc-i440fx", "pc-q35", "virt")
#: architecture names vmig accepts for --arch, and what they mean
ARCH_ALIASES = {"x86_64": "x86_64", "x86": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


@dataclass(frozen=True)
class StockFacts:
    """What a stock VM of one machine type writes when it saves itself (see the module doc)."""

    sections: tuple[Mapping[str, Any], ...]
    ram: tuple[tuple[str, int], ...]
    target_page_bits: int | None
    cpus: tuple[tuple[str, int | None, tuple[int, ...]], ...]
    section_footers: bool


@dataclass(frozen=True)
class MachineInfo:
    """One machine type of one build."""

    name: str
    family: str
    version: tuple[int, ...] | None
    alias: str | None
    is_default: bool
    deprecated: bool
    description: str
    default_ram_id: str | None
    default_cpu_type: str | None
    #: (driver, property, value) in the order QEMU applies them; None: the binary does not report them
    compat_props: tuple[tuple[str, str, str], ...] | None
    stock: StockFacts | None
    stock_error: str | None = None


@dataclass(frozen=True)
class Build:
    """One QEMU binary vmig bundles data for."""

    name: str
    qemu: str
    package: str
    arch: str
    binary: str
    stock_args: tuple[str, ...]
    schema_file: str
    capabilities: tuple[str, ...]
    machines: Mapping[str, MachineInfo] = field(repr=False)
    aliases: Mapping[str, str] = field(repr=False)

    @property
    def series(self) -> str:
        return ".".join(self.qemu.split(".")[:2])

    @property
    def version(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.qemu.split("."))

    def describe(self) -> str:
        return f"QEMU {self.qemu} {self.arch} ({self.binary})"

    def schema(self) -> Schema:
        return _schema(self.schema_file, self.qemu, self.arch)

    def find(self, name: str) -> MachineInfo | None:
        wanted = name.strip()
        return self.machines.get(self.aliases.get(wanted, wanted))

    def machine(self, name: str) -> MachineInfo:
        """The machine `name` (or QEMU's alias for it) denotes on this build.

        Raises:
            CompatError: this build has no such machine; the message lists close names.
        """
        found = self.find(name)
        if found is not None:
            return found
        close = difflib.get_close_matches(name, [*self.machines, *self.aliases], n=5, cutoff=0.6)
        raise CompatError(f"{self.describe()} has no machine type {name!r}"
                          + (f"; close: {', '.join(close)}" if close else ""),
                          hint="vmig machines --arch ARCH --qemu VERSION lists them")

    def families(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.family for m in self.machines.values()))


@cache
def _schema(file: str, release: str, arch: str) -> Schema:
    raw = resources.files("vfio_ramfb_mig").joinpath("data", file).read_bytes()
    return read_dump(raw, origin=f"bundled -dump-vmstate of QEMU {release} {arch}")


def _stock(raw: Mapping[str, Any] | None, tables: Mapping[str, Sequence[Any]]) -> tuple[StockFacts | None, str | None]:
    if raw is None:
        return None, None
    if "error" in raw:
        return None, str(raw["error"])
    cpus = tuple((idstr, inst, tuple(tables["cpregs"][i])) for idstr, inst, i in raw["cpus"])
    return StockFacts(sections=tuple(tables["sections"][raw["sections"]]),
                      ram=tuple((r["name"], r["used"]) for r in tables["ram"][raw["ram"]]),
                      target_page_bits=raw["target_page_bits"], cpus=cpus,
                      section_footers=raw["section_footers"]), None


def _build(raw: Mapping[str, Any]) -> Build:
    tables = raw["tables"]
    machines = {}
    for m in raw["machines"]:
        props = None if m["compat_props"] is None else tuple(tuple(p) for p in tables["compat_props"][m["compat_props"]])
        stock, error = _stock(m["stock"], tables)
        machines[m["name"]] = MachineInfo(
            name=m["name"], family=m["family"], version=tuple(m["version"]) if m["version"] else None,
            alias=m["alias"], is_default=m["is_default"], deprecated=m["deprecated"], description=m["description"],
            default_ram_id=m["default_ram_id"], default_cpu_type=m["default_cpu_type"], compat_props=props,
            stock=stock, stock_error=error)
    return Build(name=raw["build"], qemu=raw["qemu"], package=raw["package"], arch=raw["arch"], binary=raw["binary"],
                 stock_args=tuple(raw["stock_args"]), schema_file=raw["schema"],
                 capabilities=tuple(raw["capabilities"]), machines=machines,
                 aliases={m.alias: m.name for m in machines.values() if m.alias})


@cache
def all_builds() -> tuple[Build, ...]:
    raw = resources.files("vfio_ramfb_mig").joinpath("data", DATA_FILE).read_bytes()
    doc = json.loads(gzip.decompress(raw))
    if doc.get("format") != DATA_FORMAT:
        raise CompatError(f"bundled {DATA_FILE} has format {doc.get('format')!r}, expected {DATA_FORMAT}")
    return tuple(_build(b) for b in doc["builds"])


SOURCE_FILE = "compat-source.json.gz"
SOURCE_FORMAT = "vmig-compat-source/1"


@cache
def source_trees() -> Mapping[str, Any]:
    """data/compat-source.json.gz: per QEMU source release, the compat arrays and, per pc/virt
    machine, the arrays it applies in order and the class fields its options functions set
    (tools/compat_from_source.py)."""
    raw = resources.files("vfio_ramfb_mig").joinpath("data", SOURCE_FILE).read_bytes()
    doc = json.loads(gzip.decompress(raw))
    if doc.get("format") != SOURCE_FORMAT:
        raise CompatError(f"bundled {SOURCE_FILE} has format {doc.get('format')!r}, expected {SOURCE_FORMAT}")
    return doc["qemu"]


def source_tree(release: str) -> Mapping[str, Any]:
    """The source facts of the tree nearest `release` (the 7.2.0 tree stands for 7.2.22: the stable
    releases do not touch machine compat)."""
    trees = source_trees()
    if release in trees:
        return trees[release]
    series = ".".join(release.split(".")[:2])
    for name, tree in trees.items():
        if name.startswith(series + "."):
            return tree
    raise CompatError(f"vmig has no source facts of QEMU {release}; it has {', '.join(trees)}")


@dataclass(frozen=True)
class SourceCompat:
    """A machine's compat properties and class options as QEMU's source sets them."""

    release: str
    #: (driver, property, value, array, file) in the order QEMU applies them
    props: tuple[tuple[str, str, str, str, str], ...]
    #: (field, value, function) of the class fields the options functions set (last one wins)
    options: tuple[tuple[str, str, str], ...]
    options_file: str


def source_compat(build: Build, machine: str) -> SourceCompat | None:
    """The source facts of `machine` on `build`'s QEMU, None when vmig has none for it."""
    try:
        tree = source_tree(build.qemu)
    except CompatError:
        return None
    row = tree["machines"].get(machine)
    if row is None:
        return None
    props = tuple((d, p, v, name, tree["arrays"][name]["file"]) for name in row["arrays"]
                  for d, p, v, _ in tree["arrays"][name]["entries"])
    return SourceCompat(tree["version"], props, tuple(tuple(o) for o in row["options"]), row["file"])


def normalize_arch(arch: str) -> str:
    try:
        return ARCH_ALIASES[arch.strip().lower()]
    except KeyError:
        known = ", ".join(sorted({b.arch for b in all_builds()}))
        raise CompatError(f"unknown architecture {arch!r}; vmig knows {known}") from None


def builds(arch: str | None = None, qemu: str | None = None) -> tuple[Build, ...]:
    """The bundled builds of an architecture and/or QEMU version ("10.0", "7.2", "10.0.2")."""
    found = all_builds()
    if arch is not None:
        wanted = normalize_arch(arch)
        found = tuple(b for b in found if b.arch == wanted)
    if qemu is not None:
        parts = qemu.strip().split(".")
        found = tuple(b for b in found if b.qemu.split(".")[: len(parts)] == parts)
    return found


def bundled_builds(arch: str | None = None, qemu: str | None = None) -> tuple[Build, ...]:
    """`builds`, never empty: a CompatError names the builds vmig bundles when none fits."""
    found = builds(arch, qemu)
    if not found:
        raise CompatError(f"vmig bundles no QEMU build for {' '.join(filter(None, (arch, qemu)))}; it has "
                          + ", ".join(f"{b.arch} {b.qemu}" for b in all_builds()))
    return found


def machine_on(name: str, among: Sequence[Build]) -> list[tuple[Build, MachineInfo]]:
    """Machine type `name` (canonical, or an alias such as q35) on each of `among` that has it; for a
    family vmig knows, only its architecture's builds (all of `among` when none of them is).

    Raises:
        CompatError: no build has it (naming the close names the first build has).
    """
    from .machines import FAMILY_ARCH, MachineType, parse_machine_name

    parsed = parse_machine_name(name)
    wanted = MachineType(parsed.family, parsed.version).name if parsed and parsed.version else name
    if parsed is not None:
        among = tuple(b for b in among if b.arch == FAMILY_ARCH[parsed.family]) or among
    found = [(b, m) for b in among if (m := b.find(wanted)) is not None]
    if not found:
        among[0].machine(wanted)  # raises, listing close names
    return found


def build_for(arch: str, qemu: str | tuple[int, ...]) -> Build | None:
    """The bundled build of `arch` for QEMU `qemu` (its series), or None."""
    series = qemu if isinstance(qemu, str) else ".".join(map(str, qemu[:2]))
    series = ".".join(series.split(".")[:2])
    return next((b for b in builds(arch) if b.series == series), None)


def arch_of_machine(name: str) -> tuple[str, ...]:
    """The architectures whose bundled builds have machine `name` (or a machine of that family)."""
    found = []
    for b in all_builds():
        info = b.find(name)
        family = info.family if info else _family_of(name)
        if info is not None or family in b.families():
            found.append(b.arch)
    return tuple(dict.fromkeys(found))


def _family_of(name: str) -> str:
    head, sep, tail = name.rpartition("-")
    return head if sep and tail.replace(".", "").isdigit() else name


def stream_machine_archs(name: str) -> tuple[str, ...]:
    """The architectures whose bundled builds could have written machine type `name` into a stream.
    A stream names its machine's canonical type, never an alias (q35, pc, and aarch64's virt stand
    for versioned types), so `name` must be one of a build's machines, or a versioned name of one of
    its families (a newer QEMU's). riscv64's unversioned virt is then none of aarch64's."""
    family = _family_of(name)
    found = [b.arch for b in all_builds()
             if name in b.machines or (family != name and family in b.families())]
    return tuple(dict.fromkeys(found))


@cache
def _known_vmsd_names(arch: str) -> frozenset[str]:
    """The vmsd names an architecture's bundled builds know: their -dump-vmstate, and the sections
    their stock VMs were seen to write (cpu, globalstate, PCIBUS... have no device of their own)."""
    names: set[str] = set()
    for b in all_builds():
        if b.arch == arch:
            names.update(b.schema().vmsds)
            for m in b.machines.values():
                names.update(row["vmsd"] for row in (m.stock.sections if m.stock is not None else ()))
    return frozenset(names)


#: the share of a stream's vmsd names an architecture must know for its sections to say it wrote it
_SECTIONS_KNOWN = 0.9


def guess_arch(stream: MigrationStream) -> tuple[str | None, str]:
    """The architecture that wrote `stream`, and why vmig thinks so (None: cannot tell).

    In this order: the machine type (when one architecture's builds could have written it, see
    `stream_machine_archs`); the configuration's target-page-bits subsection (only targets whose
    page size varies, of the bundled ones aarch64, send it); the sections (the architecture whose
    builds know nearly all of the stream's vmsd names: a stream of another architecture, such as
    riscv64's virt, is none of theirs).
    """
    config = next((r for r in stream.records if isinstance(r, Configuration)), None)
    if config is not None:
        archs = stream_machine_archs(config.machine)
        if len(archs) == 1:
            return archs[0], f"machine type {config.machine} (only {archs[0]} builds have it)"
        if any(s.name == "configuration/target-page-bits" for s in config.subsections):
            return "aarch64", "the configuration carries target-page-bits (x86 never sends it)"
    names = {s.body.vmsd_name for s in stream.sections if hasattr(s.body, "vmsd_name")}
    if names:
        scores = {arch: len(names & _known_vmsd_names(arch)) for arch in dict.fromkeys(b.arch for b in all_builds())}
        best = sorted(scores.items(), key=lambda kv: -kv[1])
        if best and best[0][1] > (best[1][1] if len(best) > 1 else 0) and best[0][1] >= _SECTIONS_KNOWN * len(names):
            return best[0][0], f"its sections ({best[0][1]} of {len(names)} vmsd names are {best[0][0]}'s)"
        unknown = sorted(names - set().union(*(_known_vmsd_names(a) for a in scores)))
        if unknown:
            return None, (f"{len(unknown)} of its {len(names)} vmsd names are no bundled build's "
                          f"({', '.join(unknown[:4])}{', ...' if len(unknown) > 4 else ''})")
    return None, "neither the machine type, the configuration nor the sections tell"
