"""QEMU machine types, compat properties and device realize rules, as data.

``machines``: every QEMU 10.0 pc-i440fx/pc-q35 machine and name resolution;
``qom``: the QOM types and properties vmig reasons about; ``props``: the hw_compat/
pc_compat arrays and how a machine stacks them; ``realize``: what vfio_realize and the
standalone ramfb decide, and whether their state is in the stream.

References:
    hw/core/machine.c, hw/i386/pc.c, hw/i386/pc_piix.c, hw/i386/pc_q35.c,
    hw/vfio/pci.c, hw/vfio/display.c, hw/vfio/migration.c, hw/display/ramfb-standalone.c
"""

from __future__ import annotations

from vfio_ramfb_mig.compat.machines import (
    FAMILIES,
    MACHINES,
    Family,
    MachineType,
    MachineVersion,
    machine_names,
    resolve_machine,
)
from vfio_ramfb_mig.compat.props import (
    COMPAT_ARRAYS,
    AppliedProp,
    CompatArray,
    CompatProp,
    GlobalProp,
    ResolvedProperty,
    compat_arrays,
    compat_props,
    effective_properties,
    prop_for,
    resolve_property,
)
from vfio_ramfb_mig.compat.qom import OnOffAuto, PropertySpec, PropValue, is_a, type_ancestry
from vfio_ramfb_mig.compat.realize import (
    ASSUMPTIONS,
    RAMFB_SECTION,
    VFIO_DISPLAY_SUBSECTION,
    Decision,
    RealizeResult,
    realize_ramfb,
    realize_vfio_pci,
)

__all__ = [
    "ASSUMPTIONS",
    "COMPAT_ARRAYS",
    "FAMILIES",
    "MACHINES",
    "RAMFB_SECTION",
    "VFIO_DISPLAY_SUBSECTION",
    "AppliedProp",
    "CompatArray",
    "CompatProp",
    "Decision",
    "Family",
    "GlobalProp",
    "MachineType",
    "MachineVersion",
    "OnOffAuto",
    "PropValue",
    "PropertySpec",
    "RealizeResult",
    "ResolvedProperty",
    "compat_arrays",
    "compat_props",
    "effective_properties",
    "is_a",
    "machine_names",
    "prop_for",
    "realize_ramfb",
    "realize_vfio_pci",
    "resolve_machine",
    "resolve_property",
    "type_ancestry",
]
