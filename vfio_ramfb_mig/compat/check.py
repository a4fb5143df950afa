"""Would a destination QEMU load this stream? The load verdict, rule by rule, with QEMU's own words.

A destination is a QEMU version (its `-dump-vmstate`, bundled for 10.0 and 7.2,
or given as a file), a machine type, the devices it has beyond the machine's
own (`-device`), its validated migration capabilities and, optionally, its RAM
size. `check_stream` replays what QEMU's loader does with the stream, in stream
order, and returns a `Verdict`: one `Finding` per rule that fails, each naming
the rule, where in the stream (record index, offset, path), and the lines QEMU
prints; `Verdict.qemu_output` is exactly what QEMU would print for the first
failure (and, when the stream loads, its warnings).

Which savevm entries a destination has (QEMU's `find_se`):

* the machine's own: the sections a stock pc/q35 machine of that QEMU writes,
  taken from real captures (bundled as data/destinations.json.gz; a section is
  matched by idstr and instance, e.g. ``dma`` 0 and 1, ``0000:00:1f.0/ICH9LPC``);
* always-present `SaveVMHandlers` entries (``ram``);
* one per ``--device TYPE``: its vmsd from the dump (``ramfb`` -> ``ramfb-dev``,
  ``virtio-rng-pci`` -> ``virtio-rng`` of ``virtio-rng-device``), ``vfio-pci`` ->
  the ``…/vfio`` handler; a type without a vmsd adds nothing. A device's section
  may sit at any PCI path (vmig does not know the destination's slots).

Versions and subsections come from the dump (``version_id``, ``minimum_version_id``,
``Subsections``, recursively, looked up by vmsd name); for state registered without
``dc->vmsd`` (``cpu``, ``timer``, ...) from the captures (version, and the
subsections seen, which can only confirm a subsection, never refute one); for
VFIO from `VERSION_FACTS` (``VFIOPCIDevice/VFIODisplay`` exists from QEMU 8.2).

Imports: errors, model, compat.machines, vmstate.dump, text.
References: migration/savevm.c (qemu_loadvm_state_header, configuration_post_load,
configuration_validate_capabilities, get_capability, qemu_loadvm_section_start_full,
find_se, check_section_footer, qemu_loadvm_state), migration/vmstate.c
(vmstate_load_state, vmstate_subsection_load), migration/migration.c
(process_incoming_migration_co: "load of migration failed"), migration/ram.c
(ram_load_precopy, parse_ramblock), system/physmem.c (qemu_ram_resize),
hw/vfio/migration.c (vfio_load_device_config_state), hw/vfio/pci.c (vmstate_vfio_pci_config).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..text import printable
from ..errors import CompatError, pointer
from ..model import (
    Command,
    Configuration,
    Field,
    MigrationStream,
    OpaqueBody,
    RamBody,
    RamMemSize,
    Section,
    StructValue,
    Subsection,
    VfioBody,
    VmstateBody,
)
from ..vmstate.dump import BUNDLED, BUNDLED_RELEASE, Schema, bundled_schema, read_dump
from .machines import resolve_machine

DATA_FILE = "destinations.json.gz"
DATA_FORMAT = "vmig-destinations/1"

EINVAL = "Invalid argument"
ENOENT = "No such file or directory"
#: vbasedev->name of a vfio-pci device is the *host* device (e.g. 0000:01:00.0); vmig cannot know it
VFIO_HOST_NAME = "<host device>"
VFIO_DISPLAY = "VFIOPCIDevice/VFIODisplay"
#: x86: TARGET_PAGE_BITS is 12 (configuration_post_load compares the received value with it)
X86_TARGET_PAGE_BITS = 12


# ================================================================ facts that depend on the QEMU version


@dataclass(frozen=True, slots=True)
class VersionFact:
    """Something a QEMU release has from `since` on, with where QEMU defines it."""

    name: str
    since: tuple[int, int]
    source: str


VERSION_FACTS: tuple[VersionFact, ...] = (
    VersionFact("VFIOPCIDevice/VFIODisplay", (8, 2),
                "hw/vfio/pci.c vmstate_vfio_pci_config .subsections = vmstate_vfio_display (added in 8.2 with "
                "ramfb migration; 7.2's VFIOPCIDevice has no subsections)"),
    VersionFact("ramfb-dev", (8, 2),
                "hw/display/ramfb-standalone.c ramfb_dev_vmstate (added in 8.2; not in QEMU 7.2.22's -dump-vmstate)"),
    VersionFact("vfio-migration-by-default", (8, 1),
                "hw/vfio/pci.c enable-migration (OnOffAuto, default auto) since 8.1; before it the experimental "
                "x-enable-migration (bool, default off: no savevm entry; checked on 7.2.22 -device vfio-pci,help)"),
    VersionFact("command:SWITCHOVER_START", (10, 0),
                "migration/savevm.c mig_cmd_args MIG_CMD_SWITCHOVER_START (cmd 11, new in 10.0; 7.2.22 refuses it: "
                "checked)"),
    VersionFact("validate:x-ignore-shared", (4, 2),
                "migration/savevm.c should_validate_capability (checked on 7.2.22 and 10.0.2)"),
    VersionFact("validate:mapped-ram", (9, 0),
                "migration/savevm.c should_validate_capability; mapped-ram exists from 9.0 (qapi/migration.json)"),
)


def has_fact(version: tuple[int, ...] | None, name: str) -> bool | None:
    """Does QEMU `version` have it? None when the version is unknown."""
    if version is None:
        return None
    fact = next(f for f in VERSION_FACTS if f.name == name)
    return tuple(version[:2]) >= fact.since


# ================================================================ results


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fails (or a warning/note) for one place in the stream.

    `messages` are the lines QEMU prints for it (without QEMU's program-name prefix and
    without the final "load of migration failed" line); `errno` is the strerror that
    final line carries. `severity` is "refused" (QEMU fails the load), "warning" (QEMU
    prints it and goes on) or "note" (vmig could not verify something).
    """

    rule_id: str
    severity: str
    summary: str
    messages: tuple[str, ...]
    source: str
    record: int | None = None
    offset: int | None = None
    pointer: str = ""
    path: str = ""
    errno: str | None = None
    #: QEMU goes on checking after this one and reports the next too (capabilities)
    continues: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """A savevm entry the destination has: what `find_se` can find."""

    vmsd_name: str
    idstr: str | None  # None: a --device whose PCI path vmig does not know (matches any path)
    instance_id: int | None
    origin: str


@dataclass(frozen=True)
class VmsdKnowledge:
    """What vmig knows of one vmsd (or handler) at the destination."""

    name: str
    version_id: int | None
    minimum_version_id: int | None
    #: None: unknown; else the complete list of subsection names
    subsections: tuple[str, ...] | None
    #: subsections seen in captures of this QEMU (confirm only)
    seen: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True)
class Destination:
    """Where the stream is to be loaded."""

    qemu: str | None  # "10.0.2", "7.2.22", or what the user gave
    version: tuple[int, ...] | None
    machine: str
    devices: tuple[str, ...]
    capabilities: frozenset[str]
    memory: int | None
    schema: Schema
    entries: tuple[Entry, ...]
    #: vmsd name -> knowledge for state without dc->vmsd (from captures / built-in facts)
    extra: Mapping[str, VmsdKnowledge]
    #: validated capabilities of this QEMU, in QAPI enum order (None: unknown)
    validated: tuple[str, ...] | None
    #: every capability this QEMU knows, in QAPI enum order (None: unknown)
    known_capabilities: tuple[str, ...] | None
    notes: tuple[str, ...] = ()
    #: the destination's migration property send-section-footer (default on)
    section_footers: bool = True

    def describe(self) -> str:
        parts = [f"QEMU {self.qemu}" if self.qemu else "QEMU (version unknown)", self.machine]
        if self.devices:
            parts.append("devices " + ", ".join(self.devices))
        if self.capabilities:
            parts.append("capabilities " + ", ".join(sorted(self.capabilities)))
        if self.memory:
            parts.append(f"memory {self.memory:#x}")
        if not self.section_footers:
            parts.append("send-section-footer=off")
        return ", ".join(parts)

    def knowledge(self, vmsd_name: str) -> VmsdKnowledge | None:
        info = self.schema.vmsd(vmsd_name)
        extra = self.extra.get(vmsd_name)
        if info is not None:
            return VmsdKnowledge(info.name, info.version_id, info.minimum_version_id, info.subsection_names,
                                 extra.seen if extra else (), origin=self.schema.origin)
        return extra


@dataclass(frozen=True)
class Verdict:
    """`check_stream`'s answer. `loadable` is False iff some finding is "refused"."""

    destination: Destination
    findings: tuple[Finding, ...]
    #: what QEMU prints: the first failure's lines and "load of migration failed: ...", or its warnings
    qemu_output: tuple[str, ...]
    stream: str | None = None

    @property
    def loadable(self) -> bool:
        return not self.refusals

    @property
    def refusals(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "refused")

    @property
    def first(self) -> Finding | None:
        return next(iter(self.refusals), None)


# ================================================================ bundled data


@lru_cache(maxsize=1)
def destinations_data() -> dict[str, Any]:
    """The bundled per-QEMU knowledge derived from real captures (see `build_destinations_data`)."""
    raw = resources.files("vfio_ramfb_mig").joinpath("data", DATA_FILE).read_bytes()
    doc = json.loads(gzip.decompress(raw))
    if doc.get("format") != DATA_FORMAT:
        raise CompatError(f"bundled {DATA_FILE} has format {doc.get('format')!r}, expected {DATA_FORMAT}")
    return doc


def section_vmsd_name(section: Section) -> str:
    """The vmsd (or handler) name of a section: the decoded body's, else the idstr's last component."""
    if isinstance(section.body, VmstateBody):
        return section.body.vmsd_name
    return section.idstr.rsplit("/", 1)[-1]


def build_destinations_data(captures: Iterable[tuple[str, MigrationStream, Mapping[str, Any]]],
                            schemas: Mapping[str, Schema]) -> dict[str, Any]:
    """Derive the bundled data from real captures (name, decoded stream, sidecar).

    Per QEMU series: the capability names in QAPI order (from a sidecar's
    query-migrate-capabilities); per machine family, the sections every device-less
    capture writes (their union); and for vmsds absent from the -dump-vmstate
    (registered without dc->vmsd), the version and the subsections seen in any capture.
    """
    out: dict[str, Any] = {"format": DATA_FORMAT,
                           "about": "derived by vfio_ramfb_mig.compat.check.build_destinations_data from real "
                                    "captures; do not edit by hand",
                           "qemu": {}}
    for name, stream, meta in captures:
        release = meta["qemu"]["version"]
        series = ".".join(release.split(".")[:2])
        entry = out["qemu"].setdefault(series, {"release": release, "capabilities": [], "families": {},
                                                "vmsds": {}})
        listed = meta.get("query_migrate_capabilities") or []
        listed = listed.get("return", []) if isinstance(listed, Mapping) else listed
        caps = [c["capability"] for c in listed]
        if caps and not entry["capabilities"]:
            entry["capabilities"] = caps
        schema = schemas[series]
        config = stream.configuration
        family = _family(config.machine) if config else None
        if family and not meta.get("devices"):
            fam = entry["families"].setdefault(family, {"from": [], "sections": []})
            fam["from"].append(name)
            for section in stream.sections:
                if not section.long_header:
                    continue
                row = [section.idstr, section.instance_id, section_vmsd_name(section), section.version_id]
                if row not in fam["sections"]:
                    fam["sections"].append(row)
        for section in stream.sections:
            if section.type != "section_full" or not isinstance(section.body, VmstateBody):
                continue
            vmsd = section.body.vmsd_name
            if schema.vmsd(vmsd) is not None:
                continue
            known = entry["vmsds"].setdefault(vmsd, {"version_id": section.version_id, "subsections_seen": []})
            for sub in _all_subsections(section.body.fields, section.body.subsections):
                if sub not in known["subsections_seen"]:
                    known["subsections_seen"].append(sub)
    for entry in out["qemu"].values():
        for fam in entry["families"].values():
            fam["from"].sort()
        for known in entry["vmsds"].values():
            known["subsections_seen"].sort()
        entry["vmsds"] = dict(sorted(entry["vmsds"].items()))
    return out


def _all_subsections(fields: Sequence[Field], subsections: Sequence[Subsection]) -> Iterator[str]:
    for f in fields:
        values = f.value if isinstance(f.value, list) else [f.value]
        for v in values:
            if isinstance(v, StructValue):
                yield from _all_subsections(v.fields, v.subsections)
    for s in subsections:
        yield s.name
        yield from _all_subsections(s.fields, s.subsections)


# ================================================================ building a destination

_MACHINE_RE = re.compile(r"^(?P<family>pc-i440fx|pc-q35|pc|q35)-(?P<version>\d+(?:\.\d+){1,2})$")
_SIZE_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgGtT]?)(?:i?[bB])?$")


def parse_version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.strip().split("."))
    except ValueError:
        raise CompatError(f"bad QEMU version {text!r}; expected e.g. 10.0, 7.2 or 8.2.1") from None


def parse_size(value: int | str) -> int:
    """QEMU's -m spelling: a number of MiB, or with a k/M/G/T suffix."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value.strip())
    if not match:
        raise CompatError(f"bad memory size {value!r}; expected e.g. 16M, 1G or 512")
    scale = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[match["unit"].lower()]
    return int(float(match["n"]) * scale)


def _family(machine: str) -> str | None:
    match = _MACHINE_RE.match(machine)
    if not match:
        return None
    return {"pc": "pc-i440fx", "q35": "pc-q35"}.get(match["family"], match["family"])


def resolve_destination_machine(name: str, version: tuple[int, ...] | None) -> str:
    """A canonical machine name that QEMU `version` has; aliases pc/q35 name that QEMU's newest."""
    wanted = name.strip()
    if version is not None and tuple(version[:2]) == (10, 0):
        return resolve_machine(wanted).name
    if wanted in ("pc", "q35"):
        if version is None:
            raise CompatError(f"machine alias {wanted!r} needs the QEMU version (--qemu)")
        return f"{'pc-i440fx' if wanted == 'pc' else 'pc-q35'}-{version[0]}.{version[1]}"
    match = _MACHINE_RE.match(wanted)
    if not match:
        raise CompatError(f"unknown machine type {wanted!r}; vmig judges pc-i440fx-X.Y and pc-q35-X.Y machines",
                          hint="e.g. --target pc-q35-8.1")
    family = {"pc": "pc-i440fx", "q35": "pc-q35"}.get(match["family"], match["family"])
    canonical = f"{family}-{match['version']}"
    mversion = parse_version(match["version"])
    if version is not None and mversion[:2] > tuple(version[:2]):
        raise CompatError(f"QEMU {'.'.join(map(str, version))} has no machine type {canonical!r}; its newest is "
                          f"{family}-{version[0]}.{version[1]}")
    return canonical


def _series_for(version: tuple[int, ...] | None) -> str | None:
    if version is None:
        return None
    series = f"{version[0]}.{version[1]}"
    return series if series in BUNDLED else None


def _nearest_series(version: tuple[int, ...] | None) -> str:
    bundled = sorted(BUNDLED, key=parse_version)
    if version is None:
        return bundled[-1]
    return min(bundled, key=lambda s: (abs(parse_version(s)[0] * 100 + parse_version(s)[1]
                                           - version[0] * 100 - version[1]), s))


def _device_spec(spec: str) -> tuple[str, dict[str, str]]:
    qom, _, rest = spec.partition(",")
    props = dict(p.partition("=")[::2] for p in rest.split(",") if p)
    return qom.strip(), props


def _vfio_migrates(version: tuple[int, ...] | None, props: Mapping[str, str]) -> bool:
    """Does a vfio-pci device register its savevm entry? (vmig assumes the host device supports migration.)"""
    on = ("on", "true", "yes", "y")
    if has_fact(version, "vfio-migration-by-default") is False:
        return props.get("x-enable-migration", "off") in on
    return props.get("enable-migration", "auto") != "off"


def device_vmsd(schema: Schema, device: str) -> str | None:
    """The vmsd name a `-device TYPE` adds, or "vfio" (the handler), or None (no vmstate)."""
    qom = device.split(",", 1)[0].strip()
    if qom in ("vfio-pci", "vfio-pci-nohotplug"):
        return "vfio"
    info = schema.vmsd_of_type(qom)
    if info is None and qom.endswith("-pci"):
        # virtio PCI proxies: the state is the virtio device's (virtio-rng-pci -> virtio-rng-device)
        info = schema.vmsd_of_type(qom[:-4] + "-device")
    return info.name if info is not None else None


#: devices that bring further savevm entries with them (a bridge's secondary bus registers a PCIBUS)
DEVICE_EXTRA_VMSDS: Mapping[str, tuple[str, ...]] = {
    "pcie-root-port": ("PCIBUS",),
    "pci-bridge": ("PCIBUS",),
    "pcie-pci-bridge": ("PCIBUS",),
    "x3130-upstream": ("PCIBUS",),
    "xio3130-downstream": ("PCIBUS",),
}


def destination(*, qemu: str | None = None, machine: str | None = None, devices: Sequence[str] = (),
                schema: str | Path | Schema | None = None, capabilities: Sequence[str] = (),
                memory: int | str | None = None, section_footers: bool = True) -> Destination:
    """Describe a destination.

    Args:
        qemu: its QEMU version ("10.0", "7.2", "10.0.2", ...). Versions other than the bundled
            10.0 and 7.2 need `schema`.
        machine: its machine type (canonical, or the pc/q35 aliases); default: the `schema` file's.
        devices: `-device` arguments beyond the machine's own (properties after ',' are ignored).
        schema: its `-dump-vmstate` (a path, plain or .gz, or a read `Schema`).
        capabilities: migration capabilities set on it (only validated ones matter).
        memory: its RAM size (`-m`: bytes, or "16M"); pc.ram must match the stream's.
        section_footers: its `-global migration.send-section-footer` (on by default; only Xen turns it off).

    Raises:
        CompatError: the destination cannot exist (unknown machine for that QEMU, no schema).
    """
    version = parse_version(qemu) if qemu else None
    notes: list[str] = []
    if schema is None:
        series = _series_for(version)
        if series is None:
            raise CompatError(f"vmig bundles the -dump-vmstate of QEMU {', '.join(BUNDLED)} only"
                              + (f", not {qemu}" if qemu else "; give --qemu"),
                              hint="give the destination's dump: qemu-system-x86_64 -M <machine> -dump-vmstate FILE, "
                                   "then --schema FILE")
        loaded = bundled_schema(series)
        release = BUNDLED_RELEASE[series]
    else:
        loaded = schema if isinstance(schema, Schema) else read_dump(schema)
        release = qemu
        if version is None:
            # ramfb-dev and VFIODisplay came together in 8.2: a dump with ramfb-dev is >= 8.2
            notes.append("QEMU version not given: VFIODisplay is judged by the dump (it has the ramfb-dev vmsd iff "
                         "QEMU >= 8.2); capability rules are skipped")
    if version is None and schema is None:
        raise CompatError("give the destination's QEMU version (--qemu) or its -dump-vmstate (--schema)")
    if machine is None:
        machine = loaded.machine
        if machine is None:
            raise CompatError("give the destination machine type (--target); the schema names none")
    canonical = resolve_destination_machine(machine, version)
    family = _family(canonical)
    if family is None:
        raise CompatError(f"vmig knows the sections of pc-i440fx and pc-q35 machines only, not {canonical!r}")

    data = destinations_data()["qemu"]
    series = _series_for(version) if schema is None else (_series_for(version) or _nearest_series(version))
    known = data.get(series or "", {})
    if schema is not None and (version is None or _series_for(version) is None):
        notes.append(f"the sections a {family} machine creates and the state without a vmsd are taken from "
                     f"captures of QEMU {known.get('release', series)} (vmig has none for this version)")
    entries: list[Entry] = [Entry("ram", "ram", 0, "SaveVMHandlers (migration/ram.c ram_mig_init)")]
    fam = known.get("families", {}).get(family)
    if fam is None:
        raise CompatError(f"vmig has no capture of a {family} machine from QEMU {known.get('release', series)}")
    for idstr, instance, vmsd, _version in fam["sections"]:
        if idstr == "ram":
            continue
        entries.append(Entry(vmsd, idstr, instance, f"{family} machine (captured: {', '.join(fam['from'])})"))

    extra: dict[str, VmsdKnowledge] = {"ram": VmsdKnowledge("ram", 4, None, None, origin="migration/ram.c "
                                                            "register_savevm_live(\"ram\", 0, 4, ...)")}
    for name, row in known.get("vmsds", {}).items():
        extra[name] = VmsdKnowledge(name, row["version_id"], None, None, tuple(row["subsections_seen"]),
                                    origin=f"captures of QEMU {known.get('release')}")
    vfio_display = has_fact(version, VFIO_DISPLAY)
    if vfio_display is None:
        vfio_display = loaded.vmsd("ramfb-dev") is not None
    extra["vfio"] = VmsdKnowledge("vfio", 1, None, None, origin="hw/vfio/migration.c register_savevm_live(id, "
                                  "VMSTATE_INSTANCE_ID_ANY, 1, ...)")
    extra["VFIOPCIDevice"] = VmsdKnowledge("VFIOPCIDevice", 1, 1, (VFIO_DISPLAY,) if vfio_display else (),
                                           origin=next(f.source for f in VERSION_FACTS if f.name == VFIO_DISPLAY))
    if vfio_display:
        extra[VFIO_DISPLAY] = VmsdKnowledge(VFIO_DISPLAY, 1, 1, (), origin="hw/vfio/pci.c vmstate_vfio_display")

    qom_devices = tuple(d.split(",", 1)[0].strip() for d in devices if d.strip())
    for spec in (d for d in devices if d.strip()):
        qom, props = _device_spec(spec)
        vmsd = device_vmsd(loaded, qom)
        if vmsd == "vfio" and not _vfio_migrates(version, props):
            notes.append(f"--device {spec}: no VFIO savevm entry (migration is off: "
                         + ("enable-migration=off" if has_fact(version, "vfio-migration-by-default") else
                            f"QEMU {release} needs x-enable-migration=on") + ")")
        elif vmsd is None:
            notes.append(f"--device {qom}: no vmstate in {loaded.origin} (it adds no savevm entry)")
        else:
            entries.append(Entry(vmsd, None, None, f"--device {qom}"))
        for more in DEVICE_EXTRA_VMSDS.get(qom, ()):
            entries.append(Entry(more, None, None, f"--device {qom} (its secondary bus)"))

    caps = tuple(known["capabilities"]) if known.get("capabilities") and _series_for(version) else None
    validated = None
    if version is not None:
        order = caps or ("x-ignore-shared", "mapped-ram")
        validated = tuple(c for c in order if any(f.name == f"validate:{c}" for f in VERSION_FACTS)
                          and has_fact(version, f"validate:{c}"))
    unknown_caps = [c for c in capabilities if caps is not None and c not in caps]
    if unknown_caps:
        raise CompatError(f"QEMU {release} has no migration capability {', '.join(unknown_caps)}")
    return Destination(qemu=release, version=version, machine=canonical, devices=qom_devices,
                       capabilities=frozenset(capabilities), memory=parse_size(memory) if memory else None,
                       schema=loaded, entries=tuple(entries), extra=extra, validated=validated,
                       known_capabilities=caps, notes=tuple(notes), section_footers=section_footers)


def destination_of(stream: MigrationStream, *, qemu: str | None = None, schema: str | Path | Schema | None = None,
                   devices: Sequence[str] = ()) -> Destination:
    """The VM that wrote `stream`, as a destination: its machine type, capabilities and pc.ram size,
    and an entry for every section it wrote (so its devices), on QEMU `qemu`.

    Devices whose state the stream does not carry (e.g. a ramfb with x-migrate=off) cannot be
    inferred; add them with `devices`.
    """
    config = stream.configuration
    if config is None:
        raise CompatError(f"{stream.source or 'the stream'} has no configuration record: its machine type is unknown")
    caps = sorted(_stream_capabilities(config))
    ram = _pc_ram(stream)
    footers = next((s.footer for s in stream.sections), True)
    dest = destination(qemu=qemu, machine=config.machine, devices=devices, schema=schema, capabilities=caps,
                       memory=ram[0].used_length if ram else None, section_footers=footers)
    known = {(e.idstr, e.instance_id) for e in dest.entries}
    entries = list(dest.entries)
    for section in stream.sections:
        if section.long_header and (section.idstr, section.instance_id) not in known:
            known.add((section.idstr, section.instance_id))
            entries.append(Entry(section_vmsd_name(section), section.idstr, section.instance_id,
                                 f"written by {stream.source or 'the stream'}"))
    return replace(dest, entries=tuple(entries), notes=dest.notes + (
        (f"the destination is the VM that wrote {stream.source or 'the other stream'}: its machine, capabilities, "
        f"RAM size, section footers and every section it wrote"),))


# ================================================================ the check


@dataclass
class _Context:
    stream: MigrationStream
    dest: Destination
    findings: list[tuple[tuple[int, int, int], Finding]] = field(default_factory=list)
    order: int = 0

    def add(self, finding: Finding) -> None:
        record = finding.record if finding.record is not None else -1
        self.findings.append(((record, finding.offset if finding.offset is not None else -1, self.order), finding))


@dataclass(frozen=True, slots=True)
class Rule:
    """One thing QEMU's loader checks. `check` yields findings; RULES is the list, in QEMU's order."""

    rule_id: str
    summary: str
    source: str
    check: Callable[[_Context, Rule], Iterator[Finding]]


def _records(stream: MigrationStream) -> Iterator[tuple[int, Any]]:
    return iter(enumerate(stream.records))


def _config(stream: MigrationStream) -> tuple[int, Configuration] | None:
    return next(((i, r) for i, r in _records(stream) if isinstance(r, Configuration)), None)


def _stream_capabilities(config: Configuration) -> list[str]:
    for sub in config.subsections:
        if sub.name == "configuration/capabilities":
            caps = next((f.value for f in sub.fields if f.name == "capabilities"), [])
            return [c if isinstance(c, str) else str(c) for c in caps]
    return []


def _pc_ram(stream: MigrationStream) -> tuple[Any, int, int] | None:
    """(RamBlock pc.ram, record index, offset of its block-list item) of the first RAM START."""
    for i, r in _records(stream):
        if isinstance(r, Section) and isinstance(r.body, RamBody):
            for item in r.body.items:
                if isinstance(item, RamMemSize):
                    for block in item.blocks:
                        if block.idstr == "pc.ram":
                            return block, i, item.span.offset if item.span else r.span.offset
    return None


def _f(rule: Rule, severity: str, summary: str, messages: Sequence[str], *, record: int | None = None,
       offset: int | None = None, ptr: tuple[Any, ...] = (), path: str = "", errno: str | None = EINVAL,
       continues: bool = False) -> Finding:
    return Finding(rule_id=rule.rule_id, severity=severity, summary=summary, messages=tuple(messages),
                   source=rule.source, record=record, offset=offset, pointer=pointer(ptr) if ptr else "",
                   path=path, errno=errno if severity == "refused" else None, continues=continues)


def _loading(idstr: str, instance: int) -> str:
    return f"error while loading state for instance {instance:#x} of device '{idstr}'"


def _key(idstr: str, instance: int | None) -> str:
    return idstr if not instance else f"{idstr}/{instance}"


# ---------------------------------------------------------------- configuration rules


def rule_configuration_missing(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    if ctx.stream.configuration is None:
        first = next((i for i, r in _records(ctx.stream) if i > 0), None)
        offset = ctx.stream.records[first].span.offset if first is not None else 8
        yield _f(rule, "refused", "the stream has no configuration record; QEMU expects one right after the header",
                 ["Configuration section missing"], record=first, offset=offset, ptr=("records", first or 1))


def rule_machine_type(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    found = _config(ctx.stream)
    if found is None:
        return
    index, config = found
    received, local = config.machine, ctx.dest.machine
    # QEMU compares with strncmp over the *received* length: a received prefix of the local name passes
    if local.encode()[:len(received.encode("utf-8", "surrogateescape"))] != received.encode("utf-8",
                                                                                             "surrogateescape"):
        yield _f(rule, "refused", f"machine type {printable(received)} in the stream, {local} at the destination",
                 [f"Machine type received is '{printable(received)}' and local is '{local}'"], record=index,
                 offset=config.span.offset if config.span else None, ptr=("records", index, "machine"),
                 path="configuration/machine")


def rule_target_page_bits(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    found = _config(ctx.stream)
    if found is None:
        return
    index, config = found
    for j, sub in enumerate(config.subsections):
        if sub.name == "configuration/target-page-bits":
            bits = sub.fields[0].value if sub.fields else None
            if bits != X86_TARGET_PAGE_BITS:
                yield _f(rule, "refused", f"target page bits {bits}; x86 has {X86_TARGET_PAGE_BITS}",
                         [f"Received TARGET_PAGE_BITS is {bits} but local is {X86_TARGET_PAGE_BITS}"], record=index,
                         offset=sub.span.offset if sub.span else None, ptr=("records", index, "subsections", j),
                         path="configuration/target-page-bits")


def rule_capability_unknown(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    found = _config(ctx.stream)
    known = ctx.dest.known_capabilities
    if found is None or known is None:
        return
    index, config = found
    for j, sub in enumerate(config.subsections):
        if sub.name != "configuration/capabilities":
            continue
        for cap in _stream_capabilities(config):
            if cap not in known:
                yield _f(rule, "refused", f"capability {printable(cap)} does not exist in QEMU {ctx.dest.qemu}",
                         [f"Received unknown capability {printable(cap)}",
                          "Failed to load configuration/capabilities:capabilities"], record=index,
                         offset=sub.span.offset if sub.span else None, ptr=("records", index, "subsections", j),
                         path=f"configuration/capabilities/{printable(cap)}")
                return  # get_capability fails the configuration load at the first one


def rule_capability_mismatch(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    found = _config(ctx.stream)
    validated = ctx.dest.validated
    if found is None or validated is None:
        return
    index, config = found
    received = set(_stream_capabilities(config))
    if ctx.dest.known_capabilities is not None and received - set(ctx.dest.known_capabilities):
        return  # the unknown-capability rule fails first
    sub_index = next((j for j, s in enumerate(config.subsections) if s.name == "configuration/capabilities"), None)
    offset = config.subsections[sub_index].span.offset if sub_index is not None and \
        config.subsections[sub_index].span else (config.span.offset if config.span else None)
    for cap in validated:  # QAPI enum order, every mismatch reported
        src, dst = cap in received, cap in ctx.dest.capabilities
        if src != dst:
            yield _f(rule, "refused", f"capability {cap} is {'on' if src else 'off'} in the stream, "
                     f"{'on' if dst else 'off'} at the destination",
                     [(f"Capability {cap} is {'on' if dst else 'off'}, but received capability is "
                      f"{'on' if src else 'off'}")], record=index, offset=offset,
                     ptr=("records", index) + (("subsections", sub_index) if sub_index is not None else ()),
                     path=f"configuration/capabilities/{cap}", continues=True)


def rule_uuid(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    found = _config(ctx.stream)
    if found is None:
        return
    index, config = found
    for j, sub in enumerate(config.subsections):
        if sub.name == "configuration/uuid":
            value = sub.fields[0].value if sub.fields else b""
            text = value.hex() if isinstance(value, bytes) else str(value)
            yield _f(rule, "note", f"the stream carries the source's UUID ({text}); QEMU refuses the load unless "
                     "the destination was started with the same -uuid (vmig does not know it)",
                     ["UUID received is <stream uuid> and local is <destination uuid> (only if they differ)"],
                     record=index, offset=sub.span.offset if sub.span else None,
                     ptr=("records", index, "subsections", j), path="configuration/uuid")


# ---------------------------------------------------------------- section rules


def _match_entries(ctx: _Context) -> dict[tuple[str, int], Entry | None]:
    """find_se for every (idstr, instance) of the stream, in stream order."""
    exact = {(e.idstr, e.instance_id): e for e in ctx.dest.entries if e.idstr is not None}
    loose = [e for e in ctx.dest.entries if e.idstr is None]
    out: dict[tuple[str, int], Entry | None] = {}
    for section in ctx.stream.sections:
        key = (section.idstr, section.instance_id or 0)
        if not section.long_header or key in out:
            continue
        entry = exact.get(key)
        if entry is None:
            vmsd = section_vmsd_name(section)
            entry = next((e for e in loose if e.vmsd_name == vmsd), None)
            if entry is not None:
                loose.remove(entry)
        out[key] = entry
    return out


def _first_long(ctx: _Context) -> Iterator[tuple[int, Section]]:
    seen: set[tuple[str, int]] = set()
    for i, r in _records(ctx.stream):
        if isinstance(r, Section) and r.long_header and (r.idstr, r.instance_id or 0) not in seen:
            seen.add((r.idstr, r.instance_id or 0))
            yield i, r


def rule_section_footer(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    for i, r in _records(ctx.stream):
        if not isinstance(r, Section) or r.span is None:
            continue
        if not r.footer and ctx.dest.section_footers:
            yield _f(rule, "refused", "the stream has no section footers; the destination expects them "
                     "(send-section-footer=on, the default)", [f"Missing section footer for {printable(r.idstr)}"],
                     record=i, offset=r.span.end, ptr=("records", i, "footer"), path=_key(r.idstr, r.instance_id))
        elif r.footer and not ctx.dest.section_footers:
            # the loader takes the footer byte 0x7e for the next record's type
            yield _f(rule, "refused", "the stream has section footers; the destination does not read them "
                     "(send-section-footer=off)", ["Unknown savevm section type 126"], record=i,
                     offset=r.span.end - 5, ptr=("records", i, "footer"), path=_key(r.idstr, r.instance_id))
        return


def rule_unknown_section(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    matched = _match_entries(ctx)
    for i, r in _first_long(ctx):
        if matched.get((r.idstr, r.instance_id or 0)) is not None:
            continue
        vmsd = section_vmsd_name(r)
        why = _why_unknown(ctx, r, vmsd)
        yield _f(rule, "refused", f"no savevm entry {printable(r.idstr)!r} instance {r.instance_id} at the "
                 f"destination: {why}",
                 [(f"Unknown savevm section or instance '{printable(r.idstr)}' {r.instance_id}. Make sure that your "
                  "current VM setup matches your saved VM setup, including any hotplugged devices")],
                 record=i, offset=r.span.offset if r.span else None, ptr=("records", i),
                 path=_key(r.idstr, r.instance_id))


def _why_unknown(ctx: _Context, section: Section, vmsd: str) -> str:
    dest = ctx.dest
    if vmsd == "vfio":
        if any(d.startswith("vfio-pci") for d in dest.devices):
            return "its vfio-pci device registers no savevm entry (migration off, see the note)"
        return "it has no VFIO device (--device vfio-pci)"
    types = dest.schema.types_with_vmsd(vmsd)
    if dest.schema.vmsd(vmsd) is None and vmsd not in dest.extra:
        return f"QEMU {dest.qemu or ''} has no vmsd named {vmsd!r} (not in {dest.schema.origin})".replace("  ", " ")
    if any(e.vmsd_name == vmsd for e in dest.entries):
        return f"its {vmsd} entries are taken by other sections (give one more --device)"
    if types:
        return f"neither the {dest.machine} machine nor a --device creates it (vmsd {vmsd} belongs to " \
               f"{', '.join(types[:4])}{' …' if len(types) > 4 else ''})"
    return f"the {dest.machine} machine does not create it"


def rule_section_version(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    matched = _match_entries(ctx)
    for i, r in _first_long(ctx):
        entry = matched.get((r.idstr, r.instance_id or 0))
        if entry is None or r.version_id is None:
            continue
        know = ctx.dest.knowledge(entry.vmsd_name)
        if know is None or know.version_id is None:
            continue
        if r.version_id > know.version_id:
            yield _f(rule, "refused", f"section version {r.version_id} is newer than the destination's "
                     f"{know.version_id}", [(f"savevm: unsupported version {r.version_id} for '{printable(r.idstr)}' "
                                            f"v{know.version_id}")],
                     record=i, offset=r.span.offset if r.span else None, ptr=("records", i, "version_id"),
                     path=_key(r.idstr, r.instance_id))


def rule_section_minimum_version(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    matched = _match_entries(ctx)
    for i, r in _first_long(ctx):
        entry = matched.get((r.idstr, r.instance_id or 0))
        if entry is None or r.version_id is None:
            continue
        know = ctx.dest.knowledge(entry.vmsd_name)
        if know is None or know.minimum_version_id is None or know.version_id is None:
            continue
        if r.version_id < know.minimum_version_id and r.version_id <= know.version_id:
            yield _f(rule, "refused", f"section version {r.version_id} is older than the destination's minimum "
                     f"{know.minimum_version_id}",
                     [(f"{know.name}: incoming version_id {r.version_id} is too old for local minimum version_id  "
                      f"{know.minimum_version_id}"), _loading(printable(r.idstr), r.instance_id or 0)],
                     record=i, offset=r.span.offset if r.span else None, ptr=("records", i, "version_id"),
                     path=_key(r.idstr, r.instance_id))


#: commands every QEMU vmig judges knows (1 OPEN_RETURN_PATH ... 10 RECV_BITMAP, all older than 7.2)
_OLD_COMMANDS = range(1, 11)


def rule_command_unknown(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    version = ctx.dest.version
    if version is None:
        return
    for i, r in _records(ctx.stream):
        if not isinstance(r, Command) or r.cmd in _OLD_COMMANDS:
            continue
        if r.name == "SWITCHOVER_START" and has_fact(version, "command:SWITCHOVER_START"):
            continue
        yield _f(rule, "refused", f"COMMAND {r.name} (cmd {r.cmd}) does not exist in QEMU {ctx.dest.qemu}",
                 [f"MIG_CMD {r.cmd:#x} unknown (len {len(r.data):#x})"], record=i,
                 offset=r.span.offset if r.span else None, ptr=("records", i), path=f"stream/commands/{r.name}")
        return


def rule_ram_size(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    if ctx.dest.memory is None:
        return
    found = _pc_ram(ctx.stream)
    if found is None:
        return
    block, index, offset = found
    if block.used_length != ctx.dest.memory:
        yield _f(rule, "refused", f"pc.ram is {block.used_length:#x} bytes in the stream, {ctx.dest.memory:#x} at the "
                 "destination (-m)", [(f"Size mismatch: pc.ram: {block.used_length:#x} != {ctx.dest.memory:#x}: "
                                      f"{EINVAL}"), _loading("ram", 0)],
                 record=index, offset=offset, ptr=("records", index, "ram"), path="ram/pc.ram")


def rule_subsections(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    """Unknown subsections and subsection versions, at every level of every decoded section."""
    matched = _match_entries(ctx)
    for i, r in _first_full(ctx):
        key = (r.idstr, r.instance_id or 0)
        if key in matched and matched[key] is None:
            continue  # refused earlier: unknown section
        body = r.body
        if isinstance(body, VmstateBody):
            yield from _walk(ctx, rule, r, i, body.vmsd_name, body.fields, body.subsections, ("records", i),
                             _key(r.idstr, r.instance_id), vfio=False)
        elif isinstance(body, VfioBody):
            for k, item in enumerate(body.items):
                if item.kind == "config" and item.config is not None:
                    yield from _walk(ctx, rule, r, i, item.config.vmsd_name, item.config.fields,
                                     item.config.subsections, ("records", i, "vfio", "items", k, "config"),
                                     _key(r.idstr, r.instance_id) + "/config", vfio=True)


def _first_full(ctx: _Context) -> Iterator[tuple[int, Section]]:
    for i, r in _records(ctx.stream):
        if isinstance(r, Section) and r.type == "section_full":
            yield i, r


def _walk(ctx: _Context, rule: Rule, section: Section, index: int, vmsd: str, fields: Sequence[Field],
          subsections: Sequence[Subsection], ptr: tuple[Any, ...], path: str, vfio: bool) -> Iterator[Finding]:
    for n, f in enumerate(fields):
        values = f.value if isinstance(f.value, list) else [f.value]
        for m, v in enumerate(values):
            if isinstance(v, StructValue):
                sub_ptr = ptr + ("fields", n) + ((m,) if isinstance(f.value, list) else ())
                yield from _walk(ctx, rule, section, index, v.vmsd_name, v.fields, v.subsections, sub_ptr,
                                 f"{path}/{f.name}" + (f"[{m}]" if isinstance(f.value, list) else ""), vfio)
    know = ctx.dest.knowledge(vmsd)
    idstr, instance = printable(section.idstr), section.instance_id or 0
    tail = ([f"{VFIO_HOST_NAME}: Failed to load device config space"] if vfio else []) + [_loading(idstr, instance)]
    for j, sub in enumerate(subsections):
        sub_path = f"{path}/{sub.name[len(vmsd) + 1:] if sub.name.startswith(vmsd + '/') else sub.name}"
        sub_ptr = ptr + ("subsections", j)
        offset = sub.span.offset if sub.span else None
        if know is not None and know.subsections is not None and sub.name not in know.subsections:
            where = f"QEMU {ctx.dest.qemu}" if ctx.dest.qemu else ctx.dest.schema.origin
            yield _f(rule, "refused", f"subsection {printable(sub.name)} does not exist in {vmsd} of {where} "
                     f"(it has {', '.join(know.subsections) or 'no subsections'})", tail, record=index,
                     offset=offset, ptr=sub_ptr, path=sub_path, errno=ENOENT)
            continue
        if know is not None and know.subsections is None and sub.name not in know.seen:
            yield _f(rule, "note", f"subsection {printable(sub.name)} of {vmsd} not verified: {vmsd} is not in the "
                     f"-dump-vmstate and no capture of this QEMU showed it", (), record=index, offset=offset,
                     ptr=sub_ptr, path=sub_path)
        sub_know = ctx.dest.knowledge(sub.name)
        version = sub.version & 0xFF  # vmstate_subsection_load reads the be32 into a uint8_t
        if sub_know is not None and sub_know.version_id is not None and version > sub_know.version_id:
            yield _f(rule, "refused", f"subsection {printable(sub.name)} version {sub.version} is newer than the "
                     f"destination's {sub_know.version_id}",
                     [(f"{sub.name}: incoming version_id {version} is too new for local version_id "
                      f"{sub_know.version_id}")] + tail, record=index, offset=offset, ptr=sub_ptr, path=sub_path)
        elif sub_know is not None and sub_know.minimum_version_id is not None and \
                version < sub_know.minimum_version_id:
            yield _f(rule, "refused", f"subsection {printable(sub.name)} version {sub.version} is older than the "
                     f"destination's minimum {sub_know.minimum_version_id}",
                     [(f"{sub.name}: incoming version_id {version} is too old for local minimum version_id  "
                      f"{sub_know.minimum_version_id}")] + tail, record=index, offset=offset, ptr=sub_ptr,
                     path=sub_path)
        yield from _walk(ctx, rule, section, index, sub.name, sub.fields, sub.subsections, sub_ptr, sub_path, vfio)


def rule_opaque_sections(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    opaque = [(i, r) for i, r in _first_full(ctx) if isinstance(r.body, OpaqueBody)]
    if opaque:
        i, r = opaque[0]
        names = ", ".join(printable(s.idstr) for _, s in opaque[:6]) + (" …" if len(opaque) > 6 else "")
        yield _f(rule, "note", f"{len(opaque)} section{'s' if len(opaque) > 1 else ''} not decoded ({r.body.reason}): "
                 f"{names}; their subsections and nested versions were not checked", (), record=i,
                 offset=r.span.offset if r.span else None, ptr=("records", i), path=_key(r.idstr, r.instance_id))


def rule_vmdesc(ctx: _Context, rule: Rule) -> Iterator[Finding]:
    if ctx.stream.vmdesc is None and ctx.stream.error is None:
        eof = next(((i, r) for i, r in _records(ctx.stream) if r.type == "eof"), None)
        if eof is not None:
            i, r = eof
            yield _f(rule, "warning", "no vmdesc after EOF (suppress-vmdesc=on at the source): QEMU prints an error "
                     "line but the load succeeds", ["Expected vmdescription section, but got 0"], record=i,
                     offset=r.span.end if r.span else None, ptr=("records", i), path="stream/vmdesc")


_SAVEVM = "migration/savevm.c"
RULES: tuple[Rule, ...] = (
    Rule("configuration-missing", "the configuration record must follow the header",
         f"{_SAVEVM} qemu_loadvm_state_header (\"Configuration section missing\")", rule_configuration_missing),
    Rule("capability-unknown", "every capability in configuration/capabilities must exist at the destination",
         f"{_SAVEVM} get_capability (\"Received unknown capability %s\"), then migration/vmstate.c "
         f"vmstate_load_state (\"Failed to load %s:%s\")", rule_capability_unknown),
    Rule("machine-type", "the machine type must match (strncmp over the received length)",
         f"{_SAVEVM} configuration_post_load (\"Machine type received is '%.*s' and local is '%s'\")",
         rule_machine_type),
    Rule("target-page-bits", "TARGET_PAGE_BITS must match",
         f"{_SAVEVM} configuration_post_load (\"Received TARGET_PAGE_BITS is %d but local is %d\")",
         rule_target_page_bits),
    Rule("capability-mismatch", "validated capabilities (x-ignore-shared, mapped-ram) must be set alike",
         f"{_SAVEVM} configuration_validate_capabilities (\"Capability %s is %s, but received capability is %s\")",
         rule_capability_mismatch),
    Rule("uuid", "configuration/uuid must equal the destination's -uuid",
         f"{_SAVEVM} vmstate_uuid_post_load (\"UUID received is %s and local is %s\")", rule_uuid),
    Rule("unknown-section", "every section needs a savevm entry with its idstr and instance at the destination",
         f"{_SAVEVM} qemu_loadvm_section_start_full, find_se (\"Unknown savevm section or instance '%s' %u. ...\")",
         rule_unknown_section),
    Rule("section-version-too-new", "a section's version must not exceed the destination entry's version",
         f"{_SAVEVM} qemu_loadvm_section_start_full (\"savevm: unsupported version %d for '%s' v%d\")",
         rule_section_version),
    Rule("section-version-too-old", "a section's version must not be below the vmsd's minimum_version_id",
         "migration/vmstate.c vmstate_load_state (\"%s: incoming version_id %d is too old for local minimum "
         "version_id  %d\")", rule_section_minimum_version),
    Rule("command-unknown", "every COMMAND must exist at the destination (SWITCHOVER_START only from 10.0)",
         f"{_SAVEVM} loadvm_process_command (\"MIG_CMD 0x%x unknown (len 0x%x)\")", rule_command_unknown),
    Rule("ram-size", "each RAM block's length must match the destination's (-m for pc.ram)",
         "migration/ram.c parse_ramblock -> system/physmem.c qemu_ram_resize (\"Size mismatch: %s: 0x%x != 0x%x\")",
         rule_ram_size),
    Rule("unknown-subsection", "every subsection must be listed in the destination vmsd's subsections "
         "(and its version within range)",
         "migration/vmstate.c vmstate_subsection_load (-ENOENT, no message of its own) and vmstate_load_state; "
         "hw/vfio/migration.c vfio_load_device_config_state (\"%s: Failed to load device config space\")",
         rule_subsections),
    Rule("section-footer", "sections end in a footer exactly when the destination's send-section-footer is on",
         f"{_SAVEVM} check_section_footer (\"Missing section footer for %s\"); qemu_loadvm_state_main "
         f"(\"Unknown savevm section type %d\" for the 0x7e of an unexpected footer)", rule_section_footer),
    Rule("opaque-section", "sections vmig could not decode are checked by header only", "vmig", rule_opaque_sections),
    Rule("vmdesc", "QEMU expects a vmdesc after EOF unless its suppress-vmdesc is on",
         f"{_SAVEVM} qemu_loadvm_state (\"Expected vmdescription section, but got %d\")", rule_vmdesc),
)
RULES_BY_ID: Mapping[str, Rule] = {r.rule_id: r for r in RULES}
#: configuration checks run in this order inside the configuration record (get_capability, then post_load)
_CONFIG_ORDER = ("configuration-missing", "capability-unknown", "machine-type", "target-page-bits",
                 "capability-mismatch", "uuid")


def check_stream(stream: MigrationStream, dest: Destination) -> Verdict:
    """Judge whether `dest` would load `stream`, the way QEMU's loader goes through it."""
    ctx = _Context(stream, dest)
    for order, rule in enumerate(RULES):
        ctx.order = order
        for finding in rule.check(ctx, rule):
            ctx.add(finding)
    ordered = [f for _, f in sorted(ctx.findings, key=lambda kf: _sort_key(kf[0], kf[1]))]
    # QEMU stops at the first failure: everything after it in the stream it never sees, but vmig reports it
    return Verdict(destination=dest, findings=tuple(ordered), qemu_output=_qemu_output(ordered), stream=stream.source)


def _sort_key(key: tuple[int, int, int], finding: Finding) -> tuple[int, int, int]:
    """Stream order (record, offset); inside the configuration record QEMU's own order (fields, then post_load)."""
    record, offset, order = key
    if finding.rule_id in _CONFIG_ORDER:
        return (record, -1, _CONFIG_ORDER.index(finding.rule_id))
    return (record, offset, order)


def _qemu_output(findings: Sequence[Finding]) -> tuple[str, ...]:
    refused = [f for f in findings if f.severity == "refused"]
    if not refused:
        return tuple(line for f in findings if f.severity == "warning" for line in f.messages)
    first = refused[0]
    lines = list(first.messages)
    if first.continues:
        for f in refused[1:]:
            if f.rule_id != first.rule_id:
                break
            lines.extend(f.messages)
    lines.append(f"load of migration failed: {first.errno or EINVAL}")
    return tuple(lines)


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """The `vmig check --json` document."""
    dest = verdict.destination
    return {
        "stream": verdict.stream,
        "loadable": verdict.loadable,
        "destination": {"qemu": dest.qemu, "machine": dest.machine, "devices": list(dest.devices),
                        "capabilities": sorted(dest.capabilities), "memory": dest.memory,
                        "schema": dest.schema.origin, "notes": list(dest.notes)},
        "qemu_output": list(verdict.qemu_output),
        "findings": [
            {k: v for k, v in {
                "rule": f.rule_id, "severity": f.severity, "summary": f.summary, "messages": list(f.messages),
                "errno": f.errno, "record": f.record, "offset": f.offset, "pointer": f.pointer or None,
                "path": f.path or None, "source": f.source}.items() if v is not None}
            for f in verdict.findings
        ],
    }


def write_destinations_data(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Rebuild data/destinations.json.gz from captures (each .bin with its .meta.json sidecar)."""
    from ..codec.decode import decode

    captures = []
    for path in sorted(Path(p) for p in paths):
        meta = json.loads(path.with_suffix(".meta.json").read_text())
        captures.append((path.name, decode(str(path)), meta))
    doc = build_destinations_data(captures, {series: bundled_schema(series) for series in BUNDLED})
    text = json.dumps(doc, indent=1, sort_keys=False).encode() + b"\n"
    Path(out).write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    return doc


if __name__ == "__main__":  # python -m vfio_ramfb_mig.compat.check OUT.json.gz CAPTURE.bin...
    import sys

    write_destinations_data(sys.argv[2:], sys.argv[1])
