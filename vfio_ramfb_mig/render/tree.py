"""model -> rich Tree (`vmig decode`) and the one-table summary (`vmig decode --summary`).

Renderers build and return rich objects; they never print. Every record line
starts with its offset and length, so a reader can go straight to the bytes.

Imports: rich, model, codec.views/text, wire.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..codec.text import printable
from ..model import (
    Blob,
    Command,
    Configuration,
    Eof,
    Field,
    Header,
    MigrationStream,
    OpaqueBody,
    RamBody,
    RamMarker,
    RamMemSize,
    RamPages,
    Section,
    Span,
    StructValue,
    Subsection,
    VfioBody,
    VmstateBody,
    Vmdesc,
    walk_fields,
)
from ..vmstate.compile import RAMFB_CFG_TYPE
from ..wire.primitives import TIMER_NOT_PENDING
from ..wire.ramfb import DRM_FORMATS, fourcc_text

SECTION_LABEL = {"section_start": "START", "section_part": "PART", "section_end": "END", "section_full": "FULL"}
#: at most this many array elements / bytes are shown inline
SHOW_ITEMS = 8
SHOW_BYTES = 16


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def _at(span: Span | None) -> Text:
    if span is None:
        return Text()
    return Text.assemble((f"{span.offset:#010x}", "vmig.offset"), (f" +{span.length:<6} ", "vmig.length"))


def selected(section: Section, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(section.idstr, p) or p in section.idstr for p in patterns)


def stream_tree(stream: MigrationStream, *, sections: tuple[str, ...] = (), title: str | None = None) -> Tree:
    vmdesc = "vmdesc" if stream.vmdesc else "no vmdesc"
    root = Tree(Text.assemble((title or stream.source or "stream", "vmig.title"),
                              (f"  {stream.size:,} bytes, {len(stream.records)} records, {vmdesc}", "vmig.dim")))
    for record in stream.records:
        if isinstance(record, Section):
            if selected(record, sections):
                section_node(root, record)
        elif not sections:
            record_node(root, record)
    return root


def record_node(parent: Tree, record: Any) -> None:
    at = _at(record.span)
    if isinstance(record, Header):
        parent.add(at + Text.assemble(("header", "vmig.kind"), f"  magic QEVM, version {record.version}"))
    elif isinstance(record, Configuration):
        node = parent.add(at + Text.assemble(("configuration", "vmig.kind"), "  machine ",
                                             (printable(record.machine), "vmig.value")))
        for sub in record.subsections:
            subsection_node(node, sub)
    elif isinstance(record, Command):
        extra = f" data {record.data.hex()}" if record.data else ""
        parent.add(at + Text.assemble(("COMMAND", "vmig.kind"), f"  {record.name} (cmd {record.cmd}){extra}"))
    elif isinstance(record, Eof):
        parent.add(at + Text("EOF", style="vmig.kind"))
    elif isinstance(record, Vmdesc):
        doc = record.document if isinstance(record.document, dict) else {}
        devices = len(doc.get("devices", [])) if isinstance(doc.get("devices"), list) else 0
        parent.add(at + Text.assemble(("vmdesc", "vmig.kind"),
                                      f"  JSON description of {devices} device sections, page size "
                                      f"{doc.get('page_size', '?')}"))


def section_node(parent: Tree, section: Section) -> None:
    label = _at(section.span) + Text.assemble(
        (SECTION_LABEL[section.type], "vmig.kind"), " ", (printable(section.idstr), "vmig.name"),
        (f"  id {section.section_id}", "vmig.dim"))
    if section.long_header:
        label.append(f"  instance {section.instance_id}  version {section.version_id}", style="vmig.dim")
    if not section.footer:
        label.append("  (no footer)", style="vmig.dim")
    body = section.body
    if isinstance(body, VmstateBody):
        label.append(f"  [{body.vmsd_name} v{body.version}, {'built-in' if body.origin == 'builtin' else 'vmdesc'}]",
                     style="vmig.dim")
        node = parent.add(label)
        fields_nodes(node, body.fields, body.subsections)
    elif isinstance(body, RamBody):
        ram_node(parent.add(label), body)
    elif isinstance(body, VfioBody):
        vfio_node(parent.add(label), body)
    elif isinstance(body, OpaqueBody):
        label.append(f"  opaque {body.data.length:,} bytes: {body.reason}", style="vmig.warn")
        parent.add(label)


def fields_nodes(node: Tree, fields: Iterable[Field], subsections: Iterable[Subsection]) -> None:
    for f in fields:
        field_node(node, f)
    for sub in subsections:
        subsection_node(node, sub)


def subsection_node(parent: Tree, sub: Subsection) -> None:
    node = parent.add(_at(sub.span) + Text.assemble(("subsection ", "vmig.kind"), (printable(sub.name), "vmig.name"),
                                                    (f" v{sub.version}", "vmig.dim")))
    fields_nodes(node, sub.fields, sub.subsections)


def field_node(parent: Tree, f: Field) -> None:
    label = _at(f.span) + Text.assemble((printable(f.name), "vmig.field"), (f"  {printable(f.type)}", "vmig.dim"))
    value = f.value
    if isinstance(value, StructValue):
        label.append(f"  {value.vmsd_name} v{value.version}", style="vmig.dim")
        fields_nodes(parent.add(label), value.fields, value.subsections)
        return
    if isinstance(value, list) and value and isinstance(value[0], StructValue):
        node = parent.add(label + Text(f"  [{len(value)}]", style="vmig.dim"))
        for i, item in enumerate(value):
            fields_nodes(node.add(Text(f"[{i}] {item.vmsd_name} v{item.version}", style="vmig.dim")),
                         item.fields, item.subsections)
        return
    label.append("  = ")
    label.append(value_text(f.type, value))
    node = parent.add(label)
    if f.info:
        info_nodes(node, f.type, f.info)


def value_text(ftype: str, value: Any) -> Text:
    if isinstance(value, bool):
        return Text(str(value).lower(), style="vmig.value")
    if isinstance(value, int):
        if ftype == "timer" and value == TIMER_NOT_PENDING:
            return Text("not pending", style="vmig.value")
        return Text(f"{value}" if -10 < value < 10 else f"{value} ({value & ((1 << 64) - 1):#x})", style="vmig.value")
    if isinstance(value, (bytes, bytearray)):
        if not any(value):
            return Text(f"{len(value)} zero bytes", style="vmig.value")
        shown = value[:SHOW_BYTES].hex(" ")
        return Text(f"{len(value)} bytes: {shown}{' …' if len(value) > SHOW_BYTES else ''}", style="vmig.value")
    if isinstance(value, Blob):
        return Text(f"{value.length:,} bytes at {value.offset:#x}", style="vmig.value")
    if isinstance(value, dict) and ftype == RAMFB_CFG_TYPE:
        return Text(ramfb_words(value), style="vmig.value")
    if isinstance(value, str):
        return Text(repr(printable(value)), style="vmig.value")
    if isinstance(value, list):
        shown = ", ".join(value_text(ftype, v).plain for v in value[:SHOW_ITEMS])
        return Text(f"[{shown}{', …' if len(value) > SHOW_ITEMS else ''}] ({len(value)} items)", style="vmig.value")
    return Text(repr(value), style="vmig.value")


def ramfb_words(cfg: dict[str, int]) -> str:
    if not any(cfg.values()):
        return "not configured by the guest (28 zero bytes)"
    fourcc = fourcc_text(cfg["fourcc"])
    fmt = DRM_FORMATS.get(fourcc, "unknown format")
    return (f"{cfg['width']}x{cfg['height']} {fourcc} ({fmt}) framebuffer at {cfg['addr']:#x}, "
            f"stride {cfg['stride']}, flags {cfg['flags']:#x}")


def info_nodes(node: Tree, ftype: str, info: dict[str, Any]) -> None:
    if ftype == "pci config" and info:
        node.add(f"vendor {info['vendor_id']:04x}  device {info['device_id']:04x}  class {info['class_code']:06x}  "
                 f"rev {info['revision']:#04x}  header type {info['header_type']:#04x}"
                 f"{'  (PCI Express, 4096-byte config)' if info.get('express') else ''}")
        node.add(f"command {info['command']:#06x}  status {info['status']:#06x}  "
                 f"interrupt line {info['interrupt_line']} pin {info['interrupt_pin']}")
        if info.get("subsystem_vendor_id") is not None:
            node.add(f"subsystem {info['subsystem_vendor_id']:04x}:{info['subsystem_id']:04x}")
        for bar in info.get("bars", []):
            pref = " prefetchable" if bar.get("prefetchable") else ""
            node.add(f"BAR{bar['bar']} {bar['kind']}{pref} {bar['address']:#x}")
        for cap in info.get("capabilities", []):
            extra = "".join(f" {k} {v}" for k, v in cap.items() if k not in ("offset", "id", "name"))
            node.add(f"capability {cap['name']} at {cap['offset']:#04x}{extra}")
    elif ftype == "msix state":
        node.add(f"{info['vectors']} MSI-X vectors, pending: {info['pending'] or 'none'}")
        for e in info["entries"][:SHOW_ITEMS]:
            node.add(f"vector {e['vector']}: address {e['address']:#x} data {e['data']:#x}"
                     f"{' masked' if e['masked'] else ''}")
        if len(info["entries"]) > SHOW_ITEMS:
            node.add(f"… {len(info['entries']) - SHOW_ITEMS} more vectors")


def ram_counts(body: RamBody) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for item in body.items:
        if isinstance(item, RamPages):
            per = counts.setdefault(item.block, {"zero": 0, "page": 0, "xbzrle": 0})
            per[item.kind] += item.count
    return counts


def ram_node(node: Tree, body: RamBody) -> None:
    for item in body.items:
        if isinstance(item, RamMemSize):
            blocks = node.add(_at(item.span) + Text(f"block list: {len(item.blocks)} blocks, "
                                                    f"{size_text(item.total)} in all"))
            for b in item.blocks:
                extra = f"  addr {b.addr:#x}" if b.addr is not None else ""
                if b.mapped_ram is not None:
                    extra += f"  mapped-ram pages at {b.mapped_ram['pages_offset']:#x}"
                    if b.present_pages is not None:
                        extra += f", {b.present_pages} present"
                blocks.add(Text.assemble((printable(b.idstr), "vmig.name"), f"  {size_text(b.used_length)}{extra}"))
        elif isinstance(item, RamMarker) and item.kind == "multifd_flush":
            node.add(_at(item.span) + Text("MULTIFD_FLUSH"))
    counts = ram_counts(body)
    for block, per in counts.items():
        kinds = ", ".join(f"{n} {'normal' if k == 'page' else k}" for k, n in per.items() if n)
        node.add(Text.assemble((printable(block), "vmig.name"), f": {kinds} pages"))
    eos = [i for i in body.items if isinstance(i, RamMarker) and i.kind == "eos"]
    if eos:
        node.add(_at(eos[-1].span) + Text("EOS", style="vmig.dim"))


def vfio_node(node: Tree, body: VfioBody) -> None:
    names = {"setup": "DEV_SETUP_STATE", "end_of_state": "END_OF_STATE", "init_data_sent": "DEV_INIT_DATA_SENT",
             "data": "DEV_DATA_STATE", "config": "DEV_CONFIG_STATE"}
    for item in body.items:
        label = _at(item.span) + Text(names[item.kind], style="vmig.kind")
        if item.kind == "data" and item.data is not None:
            node.add(label + Text(f"  {item.data.length:,} bytes of device data"))
        elif item.kind == "config" and item.config is not None:
            c = item.config
            sub = node.add(label + Text(f"  {c.vmsd_name} v{c.version}", style="vmig.dim"))
            fields_nodes(sub, c.fields, c.subsections)
            if not any(s.name == "VFIOPCIDevice/VFIODisplay" for s in c.subsections):
                sub.add(Text("no VFIOPCIDevice/VFIODisplay subsection: ramfb state not migrated", style="vmig.dim"))
        else:
            node.add(label)


def summary_table(stream: MigrationStream, *, sections: tuple[str, ...] = ()) -> Table:
    table = Table(title=f"{stream.source or 'stream'}: {stream.size:,} bytes", show_lines=False)
    for column in ("offset", "length", "record", "id", "idstr", "inst", "ver", "content"):
        table.add_column(column, justify="right" if column in ("offset", "length", "id", "inst", "ver") else "left")
    for r in stream.records:
        if isinstance(r, Section):
            if not selected(r, sections):
                continue
            table.add_row(f"{r.span.offset:#x}", f"{r.span.length:,}", SECTION_LABEL[r.type], str(r.section_id),
                          printable(r.idstr), "" if r.instance_id is None else str(r.instance_id),
                          "" if not r.long_header else str(r.version_id), body_summary(r))
        elif not sections:
            name = r.type if not isinstance(r, Command) else f"COMMAND {r.name}"
            detail = r.machine if isinstance(r, Configuration) else ""
            table.add_row(f"{r.span.offset:#x}", f"{r.span.length:,}", name, "", "", "", "", detail)
    return table


def body_summary(section: Section) -> str:
    body = section.body
    if isinstance(body, VmstateBody):
        subs = f", subsections: {', '.join(s.name for s in body.subsections)}" if body.subsections else ""
        text = f"{body.vmsd_name} v{body.version}: {len(body.fields)} fields{subs}"
        ramfb = find_ramfb(body.fields, body.subsections)
        return text + (f"; ramfb {ramfb_words(ramfb)}" if ramfb is not None else "")
    if isinstance(body, RamBody):
        counts = ram_counts(body)
        zero = sum(c["zero"] for c in counts.values())
        normal = sum(c["page"] for c in counts.values())
        blocks = next((len(i.blocks) for i in body.items if isinstance(i, RamMemSize)), None)
        return (f"{blocks} RAM blocks; " if blocks is not None else "") + f"{normal} normal, {zero} zero pages"
    if isinstance(body, VfioBody):
        data = sum(i.data.length for i in body.items if i.data is not None)
        parts = [f"{data:,} bytes of device data"] if data else []
        config = next((i.config for i in body.items if i.config is not None), None)
        if config is not None:
            pci = next((f for f in walk_fields(config.fields) if f.type == "pci config" and f.info), None)
            if pci is not None:
                msix = next((c["vectors"] for c in pci.info["capabilities"] if c["name"] == "MSI-X"), None)
                parts.append(f"PCI {pci.info['vendor_id']:04x}:{pci.info['device_id']:04x}, "
                             f"{len(pci.value) if isinstance(pci.value, bytes) else pci.value.length}-byte config, "
                             + (f"{msix} MSI-X vectors" if msix else "no MSI-X"))
            ramfb = find_ramfb(config.fields, config.subsections)
            parts.append("VFIODisplay: ramfb " + ramfb_words(ramfb) if ramfb is not None
                         else "no VFIODisplay (ramfb not migrated)")
        return "; ".join(parts) or " ".join(i.kind.upper() for i in body.items)
    if isinstance(body, OpaqueBody):
        return f"opaque: {body.reason}"
    return ""


def find_ramfb(fields: Iterable[Field], subsections: Iterable[Subsection]) -> dict[str, int] | None:
    """The first ramfb cfg value anywhere below these fields and subsections."""
    return next((f.value for f in walk_fields(fields, subsections)
                 if f.type == RAMFB_CFG_TYPE and isinstance(f.value, dict)), None)
