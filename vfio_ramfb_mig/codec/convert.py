"""Parsed containers of a compiled description -> model fields, with spans and plain-words info.

The construct schema (vmstate/compile.py) parses each field to `Loc(value, start, end)`;
this turns those into `Field`s named by the description, keeps buffers over
INLINE_LIMIT as references into the input, and adds the derived readings
(PCI config space, MSI-X, ramfb) of codec/views.py.

Imports: construct (types only), model, vmstate, wire.primitives, text, codec.views.
"""

from __future__ import annotations

from typing import Any

from construct import Container

from ..errors import FieldPath
from ..model import Blob, Field, Span, StructValue, Subsection
from ..vmstate.compile import RAMFB_CFG_TYPE, Loc, PackedList
from ..vmstate.model import Description, FieldDesc
from ..wire.primitives import INT_TYPES
from ..wire.ramfb import RAMFB_CFG_KEYS
from ..text import from_wire
from .views import msix_info, msix_vectors, pci_config_info, ramfb_info

#: buffers longer than this stay in the input (JSON: {"ref": ...}); shorter ones are held as bytes
INLINE_LIMIT = 4096



def construct_path_names(desc: Description, cpath: str) -> FieldPath:
    """Turn construct's "(parsing) -> f3 -> f0" into field names of the description."""
    names: list[str | int] = []
    current: Description | None = desc
    for part in cpath.split(" -> ")[1:]:
        if current is not None and part.startswith("f") and part[1:].isdigit() and int(part[1:]) < len(current.fields):
            fd = current.fields[int(part[1:])]
            names.append(fd.key)
            current = fd.struct
        elif part == "subsections":
            names.append("subsections")
            current = None
    return tuple(names)


def convert(desc: Description, container: Container,
            ctx: dict[str, Any] | None = None) -> tuple[tuple[Field, ...], tuple[Subsection, ...]]:
    """Containers of a compiled description -> model fields. `ctx` carries what later fields
    need from earlier ones across struct levels (the PCI config space, for the MSI-X size)."""
    ctx = {} if ctx is None else ctx
    fields = []
    for i, fd in enumerate(desc.fields):
        loc: Loc = container[f"f{i}"]
        span = Span(loc.start, loc.end - loc.start)
        raw = loc.value
        if fd.count is not None or fd.count_from is not None:
            value = _array(fd, raw, loc.start, ctx)
        elif type(raw) is int and fd.type != "bool":
            value = raw  # the common case, in short
        else:
            value = _element(fd, raw, span, ctx)
        info = _info(fd, value, ctx) if fd.type in _INFO_TYPES else None
        fields.append(Field(fd.key, fd.type, value, span, info, fd.index))
    return tuple(fields), _subsections(desc, container["subsections"], ctx)


def _array(fd: FieldDesc, raw: list[Any], start: int, ctx: dict[str, Any]) -> list[Any]:
    if isinstance(raw, PackedList):
        # fixed-size elements parsed in one piece: plain values, element i at start + i * size
        if fd.type == "bool":
            return [bool(item) if item in (0, 1) else item for item in raw]
        if fd.type in INT_TYPES and fd.size == INT_TYPES[fd.type][1]:
            return list(raw)
        size = raw.size
        return [_element(fd, item, Span(start + i * size, size), ctx) for i, item in enumerate(raw)]
    return [_element(fd, item.value, Span(item.start, item.end - item.start), ctx) for item in raw]


def _subsections(desc: Description, items: list[Loc], ctx: dict[str, Any]) -> tuple[Subsection, ...]:
    result = []
    # name -> description once per subsection list and decode (the decoder passes one index to every
    # section): a linear search per item was quadratic when a hostile section repeats one of 10^5
    # described subsections; the tuple is kept in the value so its id is not reused
    index = ctx.setdefault("subsection_index", {})
    for loc in items:
        name, version, body = loc.value
        known = index.get(id(desc.subsections))
        if known is None:
            known = index[id(desc.subsections)] = (desc.subsections,
                                                   {s.name: s for s in reversed(desc.subsections)})
        sub_desc = known[1].get(from_wire(name))
        assert sub_desc is not None  # Subsections only accepts listed names
        fields, subs = convert(sub_desc, body, ctx)
        result.append(Subsection(name=sub_desc.name, version=version, fields=fields, subsections=subs,
                                 span=Span(loc.start, loc.end - loc.start)))
    return tuple(result)


def _element(fd: FieldDesc, raw: Any, span: Span, ctx: dict[str, Any]) -> Any:
    if fd.type == "struct" and fd.struct is not None:
        fields, subs = convert(fd.struct, raw, ctx)
        return StructValue(fd.struct.name, fd.struct.version, fields, subs)
    if fd.type == "bool" and raw in (0, 1):
        return bool(raw)
    if fd.type == RAMFB_CFG_TYPE:
        return {k: raw[k] for k in RAMFB_CFG_KEYS}
    if fd.type == "capability":
        return from_wire(raw)
    if isinstance(raw, bytes) and len(raw) > INLINE_LIMIT:
        return Blob(span.offset, len(raw))
    if isinstance(raw, list):
        return list(raw)
    return raw


#: the types `_info` reads
_INFO_TYPES = frozenset((RAMFB_CFG_TYPE, "pci config", "msix state"))


def _info(fd: FieldDesc, value: Any, ctx: dict[str, Any]) -> dict[str, Any] | None:
    if fd.type == RAMFB_CFG_TYPE:
        return ramfb_info(value)
    if fd.type == "pci config" and isinstance(value, bytes):
        ctx["pci_config"] = value
        return pci_config_info(value)
    if fd.type == "msix state" and isinstance(value, bytes) and isinstance(ctx.get("pci_config"), bytes):
        vectors = msix_vectors(ctx["pci_config"])
        if vectors and len(value) == vectors * 16 + (vectors + 7) // 8:
            return msix_info(value, vectors)
    return None
