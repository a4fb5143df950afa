"""Build the stream QEMU would write for one VFIO PCI or ramfb device on a machine type.

The machine type's compat properties and the device's realize rules
(vfio_ramfb_mig.compat.realize) decide what is sent; this module turns the
decision and the device state into records:

    header, configuration (machine name), device sections, EOF, vmdesc

- ``vfio-pci`` (vfio-pci-nohotplug): START "<addr>/vfio" (SETUP_STATE, END_OF_STATE),
  END (END_OF_STATE), FULL (CONFIG_STATE, VFIOPCIDevice, END_OF_STATE), the
  VFIOPCIDevice/VFIODisplay subsection iff the rules say so. vmig cannot make up
  vendor device data, so the END section carries none unless the state has it.
- ``ramfb``: FULL "ramfb-dev" (28 config bytes) iff x-migrate ends up on.

There is no RAM section: QEMU loads such a stream (it only warns when the vmdesc
is missing), and the device state is what vmig is asked for.

Device state comes from `--state`: the JSON `vmig decode --json` prints for the
device's section record (or a whole decode document, from which the first
matching section is taken). Missing values take these defaults:

- ramfb config: 28 zero bytes (what a guest that never ran its firmware has);
- VFIO PCI config: the conventional 256-byte config space of an Intel display
  function 8086:3e92 with MSI (no MSI-X), BARs 0xf0000004/0xe000000c/io 0xc001,
  as in docs (wire-format §8.4); irq state all zero; PCIDevice version_id 2.

Imports: errors, model, compat, vmstate, codec.
References: hw/vfio/migration.c, hw/vfio/pci.c (vmstate_vfio_pci_config),
hw/display/ramfb-standalone.c, migration/savevm.c.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import jsonform
from .codec.decode import decode
from .codec.encode import encode_bytes
from .codec.vmdesc_out import vmdesc_document
from .codec.views import msix_vectors
from .compat.catalog import build_for
from .compat.machines import FAMILY_ARCH, QEMU_VERSION, MachineType, resolve_machine
from .compat.props import GlobalProp
from .compat.realize import Decision, RealizeResult, realize_ramfb, realize_vfio_pci
from .errors import EncodeError, JsonFormError
from .model import (
    Configuration,
    Eof,
    Field,
    Header,
    MigrationStream,
    Section,
    StructValue,
    Subsection,
    VfioBody,
    VfioItem,
    VmstateBody,
    Vmdesc,
    walk_fields,
)
from .vmstate.builtin import PCI_CONFIG_SIZES, PCI_DEVICE_VERSION, msix_state_size
from .vmstate.compile import RAMFB_CFG_TYPE
from .wire.ramfb import RAMFB_CFG_KEYS
from .wire.stream import QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION

ZERO_RAMFB = dict.fromkeys(RAMFB_CFG_KEYS, 0)

#: Section ids QEMU 10.0.2 gave the first user device in the bundled captures (ramfb-dev):
#: ids are per stream and the loader ignores them, but a familiar number reads better.
FIRST_DEVICE_SECTION_ID = {"pc-q35": 37, "pc-i440fx": 38, "virt": 16}
#: The first free PCI slot on each board (i440fx has the PIIX3 at 00:01.0; virt's gpex root is 00:00.0).
DEFAULT_PCI_ADDR = {"pc-q35": "0000:00:01.0", "pc-i440fx": "0000:00:02.0", "virt": "0000:00:01.0"}


@dataclass(frozen=True)
class DeviceRequest:
    machine: str
    device: str = "vfio-pci"  # "vfio-pci" (vfio-pci-nohotplug) or "ramfb"
    ramfb: bool | None = None
    x_ramfb_migrate: str | None = None
    enable_migration: str | None = None
    display: str | None = None
    x_migrate: bool | None = None
    global_props: tuple[str, ...] = ()
    state: Any = None  # parsed JSON of a decoded section record (or whole document)
    addr: str | None = None
    section_id: int | None = None


@dataclass(frozen=True)
class DeviceStream:
    stream: MigrationStream
    data: bytes
    realize: RealizeResult
    notes: tuple[Decision, ...] = field(default=())


def build_device_stream(req: DeviceRequest) -> DeviceStream:
    """Apply the rules, build the records, encode them, and append the vmdesc."""
    machine = resolve_machine(req.machine)
    globals_ = tuple(GlobalProp.parse(g) for g in req.global_props)
    notes: list[Decision] = []
    section_id = req.section_id if req.section_id is not None else FIRST_DEVICE_SECTION_ID[machine.family]
    if req.device == "ramfb":
        result = realize_ramfb(machine, x_migrate=req.x_migrate, global_props=globals_)
        sections = [_ramfb_section(section_id, _state_ramfb(req.state, "ramfb-dev"))] if result.section_present else []
    elif req.device in ("vfio-pci", "vfio-pci-nohotplug"):
        display = req.display
        if display is None and req.ramfb:
            # ramfb=on needs display=on (QEMU's default is off); asking for ramfb means asking for a display
            display = "on"
            notes.append(Decision("vmig", "display=on, implied by --ramfb (QEMU's default is off; "
                                          "give --display to choose)"))
        result = realize_vfio_pci(machine, ramfb=req.ramfb, x_ramfb_migrate=req.x_ramfb_migrate,
                                  enable_migration=req.enable_migration, display=display, global_props=globals_)
        addr = req.addr or DEFAULT_PCI_ADDR[machine.family]
        sections = _vfio_sections(section_id, f"{addr}/vfio", req.state, bool(result.vfio_display_subsection), notes)
    else:
        raise EncodeError(f"unknown device '{req.device}'; expected vfio-pci or ramfb", path=("device",))
    records: list[Any] = [Header(QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION), _configuration(machine), *sections, Eof()]
    body = encode_bytes(MigrationStream(records=tuple(records), size=0))
    # decode our own bytes to learn every field's size, then describe them as QEMU does
    described = decode(body)
    data = encode_bytes(MigrationStream(records=(*records, Vmdesc(document=vmdesc_document(described))), size=0))
    final = decode(data)
    assert isinstance(final.records[-1], Vmdesc)
    return DeviceStream(stream=final, data=data, realize=result, notes=tuple(notes))


def _configuration(machine: MachineType) -> Configuration:
    """The configuration record: the machine name, and TARGET_PAGE_BITS where the target's page size
    varies (aarch64): QEMU sends it when it is above the minimum, and a destination that gets none
    assumes the minimum (10 on arm) and refuses a 12-bit machine. The value is what a stock VM of
    this machine wrote (compat.catalog)."""
    build = build_for(FAMILY_ARCH[machine.family], ".".join(map(str, QEMU_VERSION)))
    info = build.find(machine.name) if build else None
    page_bits = info.stock.target_page_bits if info and info.stock else None
    if page_bits is None:
        return Configuration(machine=machine.name)
    bits = Subsection("configuration/target-page-bits", 1, (Field("target_page_bits", "uint32", page_bits),))
    return Configuration(machine=machine.name, subsections=(bits,))


# ---------------------------------------------------------------- ramfb


def _ramfb_value(cfg: dict[str, int]) -> StructValue:
    return StructValue("ramfb", 1, (Field("cfg", RAMFB_CFG_TYPE, dict(cfg)),))


def _ramfb_section(section_id: int, cfg: dict[str, int]) -> Section:
    body = VmstateBody("ramfb-dev", 1, (Field("state", "struct", _ramfb_value(cfg)),), origin="builtin")
    return Section("section_full", section_id, "ramfb-dev", 0, 1, body)


# ---------------------------------------------------------------- VFIO


def default_pci_config() -> bytes:
    """A conventional display function's config space (see the module docstring)."""
    config = bytearray(256)

    def put(offset: int, value: int, size: int) -> None:
        config[offset:offset + size] = value.to_bytes(size, "little")

    put(0x00, 0x8086, 2)  # vendor
    put(0x02, 0x3E92, 2)  # device
    put(0x04, 0x0407, 2)  # command: io, memory, bus master, INTx disabled
    put(0x06, 0x0010, 2)  # status: capability list
    put(0x09, 0x030000, 3)  # class: VGA-compatible display controller
    put(0x10, 0xF0000004, 4)  # BAR0: 64-bit memory
    put(0x18, 0xE000000C, 4)  # BAR2: 64-bit prefetchable memory
    put(0x20, 0xC001, 4)  # BAR4: I/O
    put(0x2C, 0x8086, 2)  # subsystem vendor
    put(0x2E, 0x2212, 2)  # subsystem
    put(0x34, 0x40, 1)  # capability pointer
    put(0x3C, 0x0B, 1)  # interrupt line
    put(0x3D, 0x01, 1)  # interrupt pin INTA
    put(0x40, 0x05, 1)  # MSI capability, last in the list
    put(0x42, 0x0081, 2)  # MSI control: 64-bit capable, enabled
    put(0x44, 0xFEE00000, 4)  # MSI address
    put(0x4C, 0x4021, 2)  # MSI data
    return bytes(config)


def _vfio_sections(section_id: int, idstr: str, state: Any, display: bool, notes: list[Decision]) -> list[Section]:
    values = _state_vfio(state)
    config = values.get("config", default_pci_config())
    if len(config) not in PCI_CONFIG_SIZES:
        raise JsonFormError(f"PCI config space must be 256 or 4096 bytes, found {len(config)}",
                            path=("state", "config"))
    vectors = msix_vectors(config)
    pdev = StructValue("PCIDevice", PCI_DEVICE_VERSION, (
        Field("version_id", "int32 le", values.get("version_id", PCI_DEVICE_VERSION)),
        Field("config", "pci config", config),
        Field("irq_state", "pci irq state", values.get("irq_state", [0, 0, 0, 0])),
    ))
    fields = [Field("pdev", "struct", pdev)]
    if vectors:
        msix = values.get("msix", bytes(msix_state_size(vectors)))
        if len(msix) != msix_state_size(vectors):
            raise JsonFormError(f"MSI-X state must be {msix_state_size(vectors)} bytes for the {vectors} vectors "
                                f"the config space announces, found {len(msix)}", path=("state", "msix"))
        fields.append(Field("msix", "msix state", msix))
    elif "msix" in values:
        raise JsonFormError("state has MSI-X bytes but the config space has no MSI-X capability",
                            path=("state", "msix"))
    subsections: tuple[Subsection, ...] = ()
    cfg = values.get("ramfb")
    if display:
        dpy = StructValue("VFIODisplay", 1, (Field("ramfb", "struct", _ramfb_value(cfg or ZERO_RAMFB)),))
        subsections = (Subsection("VFIOPCIDevice/VFIODisplay", 1, (Field("dpy", "struct", dpy),)),)
    elif cfg is not None:
        notes.append(Decision("vmig", "the state's ramfb config is not written: the rules say no "
                                      "VFIOPCIDevice/VFIODisplay subsection"))
    config_state = VmstateBody("VFIOPCIDevice", 1, tuple(fields), subsections, origin="builtin")
    return [
        Section("section_start", section_id, idstr, 0, 1, VfioBody((VfioItem("setup"), VfioItem("end_of_state")))),
        Section("section_end", section_id, idstr, 0, 1, VfioBody((VfioItem("end_of_state"),))),
        Section("section_full", section_id, idstr, 0, 1,
                VfioBody((VfioItem("config", config=config_state), VfioItem("end_of_state")))),
    ]


# ---------------------------------------------------------------- --state


def _state_section(state: Any, want: str) -> Section | None:
    """The decoded section of a --state document: a section record, or a whole decode document."""
    if state is None:
        return None
    if not isinstance(state, dict):
        raise JsonFormError("--state must be a JSON object: a section record of `vmig decode --json`",
                            path=("state",))
    records = state.get("records") if "records" in state else [state]
    if not isinstance(records, list):
        raise JsonFormError("'records' must be a list", path=("state", "records"))
    for index, record in enumerate(records):
        if not isinstance(record, dict) or record.get("type") != "section_full":
            continue
        idstr = record.get("idstr", "")
        if (want == "vfio" and isinstance(idstr, str) and (idstr == "vfio" or idstr.endswith("/vfio"))) \
                or idstr == want:
            try:
                section = jsonform.from_json({"records": [record]}).records[0]
            except JsonFormError as exc:
                raise JsonFormError(exc.message, path=("state", "records", index) + exc.path[2:]) from exc
            assert isinstance(section, Section)
            return section
    raise JsonFormError(f"--state has no section_full record for {'a */vfio device' if want == 'vfio' else want}",
                        path=("state",))


def _find_cfg(fields: tuple[Field, ...], subsections: tuple[Subsection, ...]) -> dict[str, int] | None:
    return next((f.value for f in walk_fields(fields, subsections)
                 if f.type == RAMFB_CFG_TYPE and isinstance(f.value, dict)), None)


def _state_ramfb(state: Any, idstr: str) -> dict[str, int]:
    section = _state_section(state, idstr)
    if section is None:
        return dict(ZERO_RAMFB)
    body = section.body
    cfg = _find_cfg(body.fields, body.subsections) if isinstance(body, VmstateBody) else None
    if cfg is None:
        raise JsonFormError("--state record has no ramfb cfg field", path=("state", "fields"))
    return cfg


def _state_vfio(state: Any) -> dict[str, Any]:
    section = _state_section(state, "vfio")
    if section is None:
        return {}
    body = section.body
    config = next((i.config for i in body.items if i.kind == "config"), None) if isinstance(body, VfioBody) else None
    if config is None:
        raise JsonFormError("--state record has no VFIO config item", path=("state", "vfio", "items"))
    values: dict[str, Any] = {}
    for f in config.fields:
        if isinstance(f.value, StructValue) and f.value.vmsd_name == "PCIDevice":
            for g in f.value.fields:
                key = {"version_id": "version_id", "pci config": "config", "pci irq state": "irq_state"}.get(
                    g.name if g.name == "version_id" else g.type)
                if key:
                    values[key] = g.value
        elif f.type == "msix state":
            values["msix"] = f.value
    cfg = _find_cfg((), config.subsections)
    if cfg is not None:
        values["ramfb"] = cfg
    return values

