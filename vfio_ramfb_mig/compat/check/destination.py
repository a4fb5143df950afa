"""The destination a stream is judged against, and how vmig builds one.

A destination is a QEMU version (its `-dump-vmstate`, bundled for 10.0 and 7.2, or
given as a file), a machine type, the devices it has beyond the machine's own
(`-device`), its validated migration capabilities and, optionally, its RAM size.
Its savevm entries (what QEMU's `find_se` can find) are the machine's own (from the
bundled destinations data), ``ram``, and one per ``--device TYPE``.

Imports: errors, model, compat.machines, vmstate.dump, compat.check.{qemu_facts,
stream_facts, destination_data}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ...errors import CompatError
from ...model import MigrationStream
from ...vmstate.dump import BUNDLED, BUNDLED_RELEASE, Schema, bundled_schema, read_dump
from ..machines import resolve_machine_for
from .destination_data import destinations_data
from .qemu_facts import VERSION_FACTS, VFIO_DISPLAY, has_fact
from .stream_facts import pc_ram, section_vmsd_name, stream_capabilities

_SIZE_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgGtT]?)(?:i?[bB])?$")


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
    resolved = resolve_machine_for(machine, version)
    canonical, family = resolved.name, resolved.family

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
    caps = sorted(stream_capabilities(config))
    ram = pc_ram(stream)
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
