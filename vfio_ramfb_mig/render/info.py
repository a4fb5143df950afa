"""`vmig info`: what a file is and what stream it holds, as plain lines (source.info's document)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from .progress import size_words


def info_view(doc: dict[str, Any]) -> list[Any]:
    """Renderables, in order: the file, its layers, the snapshot table, the stream."""
    out: list[Any] = []
    file = doc["file"]
    size = f", {file['size']:,} bytes" if file.get("size") is not None else ""
    kinds = [k for k in doc["layers"] if k != "qemu"]
    if "libvirt" in doc and doc["libvirt"]["compression"] != "raw":  # shown with the libvirt header
        kinds.remove(doc["libvirt"]["compression"])
    what = " in ".join(_kind_words(k) for k in reversed(kinds)) if kinds else "a QEMU migration stream"
    if not kinds:
        what = "a plain QEMU migration stream"
    out.append(Text.assemble((str(file["path"]), "vmig.name"), f": {what}{size}"))
    if file.get("spooled"):
        out.append(Text(f"  read through a temporary copy of {size_words(file['spooled'])}", style="vmig.dim"))
    if "libvirt" in doc:
        out.extend(_libvirt(doc["libvirt"]))
    if "qcow2" in doc:
        out.extend(_qcow2(doc["qcow2"]))
    out.extend(_stream(doc["stream"]))
    return out


def _kind_words(kind: str) -> str:
    return {"libvirt-save": "libvirt save image", "qcow2": "qcow2 snapshot"}.get(kind, f"{kind} data")


def _row(label: str, value: str) -> Text:
    return Text.assemble(f"  {label:<10} ", (value, ""))


def _libvirt(lv: dict[str, Any]) -> list[Any]:
    dom = lv["domain"]
    state = "complete" if lv["complete"] else "INCOMPLETE (libvirt never finished writing it)"
    rows = [
        Text("libvirt save image", style="vmig.title"),
        _row("header", f"{lv['magic']} version {lv['header_version']}, {lv['byte_order']}-endian, {state}"),
        _row("payload", f"{lv['compression']} (format {lv['compressed']}) at offset {lv['payload_offset']:#x}"),
        _row("XML", f"{lv['xml_length']:,} bytes reserved, {lv['xml_text_length']:,} used"
                    + (f", cookie {lv['cookie_length']:,}" if lv.get("cookie_length") is not None else "")),
        _row("was", "running (restore resumes it)" if lv["was_running"] else "paused (restore leaves it paused)"),
    ]
    if "error" in dom:
        rows.append(_row("domain", dom["error"]))
        return rows
    memory = f", {size_words(dom['memory_kib'] * 1024)}" if dom.get("memory_kib") else ""
    vcpus = f", {dom['vcpus']} vCPU" if dom.get("vcpus") else ""
    rows.append(_row("domain", f"{dom.get('name')} (type {dom.get('domain_type')}), machine {dom.get('machine')}, "
                               f"{dom.get('arch')}{memory}{vcpus}"))
    rows.append(_row("devices", ", ".join(dom.get("devices") or []) or "none"))
    return rows


def _qcow2(q: dict[str, Any]) -> list[Any]:
    rows: list[Any] = [Text("qcow2 image", style="vmig.title"),
                       _row("format", f"version {q['version']}, cluster {size_words(q['cluster_size'])}, "
                                      f"disk {size_words(q['disk_size'])}"
                                      + (f", backing file {q['backing_file']}" if q.get("backing_file") else ""))]
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK"):
        table.add_column(column, justify="right" if column == "VM SIZE" else "left")
    for snap in q["snapshots"]:
        table.add_row("*" if snap.get("read") else "", snap["id"], snap["name"],
                      size_words(snap["vm_state_size"]) if snap["vm_state_size"] else "0 (none)",
                      snap["date"].replace("T", " ").rstrip("Z"), snap["vm_clock"])
    rows.append(Text(f"  snapshots ({len(q['snapshots'])}; * is the one read):"))
    rows.append(table)
    chosen = q.get("snapshot")
    if chosen:
        rows.append(_row("reading", f"snapshot '{chosen['name']}' (id {chosen['id']}), VM state at guest offset "
                                    f"{chosen['vm_state_offset']:#x} of its mapping"))
    return rows


def _stream(s: dict[str, Any]) -> list[Any]:
    rows: list[Any] = [Text("stream", style="vmig.title")]
    if not s.get("read"):
        rows.append(_row("not read", s.get("reason", "")))
        return rows
    rows.append(_row("header", f"QEVM version {s['header_version']}, {s['size']:,} bytes, machine "
                               f"{s.get('machine') or '(no configuration record)'}"))
    rows.append(_row("records", f"{s['records']}: {s['sections']} section records, {s['devices']} device sections"
                                f"{', vmdesc' if s['vmdesc'] else ', no vmdesc'}"))
    ram = s["ram"]
    blocks = ", ".join(f"{b['idstr']} {size_words(b['used_length'])}" for b in ram["blocks"])
    rows.append(_row("RAM", f"{size_words(ram['total'])} in {len(ram['blocks'])} blocks ({blocks})"))
    pages = ram["pages"]
    rows.append(_row("pages", f"{pages['normal']:,} normal, {pages['zero']:,} zero, {pages['xbzrle']:,} xbzrle"
                              + (f", {pages['compressed']:,} compressed" if pages.get("compressed") else "")))
    if s.get("error"):
        rows.append(Text(f"  error: {s['error']}", style="vmig.error"))
    return rows
