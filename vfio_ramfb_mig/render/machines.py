"""Machine types and their effective compat properties as rich tables (`vmig machines`)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..compat.catalog import JUDGED_FAMILIES, Build, MachineInfo, source_compat
from ..compat.machines import MACHINES, MachineType, resolve_machine
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


def build_table(build: Build, *, everything: bool = False) -> Table:
    """The machine types of one bundled build (the families vmig judges, or all with `everything`)."""
    shown = [m for m in build.machines.values() if everything or m.family in JUDGED_FAMILIES]
    others = len(build.machines) - len(shown)
    caption = f"{others} other machine types: --all lists them" if others else None
    table = Table(title=f"{build.describe()}: machine types", caption=caption)
    for column in ("machine", "alias", "compat props", "stock VM: sections", "RAM blocks", "page bits", "notes"):
        table.add_column(column)
    for m in sorted(shown, key=lambda m: (m.family, m.version or (), m.name)):
        props = "not reported" if m.compat_props is None else str(len(m.compat_props))
        stock = m.stock
        notes = ", ".join(filter(None, ("default" if m.is_default else "", "deprecated" if m.deprecated else "",
                                        f"stock VM: {m.stock_error[:60]}" if m.stock_error else "")))
        table.add_row(m.name, m.alias or "", props, str(len(stock.sections)) if stock else "",
                      str(len(stock.ram)) if stock else "", str(stock.target_page_bits or "") if stock else "", notes)
    return table


def machine_view(build: Build, machine: MachineInfo, *, everything: bool = False) -> Group:
    """One machine of one build: what QEMU says of it, its compat properties, and its stock VM."""
    parts: list = []
    head = Text(f"{machine.name} on {build.describe()}: {machine.description}")
    facts = [f"default RAM block {machine.default_ram_id}" if machine.default_ram_id else "",
             f"default CPU {machine.default_cpu_type}" if machine.default_cpu_type else "",
             f"alias {machine.alias}" if machine.alias else "", "deprecated" if machine.deprecated else ""]
    head.append("\n" + "; ".join(f for f in facts if f))
    parts.append(head)
    typed = _typed(machine.name) if build.qemu.startswith("10.0") else None
    source = source_compat(build, machine.name)
    if typed is not None:
        parts.append(machine_props_table(typed, everything=everything))
    elif source is not None:
        title = (f"{machine.name}: compat properties from QEMU {source.release}'s source, in the order QEMU applies "
                 "them (the last entry for a property wins)" + ("" if everything else "; drivers vmig encodes, --all "
                                                                "for every one"))
        table = Table(title=title)
        for column in ("driver", "property", "value", "set by", "source"):
            table.add_column(column)
        rows = [p for p in source.props if everything or p[0] in FOCUS_DRIVERS]
        for driver, prop, value, array, file in rows:
            table.add_row(driver, prop, value, array, f"{array} ({file})")
        parts.append(table if rows else Text(f"{machine.name}: {len(source.props)} compat properties from QEMU "
                                             f"{source.release}'s source, none for the drivers vmig encodes "
                                             "(--all lists them)"))
    elif machine.compat_props is not None:
        table = Table(title=f"{machine.name}: compat properties, as QEMU {build.qemu} reports them "
                            "(query-machines), in the order it applies them")
        for column in ("driver", "property", "value"):
            table.add_column(column)
        for driver, prop, value in machine.compat_props:
            table.add_row(driver, prop, value)
        parts.append(table)
    else:
        parts.append(Text(f"compat properties: QEMU {build.qemu} does not report them (query-machines has them "
                          "from 9.1 on); vmig profile records the values a running destination has"))
    if source is not None:
        versioned = [o for o in source.options if any(ch.isdigit() for ch in o[2])]
        if versioned:
            table = Table(title=f"{machine.name}: machine class options its version functions set "
                                f"({source.options_file}, QEMU {source.release})")
            for column in ("field", "value", "set by"):
                table.add_column(column)
            for field_, value, function in versioned:
                table.add_row(field_, value, function)
            parts.append(table)
    if machine.stock is not None:
        stock = machine.stock
        table = Table(title=f"a stock {machine.name} ({' '.join(build.stock_args)}) saves these sections")
        for column in ("idstr", "instance", "version", "vmsd"):
            table.add_column(column)
        for row in stock.sections:
            table.add_row(row["idstr"], str(row["instance_id"]), str(row["version_id"]), row["vmsd"])
        parts.append(table)
        ram = ", ".join(f"{n} {size:#x}" for n, size in stock.ram)
        cpus = "; ".join(f"{idstr} {len(regs)} cpregs" for idstr, _, regs in stock.cpus)
        parts.append(Text(f"RAM blocks: {ram}\ntarget page bits: {stock.target_page_bits or 'not sent (the minimum)'}"
                          + (f"\nCPU: {cpus}" if cpus else "")))
    elif machine.stock_error:
        parts.append(Text(f"stock VM: {machine.stock_error}"))
    return Group(*parts)


def _typed(name: str) -> MachineType | None:
    try:
        return resolve_machine(name)
    except Exception:  # a machine vmig has no compat tables for (not pc-i440fx/pc-q35/virt)
        return None
