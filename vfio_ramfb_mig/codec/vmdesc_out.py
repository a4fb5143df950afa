"""The vmdesc JSON QEMU appends after EOF, generated for streams vmig builds.

QEMU writes it while saving, describing what it actually wrote: the
configuration record and one object per FULL section, in stream order. vmig
writes the same shape (key order and separators included), so QEMU's own
scripts/analyze-migration.py and vmig read vmig's streams back the same way.
Sizes come from the spans of a decoded copy of the stream, i.e. from the bytes.
For a decoded real stream the document equals the one QEMU wrote (tests compare them),
except for fields QEMU describes inline (VMSTATE_WITH_TMP "tmp", "vstruct"): vmig reads
those as nested structs and keeps no trace of the type name.

Imports: errors, model, vmstate.compile.
References: migration/savevm.c (vmstate_save, vmstate_save_old_style,
qemu_savevm_state_complete_precopy_non_iterable), migration/vmstate.c
(vmsd_desc_field_start, vmsd_desc_field_end, vmstate_subsection_save).
"""

from __future__ import annotations

from typing import Any

from ..errors import EncodeError
from ..model import (
    Configuration,
    Field,
    MigrationStream,
    OpaqueBody,
    Section,
    StructValue,
    Subsection,
    VfioBody,
    VmstateBody,
)
from ..vmstate.compile import RAMFB_CFG_TYPE

PAGE_SIZE = 4096


def vmdesc_document(stream: MigrationStream, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """The vmdesc for a decoded stream (every field must have its span)."""
    doc: dict[str, Any] = {}
    config = stream.configuration
    if config is not None:
        doc["configuration"] = _configuration(config)
    doc["page_size"] = page_size
    doc["devices"] = [_section(s) for s in stream.sections if s.type == "section_full"]
    return doc


def _configuration(config: Configuration) -> dict[str, Any]:
    name_length = len(config.machine.encode("utf-8", "surrogateescape"))
    obj: dict[str, Any] = {"vmsd_name": "configuration", "version": 1, "fields": [
        {"name": "len", "type": "uint32", "size": 4},
        {"name": "name", "type": "buffer", "size": name_length},
    ]}
    if config.subsections:
        obj["subsections"] = [_subsection(s) for s in config.subsections]
    return obj


def _section(section: Section) -> dict[str, Any]:
    body = section.body
    head: dict[str, Any] = {"name": section.idstr, "instance_id": section.instance_id}
    if isinstance(body, VmstateBody):
        obj = head | {"vmsd_name": body.vmsd_name, "version": body.version,
                      "fields": [_field(f) for f in body.fields]}
        if body.subsections:
            obj["subsections"] = [_subsection(s) for s in body.subsections]
        return obj
    if isinstance(body, (VfioBody, OpaqueBody)):
        # old-style SaveVMHandlers entry: one opaque buffer, the payload between header and footer
        if isinstance(body, OpaqueBody):
            size = body.data.length
        elif body.items and body.items[0].span is not None and body.items[-1].span is not None:
            size = body.items[-1].span.end - body.items[0].span.offset
        else:
            raise EncodeError(f"section {section.idstr} has no spans to size it")
        return head | {"size": size, "fields": [{"name": "data", "size": size, "type": "buffer"}]}
    raise EncodeError(f"cannot describe section {section.idstr} in a vmdesc")


def _subsection(sub: Subsection) -> dict[str, Any]:
    obj: dict[str, Any] = {"vmsd_name": sub.name, "version": sub.version, "fields": [_field(f) for f in sub.fields]}
    if sub.subsections:
        obj["subsections"] = [_subsection(s) for s in sub.subsections]
    return obj


def _field(f: Field) -> dict[str, Any]:
    if f.span is None:
        raise EncodeError(f"field {f.name} has no span to size it")
    # vmsd_desc_field_start: the name, then "array_len" for an array, or "index" for one element
    # of an array described element by element (the name QEMU gives is the field's own)
    head: dict[str, Any] = {"name": f.name if f.index is None else f.name.removesuffix(f"[{f.index}]")}
    if f.index is not None:
        head["index"] = f.index
    if isinstance(f.value, StructValue):
        return head | {"type": "struct", "struct": _struct(f.value), "size": f.span.length}
    if isinstance(f.value, list) and f.type == "capability":
        first = len(f.value[0].encode("utf-8", "surrogateescape")) + 1 if f.value else 0
        return head | ({"array_len": len(f.value)} if len(f.value) > 1 else {}) | {"type": "capability", "size": first}
    if isinstance(f.value, list) and f.type != "pci irq state":
        count = len(f.value)
        size = f.span.length // count if count else 0
        array = {"array_len": count} if count > 1 else {}
        if count and isinstance(f.value[0], StructValue):
            # an array of structs: one description of the element (vmsd_desc_field_end)
            return head | array | {"type": "struct", "struct": _struct(f.value[0]), "size": size}
        return head | array | {"type": f.type, "size": size}
    # vmig's structured reading of the ramfb config is a plain 28-byte buffer to QEMU
    ftype = "buffer" if f.type == RAMFB_CFG_TYPE else f.type
    return head | {"type": ftype, "size": f.span.length}


def _struct(value: StructValue) -> dict[str, Any]:
    obj: dict[str, Any] = {"vmsd_name": value.vmsd_name, "version": value.version,
                           "fields": [_field(x) for x in value.fields]}
    if value.subsections:
        obj["subsections"] = [_subsection(s) for s in value.subsections]
    return obj
