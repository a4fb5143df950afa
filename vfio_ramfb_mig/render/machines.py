"""Machine types and their effective compat properties as rich tables (`vmig machines`)."""

from __future__ import annotations

from rich.table import Table

from ..compat.machines import MACHINES, MachineType
from ..compat.props import compat_props, effective_properties

#: drivers whose compat entries change what vmig encodes or decodes
FOCUS_DRIVERS = ("ramfb", "vfio-pci-nohotplug", "vfio-pci", "migration")


def machines_table() -> Table:
    table = Table(title="machine types QEMU 10.0 defines (x86_64)")
    for column in ("machine", "alias", "compat arrays", "ramfb x-migrate", "x-ramfb-migrate", "notes"):
        table.add_column(column)
    for machine in sorted(MACHINES, key=lambda m: (m.family, m.version)):
        arrays = sorted({p.array for p in compat_props(machine)}, key=lambda a: a)
        ramfb = _value(machine, "ramfb", "x-migrate", "on")
        vfio = _value(machine, "vfio-pci-nohotplug", "x-ramfb-migrate", "auto")
        notes = "deprecated" if machine.deprecated else ""
        table.add_row(machine.name, machine.alias or "", str(len(arrays)), ramfb, vfio, notes)
    return table


def _value(machine: MachineType, driver: str, prop: str, default: str) -> str:
    entry = next((p for p in effective_properties(machine) if p.driver == driver and p.property == prop), None)
    return f"{entry.value} ({entry.array})" if entry else f"{default} (default)"


def machine_props_table(machine: MachineType, *, everything: bool = False) -> Table:
    title = f"{machine.name}: effective compat properties" + ("" if everything else
                                                             " (drivers vmig encodes; --all for every one)")
    table = Table(title=title)
    for column in ("driver", "property", "value", "set by", "source"):
        table.add_column(column)
    for entry in effective_properties(machine):
        if everything or entry.driver in FOCUS_DRIVERS:
            table.add_row(entry.driver, entry.property, entry.value, entry.array, entry.source)
    return table
