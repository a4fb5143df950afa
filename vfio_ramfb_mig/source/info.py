"""What an input file is, for `vmig info`: its layers (compression, libvirt save image, qcow2
snapshot table) and a summary of the stream inside (header version, machine, sections, RAM).

The document `describe` returns is `vmig info --json` (schemas/info.schema.json describes it).

Imports: model, source.buffer/libvirt/qcow2, wire.libvirt.
"""

from __future__ import annotations

from typing import Any

from ..model import Configuration, Header, MigrationStream, RamBody, RamMemSize, Section, Vmdesc
from ..wire.libvirt import HEADER_SIZE
from .buffer import Source
from .qcow2 import Qcow2Image, Snapshot

INFO_FORMAT = 1


def describe(src: Source, stream: MigrationStream | None, version: str, error: str | None = None) -> dict[str, Any]:
    """The whole `vmig info` document of an opened input and its decoded stream."""
    doc: dict[str, Any] = {
        "vmig": {"info_format": INFO_FORMAT, "version": version},
        "file": {"path": src.name, "size": src.file_size, "spooled": src.spooled},
        "layers": _kinds(src),
    }
    for layer in src.layers:
        if layer.kind == "libvirt-save":
            doc["libvirt"] = libvirt_info(layer.detail)
        elif layer.kind == "qcow2":
            doc["qcow2"] = qcow2_info(*layer.detail)
    doc["stream"] = stream_info(stream, src.size, error)
    return doc


def _kinds(src: Source) -> list[str]:
    """Every wrapping, outermost first, the libvirt payload's compression included, then 'qemu'."""
    kinds = []
    for layer in src.layers:
        kinds.append(layer.kind)
        if layer.kind == "libvirt-save" and layer.detail.compression != "raw":
            kinds.append(layer.detail.compression)
    return kinds + ["qemu"]


def describe_unread(path: str, file_size: int | None, image: Qcow2Image, reason: str, version: str) -> dict[str, Any]:
    """A qcow2 image none of whose snapshots was read (none has a VM state, or several do)."""
    return {"vmig": {"info_format": INFO_FORMAT, "version": version},
            "file": {"path": path, "size": file_size, "spooled": 0},
            "layers": ["qcow2"], "qcow2": qcow2_info(image, None),
            "stream": {"read": False, "reason": reason}}


def libvirt_info(save: Any) -> dict[str, Any]:
    summary = save.summary()
    return {
        "magic": save.magic.decode("latin-1"),
        "complete": save.complete,
        "header_version": save.version,
        "byte_order": save.byte_order,
        "compression": save.compression,
        "compressed": save.compressed,
        "xml_length": save.data_len,
        "xml_text_length": len(save.xml.encode()),
        "cookie_length": len(save.cookie.encode()) if save.cookie is not None else None,
        "was_running": bool(save.was_running),
        "header_size": HEADER_SIZE,
        "payload_offset": save.payload_offset,
        "domain": summary,
        "xml": save.xml,
    }


def qcow2_info(image: Qcow2Image, chosen: Snapshot | None) -> dict[str, Any]:
    doc = image.to_json(chosen)
    doc["file_size"] = image.file_size
    for snap, entry in zip(image.snapshots, doc["snapshots"]):
        entry["read"] = chosen is not None and snap.index == chosen.index
    return doc


def stream_info(stream: MigrationStream | None, size: int, error: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"read": stream is not None, "size": size}
    if stream is None:
        return doc
    header = next((r for r in stream.records if isinstance(r, Header)), None)
    config = next((r for r in stream.records if isinstance(r, Configuration)), None)
    sections = [r for r in stream.records if isinstance(r, Section)]
    device_sections = {(s.idstr, s.instance_id) for s in sections if s.idstr != "ram"}
    blocks: dict[str, int] = {}
    pages = {"page": 0, "zero": 0, "xbzrle": 0}
    for section in sections:
        if isinstance(section.body, RamBody):
            for item in section.body.items:
                if isinstance(item, RamMemSize):
                    blocks.update((b.idstr, b.used_length) for b in item.blocks)
            for per in section.body.block_counts().values():
                for kind, n in per.items():
                    pages[kind] = pages.get(kind, 0) + n
    doc.update({
        "header_version": header.version if header else None,
        "machine": config.machine if config else None,
        "records": len(stream.records),
        "sections": len(sections),
        "devices": len(device_sections),
        "vmdesc": any(isinstance(r, Vmdesc) for r in stream.records),
        "ram": {"total": sum(blocks.values()), "blocks": [{"idstr": k, "used_length": v} for k, v in blocks.items()],
                "pages": {"normal": pages["page"], "zero": pages["zero"], "xbzrle": pages["xbzrle"]}
                | ({"compressed": pages["compressed"]} if pages.get("compressed") else {})},
        "warnings": list(stream.warnings),
    })
    if error or stream.error:
        doc["error"] = error or stream.error
    return doc
