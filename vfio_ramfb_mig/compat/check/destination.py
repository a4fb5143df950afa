"""The destination a stream is judged against, and how vmig builds one.

A destination is a QEMU version and architecture (its `-dump-vmstate`, bundled for
x86_64 and aarch64 10.0 and 7.2, or given as a file), a machine type, the devices it has
beyond the machine's own (`-device`), its validated migration capabilities and,
optionally, its RAM size. Its savevm entries (what QEMU's `find_se` can find) are the
machine's own (what a stock VM of exactly that machine saves, compat.catalog; for other
QEMU versions the nearest build's), ``ram``, and one per ``--device TYPE``; with its
TARGET_PAGE_BITS, its RAM blocks where known and, on arm, its CPU's cpreg list.
`destination_from_profile` takes all of it from a `vmig profile` of a real destination.

Imports: errors, model, vmstate.dump, compat.{catalog, machines, profile},
compat.check.{qemu_facts, stream_facts, destination_data}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ...errors import CompatError, InputError
from ...model import MigrationStream, VmstateBody
from ...vmstate.dump import BUNDLED, Schema, read_dump
from ..catalog import Build, all_builds, build_for, normalize_arch, stream_machine_archs
from ..machines import FAMILY_ARCH, MachineType, parse_machine_name, resolve_machine_for
from ..profile import Profile
from .destination_data import destinations_data
from .qemu_facts import VERSION_FACTS, VFIO_DISPLAY, has_fact
from .stream_facts import ram_block_list, section_vmsd_name, stream_capabilities

_SIZE_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgGtT]?)(?:i?[bB])?$")


@dataclass(frozen=True, slots=True)
class Entry:
    """A savevm entry the destination has: what `find_se` can find."""

    vmsd_name: str
    idstr: str | None  # None: a --device whose PCI path vmig does not know (matches any path)
    instance_id: int | None
    origin: str
    #: the entry's own version (se->version_id), when the destination said it (its saved state)
    version_id: int | None = None


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


@dataclass(frozen=True, slots=True)
class RamBlockFact:
    """A RAM block the destination has. `used`: its used_length (None: not known); `max`: its
    max_length, larger than `used` when QEMU may resize it to what the stream says."""

    name: str
    used: int | None
    max: int | None
    origin: str

    @property
    def resizeable(self) -> bool:
        return self.max is not None and self.used is not None and self.max > self.used


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
    #: its target architecture (x86_64, aarch64); None: unknown
    arch: str | None = None
    #: its TARGET_PAGE_BITS (None: unknown, the rule is skipped)
    target_page_bits: int | None = None
    #: the RAM blocks vmig knows it has (None: none known)
    ram_blocks: tuple[RamBlockFact, ...] | None = None
    #: True when `ram_blocks` is every block it has (a profile): a block it lacks is refused
    ram_complete: bool = False
    #: arm CPUs: (idstr, instance) -> the cpreg index list it accepts (None: unknown)
    cpregs: Mapping[tuple[str, int], tuple[int, ...]] | None = None
    #: where the cpreg lists come from (said in notes and findings)
    cpregs_origin: str = ""

    def describe(self) -> str:
        parts = [(f"QEMU {self.qemu}" if self.qemu else "QEMU (version unknown)")
                 + (f" {self.arch}" if self.arch else ""), self.machine]
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

    def entry_knowledge(self, entry: Entry) -> VmsdKnowledge | None:
        """What vmig knows of the vmsd behind `entry`. When the destination said the entry's version
        and the dump's vmsd of that name has another one, the dump describes some other state with the
        same name (aarch64: a device vmsd called "timer" besides the global timers): only the version
        and the subsections seen are known then."""
        know = self.knowledge(entry.vmsd_name)
        if entry.version_id is None or (know is not None and know.version_id == entry.version_id):
            return know
        seen = self.extra[entry.vmsd_name].seen if entry.vmsd_name in self.extra else ()
        return VmsdKnowledge(entry.vmsd_name, entry.version_id, None, None, seen, origin=entry.origin)


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


#: the savevm entries migration itself registers at start-up (SaveVMHandlers, no vmsd), in every
#: VM: (idstr, version, where QEMU registers it, the version fact that removed it)
MIGRATION_HANDLERS: tuple[tuple[str, int, str, str | None], ...] = (
    ("ram", 4, "migration/ram.c ram_mig_init: register_savevm_live(\"ram\", 0, 4, ...)", None),
    ("dirty-bitmap", 1, "migration/block-dirty-bitmap.c dirty_bitmap_mig_init: "
                        "register_savevm_live(\"dirty-bitmap\", 0, 1, ...)", None),
    ("block", 1, "migration/block.c blk_mig_init: register_savevm_live(\"block\", 0, 1, ...)", "no-block-migration"),
)


def _add_migration_handlers(entries: list[Entry], extra: dict[str, VmsdKnowledge],
                            version: tuple[int, ...] | None) -> None:
    """Put the entries every VM of QEMU `version` has (MIGRATION_HANDLERS) first, unless already there.
    A handler a later QEMU removed is there only when the version is known to be older."""
    handlers = [(idstr, v, origin) for idstr, v, origin, removed_by in MIGRATION_HANDLERS
                if removed_by is None or has_fact(version, removed_by) is False]
    for i, (idstr, handler_version, origin) in enumerate(handlers):
        if not any(e.idstr == idstr for e in entries):
            entries.insert(i, Entry(idstr, idstr, 0, f"SaveVMHandlers ({origin})"))
        extra.setdefault(idstr, VmsdKnowledge(idstr, handler_version, None, None, origin=origin))


def destination(*, qemu: str | None = None, machine: str | None = None, devices: Sequence[str] = (),
                schema: str | Path | Schema | None = None, capabilities: Sequence[str] = (),
                memory: int | str | None = None, section_footers: bool = True,
                arch: str | None = None) -> Destination:
    """Describe a destination.

    Args:
        qemu: its QEMU version ("10.0", "7.2", "10.0.2", ...). Versions other than the bundled
            10.0 and 7.2 need `schema`.
        machine: its machine type (canonical, or QEMU's aliases pc, q35, virt); default: the `schema` file's.
        devices: `-device` arguments beyond the machine's own (properties after ',' are ignored).
        schema: its `-dump-vmstate` (a path, plain or .gz, or a read `Schema`).
        capabilities: migration capabilities set on it (only validated ones matter).
        memory: its RAM size (`-m`: bytes, or "16M"); the machine's main RAM block must match the stream's.
        section_footers: its `-global migration.send-section-footer` (on by default; only Xen turns it off).
        arch: its target (x86_64, aarch64); default: the machine family's.

    Raises:
        CompatError: the destination cannot exist (unknown machine for that QEMU, no schema).
    """
    notes: list[str] = []
    if qemu is None and schema is None:
        qemu = _newest_build_with(machine, arch)
        notes.append(f"QEMU version not given (--qemu): judged as QEMU {qemu}, the newest bundled build that has "
                     f"{machine}")
    version = parse_version(qemu) if qemu else None
    loaded = schema if isinstance(schema, Schema) or schema is None else read_dump(schema)
    if machine is None:
        machine = loaded.machine if loaded is not None else None
        if machine is None:
            raise CompatError("give the destination machine type (--target); the schema names none")
    resolved = resolve_machine_for(machine, version)
    canonical, family = resolved.name, resolved.family
    family_arch = FAMILY_ARCH[family]
    if arch is not None and normalize_arch(arch) != family_arch:
        raise CompatError(f"{canonical} is an {family_arch} machine, not {normalize_arch(arch)}")
    arch = family_arch

    build = build_for(arch, version) if version is not None else None
    if loaded is None:
        if build is None:
            raise CompatError(f"vmig bundles the -dump-vmstate of QEMU {', '.join(BUNDLED)} ({arch}) only, "
                              f"not {qemu}",
                              hint=f"give the destination's dump: qemu-system-{arch} -M <machine> -dump-vmstate "
                                   "FILE, then --schema FILE; or profile it: vmig profile -o dest.json -- QEMU ARGS")
        loaded = build.schema()
        release: str | None = build.qemu
    else:
        release = qemu
        if version is None:
            # ramfb-dev and VFIODisplay came together in 8.2: a dump with ramfb-dev is >= 8.2
            notes.append("QEMU version not given: VFIODisplay is judged by the dump (it has the ramfb-dev vmsd iff "
                         "QEMU >= 8.2); capability rules are skipped")
    if build is None:  # another QEMU version: the machine facts of the nearest bundled build stand in
        near = _nearest_series(version)
        build = build_for(arch, near)
        notes.append(f"the sections a {family} machine creates and the state without a vmsd are taken from "
                     f"QEMU {build.qemu if build else near} (vmig has none for this version)")
    info = build.find(canonical) if build is not None else None
    if info is None and build is not None and version is None:
        info = next((m for m in build.machines.values() if m.family == family and m.stock is not None
                     and m.version and m.version[:2] == resolved.compat_version), None)

    entries: list[Entry] = []
    extra: dict[str, VmsdKnowledge] = {}
    _add_migration_handlers(entries, extra, version)
    stock = info.stock if info is not None else None
    if stock is not None:
        origin = f"{info.name} of {build.describe()}, as a stock VM of it saves itself"
        for row in stock.sections:
            if row["idstr"] != "ram":
                entries.append(Entry(row["vmsd"], row["idstr"], row["instance_id"], origin, row["version_id"]))
        _add_seen(extra, loaded, build, origin)
    else:
        fam = destinations_data()["qemu"].get(_nearest_series(version), {}).get("families", {}).get(family)
        if fam is None:
            raise CompatError(f"vmig has no data of a {canonical} machine"
                              + (f" on QEMU {release}" if release else ""),
                              hint="profile the destination: vmig profile -o dest.json -- QEMU ARGS...")
        for idstr, instance, vmsd, _version in fam["sections"]:
            if idstr != "ram":
                entries.append(Entry(vmsd, idstr, instance, f"{family} machine (captured: {', '.join(fam['from'])})"))
    # what x86 captures showed of state without a vmsd (data/destinations.json.gz is x86 only)
    known = destinations_data()["qemu"].get(_series_for(version) or _nearest_series(version), {}) \
        if arch == "x86_64" else {}
    for name, row in known.get("vmsds", {}).items():
        have = extra.get(name)
        seen = tuple(sorted({*row["subsections_seen"], *(have.seen if have else ())}))
        extra[name] = VmsdKnowledge(name, row["version_id"], None, None, seen,
                                    origin=have.origin if have else f"captures of QEMU {known.get('release')}")
    vfio_display = has_fact(version, VFIO_DISPLAY)
    if vfio_display is None:
        vfio_display = loaded.vmsd("ramfb-dev") is not None
    extra["vfio"] = VmsdKnowledge("vfio", 1, None, None, origin="hw/vfio/migration.c register_savevm_live(id, "
                                  "VMSTATE_INSTANCE_ID_ANY, 1, ...)")
    extra["VFIOPCIDevice"] = VmsdKnowledge("VFIOPCIDevice", 1, 1, (VFIO_DISPLAY,) if vfio_display else (),
                                           origin=next(f.source for f in VERSION_FACTS if f.name == VFIO_DISPLAY))
    if vfio_display:
        extra[VFIO_DISPLAY] = VmsdKnowledge(VFIO_DISPLAY, 1, 1, (), origin="hw/vfio/pci.c vmstate_vfio_display")

    qom_devices, device_entries = _device_entries(loaded, devices, version, release, notes)
    entries += device_entries

    caps = build.capabilities if build is not None and _series_for(version) else None
    validated = None
    if version is not None:
        order = caps or ("x-ignore-shared", "mapped-ram")
        validated = tuple(c for c in order if any(f.name == f"validate:{c}" for f in VERSION_FACTS)
                          and has_fact(version, f"validate:{c}"))
    unknown_caps = [c for c in capabilities if caps is not None and c not in caps]
    if unknown_caps:
        raise CompatError(f"QEMU {release} has no migration capability {', '.join(unknown_caps)}")

    size = parse_size(memory) if memory else None
    ram_id = info.default_ram_id if info is not None and info.default_ram_id else MAIN_RAM[arch]
    blocks = (RamBlockFact(ram_id, size, size, "-m"),) if size else None
    notes.append(f"RAM blocks: {ram_id} checked against -m {size:#x}; other blocks' names and sizes not checked "
                 "(profile the destination to check them all)" if size else
                 "RAM block names and sizes not checked (give --memory, or profile the destination)")
    cpregs = None
    cpregs_origin = ""
    if stock is not None and stock.cpus:
        cpregs = {(idstr, inst or 0): regs for idstr, inst, regs in stock.cpus}
        cpregs_origin = f"a stock {info.name} with {' '.join(build.stock_args[-2:])} on {build.describe()}"
    page_bits = stock.target_page_bits if stock is not None else None
    return Destination(qemu=release, version=version, machine=canonical, devices=qom_devices,
                       capabilities=frozenset(capabilities), memory=size,
                       schema=loaded, entries=tuple(entries), extra=extra, validated=validated,
                       known_capabilities=caps, notes=tuple(notes), section_footers=section_footers,
                       arch=arch, target_page_bits=page_bits if page_bits is not None else PAGE_BITS_MIN[arch],
                       ram_blocks=blocks, cpregs=cpregs, cpregs_origin=cpregs_origin)


def _newest_build_with(machine: str | None, arch: str | None) -> str:
    """The newest bundled QEMU whose build has `machine` (for a destination given without --qemu)."""
    if machine is None:
        raise CompatError("give the destination's QEMU version (--qemu) or its -dump-vmstate (--schema)")
    name = machine.strip()
    parsed = parse_machine_name(name)
    wanted = MachineType(parsed.family, parsed.version).name if parsed and parsed.version else name
    candidates = [b for b in all_builds() if (arch is None or b.arch == normalize_arch(arch)) and b.find(wanted)]
    if not candidates:
        raise CompatError(f"no bundled QEMU build has machine type {name!r}; give --qemu and --schema",
                          hint="vmig machines lists the bundled builds' machines")
    return max(candidates, key=lambda b: b.version).qemu


#: the RAM block -m sizes, by architecture (the machines' default-ram-id, query-machines)
MAIN_RAM = {"x86_64": "pc.ram", "aarch64": "mach-virt.ram"}
#: TARGET_PAGE_BITS_MIN: what a destination assumes when the configuration has no target-page-bits
PAGE_BITS_MIN = {"x86_64": 12, "aarch64": 10}


def _add_seen(extra: dict[str, VmsdKnowledge], schema: Schema, build: Build, origin: str) -> None:
    """Versions and subsections seen, for vmsds without dc->vmsd, from every stock VM of the build."""
    for m in build.machines.values():
        for row in m.stock.sections if m.stock is not None else ():
            name = row["vmsd"]
            if schema.vmsd(name) is not None:
                continue
            have = extra.get(name)
            seen = tuple(sorted({*row["subsections"], *(have.seen if have else ())}))
            extra[name] = VmsdKnowledge(name, row["version_id"], None, None, seen, origin=have.origin if have else
                                        f"stock VMs of {build.describe()}")


def _device_entries(schema: Schema, devices: Sequence[str], version: tuple[int, ...] | None, release: str | None,
                    notes: list[str]) -> tuple[tuple[str, ...], list[Entry]]:
    entries: list[Entry] = []
    qom_devices = tuple(d.split(",", 1)[0].strip() for d in devices if d.strip())
    for spec in (d for d in devices if d.strip()):
        qom, props = _device_spec(spec)
        vmsd = device_vmsd(schema, qom)
        if vmsd == "vfio" and not _vfio_migrates(version, props):
            notes.append(f"--device {spec}: no VFIO savevm entry (migration is off: "
                         + ("enable-migration=off" if has_fact(version, "vfio-migration-by-default") else
                            f"QEMU {release} needs x-enable-migration=on") + ")")
        elif vmsd is None:
            notes.append(f"--device {qom}: no vmstate in {schema.origin} (it adds no savevm entry)")
        else:
            entries.append(Entry(vmsd, None, None, f"--device {qom}"))
        for more in DEVICE_EXTRA_VMSDS.get(qom, ()):
            entries.append(Entry(more, None, None, f"--device {qom} (its secondary bus)"))
    return qom_devices, entries


def destination_from_profile(profile: Profile, *, devices: Sequence[str] = (), capabilities: Sequence[str] = ()
                             ) -> Destination:
    """The destination a `vmig profile` describes: exactly its sections, versions, RAM blocks, page bits,
    CPU registers, capabilities and schema. `devices` and `capabilities` add to it (a capability set
    later over QMP, a device whose state its own save did not carry)."""
    doc = profile.doc
    version = parse_version(profile.qemu_version)
    loaded = read_dump(doc["schema"], origin=f"-dump-vmstate in {profile.origin}")
    origin = f"{profile.origin} (its own saved state)"
    entries = [Entry(row["vmsd"], row["idstr"], row["instance_id"], origin, row["version_id"])
               for row in doc["sections"]]
    extra: dict[str, VmsdKnowledge] = {}
    _add_migration_handlers(entries, extra, version)  # a VM saves these only when it has something to send
    for row in doc["sections"]:
        if loaded.vmsd(row["vmsd"]) is None:
            have = extra.get(row["vmsd"])
            seen = tuple(sorted({*row["subsections"], *(have.seen if have else ())}))
            extra[row["vmsd"]] = VmsdKnowledge(row["vmsd"], row["version_id"], None, None, seen, origin=origin)
    vfio_display = has_fact(version, VFIO_DISPLAY)
    extra.setdefault("vfio", VmsdKnowledge("vfio", 1, None, None, origin="hw/vfio/migration.c"))
    extra.setdefault("VFIOPCIDevice", VmsdKnowledge("VFIOPCIDevice", 1, 1, (VFIO_DISPLAY,) if vfio_display else (),
                                                    origin="hw/vfio/pci.c"))
    notes: list[str] = [f"the destination is the one {profile.origin} describes ({' '.join(doc['command'])[:200]})"]
    # devices whose vmsd's .needed said no when it saved itself (e.g. ramfb with x-migrate=off) still accept it
    listed = {row["vmsd"] for row in doc["sections"]}
    for dev in doc["devices"]:
        vmsd = device_vmsd(loaded, dev["type"])
        if vmsd is not None and vmsd != "vfio" and vmsd not in listed:
            entries.append(Entry(vmsd, None, None, f"-device {dev['type']} ({dev['path']}), not in its saved state"))
    qom_devices, device_entries = _device_entries(loaded, devices, version, profile.qemu_version, notes)
    entries += device_entries
    known_caps = tuple(doc["capabilities"]["known"])
    unknown_caps = [c for c in capabilities if c not in known_caps]
    if unknown_caps:
        raise CompatError(f"QEMU {profile.qemu_version} has no migration capability {', '.join(unknown_caps)}")
    caps = frozenset({*doc["capabilities"]["set"], *capabilities})
    validated = tuple(c for c in known_caps if any(f.name == f"validate:{c}" for f in VERSION_FACTS)
                      and has_fact(version, f"validate:{c}"))
    blocks = tuple(RamBlockFact(b["name"], b["used"], b["max"], f"{profile.origin} (info ramblock)")
                   for b in doc["ram_blocks"])
    cpregs = {(c["idstr"], c["instance_id"] or 0): tuple(c["cpreg_indexes"]) for c in doc["cpus"]}
    arch = profile.arch
    bits = doc["target_page_bits"]
    return Destination(qemu=profile.qemu_version, version=version, machine=profile.machine,
                       devices=tuple(d["type"] for d in doc["devices"]) + qom_devices, capabilities=caps,
                       memory=None, schema=loaded, entries=tuple(entries), extra=extra, validated=validated,
                       known_capabilities=known_caps, notes=tuple(notes), section_footers=doc["section_footers"],
                       arch=arch, target_page_bits=bits if bits is not None else PAGE_BITS_MIN.get(arch),
                       ram_blocks=blocks, ram_complete=True, cpregs=cpregs or None,
                       cpregs_origin=f"{profile.origin} (its own saved CPU state)")


def destination_for(stream: MigrationStream, *, profile: str | Path | None = None, machine: str | None = None,
                    qemu: str | None = None, schema: str | Path | None = None, devices: Sequence[str] = (),
                    capabilities: Sequence[str] = (), memory: int | str | None = None, section_footers: bool = True,
                    arch: str | None = None) -> Destination:
    """The destination `vmig check` judges `stream` against: exactly the VM a `vmig profile` file
    describes (`devices` and `capabilities` added), else `destination` of the other arguments with
    the machine type by default the schema file's, else the one the stream names.

    Raises:
        InputError: no machine type anywhere (no --target, no schema, none in the stream).
        CompatError: the destination cannot exist.
    """
    if profile is not None:
        from ..profile import read_profile

        return destination_from_profile(read_profile(profile), devices=devices, capabilities=capabilities)
    if machine is None and schema is None:
        if stream.configuration is None:
            raise InputError("the stream names no machine type: give --target")
        machine = stream.configuration.machine
        if qemu is None and not stream_machine_archs(machine):
            # not resolved as an alias: riscv64's virt would otherwise be judged as aarch64's
            raise CompatError(f"no bundled QEMU build has machine type {machine!r} (a stream names its "
                              "machine's canonical type); give --qemu and --schema",
                              hint="vmig machines lists the bundled builds' machines")
    return destination(qemu=qemu, machine=machine, devices=devices, schema=schema, capabilities=capabilities,
                       memory=memory, section_footers=section_footers, arch=arch)


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
    caps = sorted(stream_capabilities(config))
    blocks = ram_block_list(stream)
    footers = next((s.footer for s in stream.sections), True)
    dest = destination(qemu=qemu, machine=config.machine, devices=devices, schema=schema, capabilities=caps,
                       section_footers=footers)
    main = MAIN_RAM.get(dest.arch or "")
    # every block that VM migrates; only the main RAM is known not to be resizeable
    facts = tuple(RamBlockFact(b.idstr, b.used_length, b.used_length if b.idstr == main else None,
                               f"written by {stream.source or 'the stream'}") for b in blocks)
    main_size = next((b.used_length for b in blocks if b.idstr == main), None)
    known = {(e.idstr, e.instance_id) for e in dest.entries}
    entries = list(dest.entries)
    for section in stream.sections:
        if section.long_header and (section.idstr, section.instance_id) not in known:
            known.add((section.idstr, section.instance_id))
            entries.append(Entry(section_vmsd_name(section), section.idstr, section.instance_id,
                                 f"written by {stream.source or 'the stream'}"))
    notes = tuple(n for n in dest.notes if not n.startswith("RAM block"))
    # an arm CPU's register list is in its own saved state: the VM that wrote the stream accepts exactly it
    cpregs = {(s.idstr, s.instance_id or 0): tuple(f.value) for s in stream.sections if s.type == "section_full"
              and isinstance(s.body, VmstateBody) for f in s.body.fields if f.name == "cpreg_vmstate_indexes"}
    if cpregs:
        dest = replace(dest, cpregs=cpregs, cpregs_origin=f"the CPU state {stream.source or 'the stream'} carries")
    return replace(dest, entries=tuple(entries), memory=main_size, ram_blocks=facts or None, ram_complete=bool(facts),
                   notes=notes + (
        (f"the destination is the VM that wrote {stream.source or 'the other stream'}: its machine, capabilities, "
        f"RAM size, section footers and every section it wrote"),))
