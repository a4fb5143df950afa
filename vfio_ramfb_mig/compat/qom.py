"""The slice of QEMU's QOM type tree and device properties that vmig reasons about.

Globals (machine compat arrays and ``-global``) match an object by QOM type including
its parents and interfaces (``object_dynamic_cast``), so a global on ``vfio-pci`` also
sets a ``vfio-pci-nohotplug``, while one on ``vfio-pci-nohotplug`` never reaches a plain
``vfio-pci``. `QOM_PARENTS` is that hierarchy for the types vmig encodes (and the
types whose globals reach them); `PROPERTIES` gives type, default and origin of each
property vmig reads. Values are parsed as QEMU's string input visitor does, with its
error messages.

Imports only `vfio_ramfb_mig.errors`.

References:
    qom/object.c           object_dynamic_cast, object_property_find_err ("Property '%s.%s' not found")
    qapi/qapi-util.c       qapi_bool_parse (on/yes/true/y, off/no/false/n)
    qapi/qapi-visit-core.c input_type_enum ("Parameter '%s' does not accept value '%s'")
    qapi/common.json       OnOffAuto;  qapi/migration.json  ZeroPageDetection
    hw/vfio/pci.c          vfio_pci_dev_info, vfio_pci_nohotplug_dev_info, vfio_pci_dev_properties,
                           vfio_pci_dev_nohotplug_properties
    hw/display/ramfb-standalone.c  ramfb_info, ramfb_properties
    hw/pci/pci.c           pci_device_type_info, pci_props
    hw/core/sysbus.c       sysbus_types (sys-bus-device, dynamic-sysbus-device)
    hw/nvram/fw_cfg.c      fw_cfg_info, fw_cfg_io_info, fw_cfg_mem_info and their properties
    migration/migration.c  migration_type;  migration/options.c  migration_properties
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from vfio_ramfb_mig.errors import CompatError

PropValue = bool | str
OnOffAuto = Literal["on", "off", "auto"]

ON_OFF_AUTO: tuple[str, ...] = ("auto", "on", "off")  # QAPI order: auto=0, on=1, off=2
ZERO_PAGE_DETECTION: tuple[str, ...] = ("none", "legacy", "multifd")

# type -> parent type (TypeInfo.parent). TYPE_OBJECT is the root.
QOM_PARENTS: Mapping[str, str | None] = {
    "object": None,
    "device": "object",
    "pci-device": "device",
    "vfio-pci": "pci-device",
    "vfio-pci-nohotplug": "vfio-pci",
    "sys-bus-device": "device",
    "dynamic-sysbus-device": "sys-bus-device",
    "ramfb": "dynamic-sysbus-device",
    "fw_cfg": "sys-bus-device",
    "fw_cfg_io": "fw_cfg",
    "fw_cfg_mem": "fw_cfg",
    # Not really a device (never realized), but a TYPE_DEVICE child so that -global reaches it.
    "migration": "device",
}

# TypeInfo.interfaces; object_dynamic_cast also matches these names.
QOM_INTERFACES: Mapping[str, tuple[str, ...]] = {
    "vfio-pci": ("pci-express-device", "conventional-pci-device"),
}


def type_ancestry(type_name: str) -> tuple[str, ...]:
    """The type itself, its parents up to ``object``, then every interface they implement.

    A type outside `QOM_PARENTS` only matches itself.
    """
    chain: list[str] = []
    current: str | None = type_name
    while current is not None:
        chain.append(current)
        current = QOM_PARENTS.get(current)
    interfaces = [iface for ancestor in chain for iface in QOM_INTERFACES.get(ancestor, ())]
    return tuple(chain + interfaces)


def is_a(type_name: str, driver: str) -> bool:
    """True when a global for ``driver`` applies to an object of ``type_name`` (object_dynamic_cast)."""
    return driver in type_ancestry(type_name)


PropKind = Literal["bool", "enum"]


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One qdev property: the type that defines it, its QAPI kind and its default."""

    owner: str
    name: str
    kind: PropKind
    default: PropValue
    source: str
    choices: tuple[str, ...] = ()
    since: str | None = None

    def parse(self, raw: PropValue) -> PropValue:
        """Turn a -device/-global/compat string (or a Python value) into the property's value.

        Raises:
            CompatError: QEMU would reject the value; same message as QEMU.
        """
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if raw in ("on", "yes", "true", "y"):
                return True
            if raw in ("off", "no", "false", "n"):
                return False
            raise CompatError(f"Parameter '{self.name}' expects 'on' or 'off'")
        if isinstance(raw, str) and raw in self.choices:
            return raw
        raise CompatError(f"Parameter '{self.name}' does not accept value '{format_value(raw)}'")


def format_value(value: PropValue) -> str:
    """Spell a value as on the QEMU command line (bools as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


_VFIO_PCI = "vfio_pci_dev_properties (hw/vfio/pci.c)"
_VFIO_NOHOTPLUG = "vfio_pci_dev_nohotplug_properties (hw/vfio/pci.c)"
_PCI = "pci_props (hw/pci/pci.c)"
_MIGRATION = "migration_properties (migration/options.c)"

_SPECS: tuple[PropertySpec, ...] = (
    # vfio-pci (and so vfio-pci-nohotplug)
    PropertySpec("vfio-pci", "display", "enum", "off", _VFIO_PCI, ON_OFF_AUTO),
    PropertySpec("vfio-pci", "enable-migration", "enum", "auto", _VFIO_PCI, ON_OFF_AUTO),
    PropertySpec("vfio-pci", "x-migration-multifd-transfer", "enum", "auto", _VFIO_PCI, ON_OFF_AUTO, "10.0"),
    PropertySpec("vfio-pci", "x-pre-copy-dirty-page-tracking", "enum", "on", _VFIO_PCI, ON_OFF_AUTO),
    PropertySpec("vfio-pci", "x-device-dirty-page-tracking", "enum", "on", _VFIO_PCI, ON_OFF_AUTO),
    PropertySpec("vfio-pci", "migration-events", "bool", False, _VFIO_PCI),
    PropertySpec("vfio-pci", "skip-vsc-check", "bool", True, _VFIO_PCI, since="9.1"),
    # vfio-pci-nohotplug only: a plain vfio-pci has neither property.
    PropertySpec("vfio-pci-nohotplug", "ramfb", "bool", False, _VFIO_NOHOTPLUG, since="3.1"),
    PropertySpec("vfio-pci-nohotplug", "x-ramfb-migrate", "enum", "auto", _VFIO_NOHOTPLUG, ON_OFF_AUTO, "8.2"),
    # pci-device, inherited by vfio-pci
    PropertySpec("pci-device", "x-pcie-extcap-init", "bool", True, _PCI),
    PropertySpec("pci-device", "x-pcie-lnksta-dllla", "bool", True, _PCI),
    PropertySpec("pci-device", "x-pcie-err-unc-mask", "bool", True, _PCI),
    PropertySpec("pci-device", "x-pcie-ari-nextfn-1", "bool", False, _PCI),
    PropertySpec("pci-device", "x-pcie-ext-tag", "bool", True, _PCI),
    # standalone ramfb
    PropertySpec("ramfb", "x-migrate", "bool", True, "ramfb_properties (hw/display/ramfb-standalone.c)",
                 since="8.2"),
    # fw_cfg: ramfb_setup needs DMA
    PropertySpec("fw_cfg_io", "dma_enabled", "bool", True, "fw_cfg_io_properties (hw/nvram/fw_cfg.c)"),
    PropertySpec("fw_cfg_mem", "dma_enabled", "bool", True, "fw_cfg_mem_properties (hw/nvram/fw_cfg.c)"),
    # the migration object: properties that change the stream's bytes
    PropertySpec("migration", "store-global-state", "bool", True, _MIGRATION),
    PropertySpec("migration", "send-configuration", "bool", True, _MIGRATION),
    PropertySpec("migration", "send-section-footer", "bool", True, _MIGRATION),
    PropertySpec("migration", "send-switchover-start", "bool", True, _MIGRATION),
    PropertySpec("migration", "multifd-flush-after-each-section", "bool", False, _MIGRATION),
    PropertySpec("migration", "multifd-clean-tls-termination", "bool", True, _MIGRATION),
    PropertySpec("migration", "x-preempt-pre-7-2", "bool", False, _MIGRATION),
    PropertySpec("migration", "zero-page-detection", "enum", "multifd", _MIGRATION, ZERO_PAGE_DETECTION),
)

PROPERTIES: Mapping[tuple[str, str], PropertySpec] = {(spec.owner, spec.name): spec for spec in _SPECS}
"""(defining type, property name) -> spec, for every property vmig models."""


def find_property(type_name: str, prop: str) -> PropertySpec | None:
    """The spec of ``prop`` as an object of ``type_name`` has it (own or inherited), else None."""
    for ancestor in type_ancestry(type_name):
        spec = PROPERTIES.get((ancestor, prop))
        if spec is not None:
            return spec
    return None


def lacks_property(type_name: str, prop: str) -> bool:
    """True when vmig knows that ``type_name`` has no ``prop``: only a subclass defines it.

    This is how a plain ``vfio-pci`` lacks ``ramfb`` and ``x-ramfb-migrate``. Properties
    vmig does not model are not reported as missing.
    """
    if find_property(type_name, prop) is not None:
        return False
    return any(name == prop and owner != type_name and is_a(owner, type_name) for owner, name in PROPERTIES)


def property_spec(type_name: str, prop: str) -> PropertySpec:
    """Like `find_property`, but an absent property is an error.

    Raises:
        CompatError: QEMU's "Property 'T.p' not found" when vmig knows the type lacks it;
            otherwise a note that vmig does not model the property.
    """
    spec = find_property(type_name, prop)
    if spec is not None:
        return spec
    if lacks_property(type_name, prop):
        hint = "ramfb and x-ramfb-migrate exist only on vfio-pci-nohotplug" if type_name == "vfio-pci" else None
        raise CompatError(f"Property '{type_name}.{prop}' not found", hint=hint)
    raise CompatError(f"vmig does not model property '{prop}' of '{type_name}'")
