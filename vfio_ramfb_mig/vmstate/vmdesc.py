"""Descriptions from the vmdesc JSON a stream carries after its EOF.

The vmdesc describes what was actually written, in stream order: one object
per FULL section (never RAM), keyed by (name = idstr, instance_id). Its sizes
are real byte counts, except that `array_len` objects give the size of the
first element only, and variable-size types (capability strings) must be
parsed by their own rules.

Imports: errors, vmstate.model.
References: migration/savevm.c (vmstate_save, vmstate_save_old_style),
migration/vmstate.c (vmsd_desc_field_start/_end, vmstate_subsection_save).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import FieldPath, VmdescError
from .model import RAMFB_CFG_TYPE, Description, FieldDesc

#: Deeper nesting than any real vmsd tree; a hostile vmdesc must not exhaust the stack.
MAX_DEPTH = 64

#: Fixed wire sizes of the leaf types vmig decodes as numbers.
FIXED_SIZES = {
    "bool": 1, "int8": 1, "uint8": 1, "uint8 equal": 1,
    "int16": 2, "uint16": 2, "uint16 equal": 2,
    "int32": 4, "uint32": 4, "int32 equal": 4, "uint32 equal": 4, "int32 le": 4,
    "int64": 8, "uint64": 8, "int64 equal": 8, "timer": 8, "CPU_Double_U": 8,
    "nullptr": 1, "pci irq state": 16,
}
#: Types whose fields carry their nested description inline in the field object.
INLINE_STRUCT_TYPES = frozenset({"vstruct", "tmp"})


@dataclass(frozen=True, slots=True)
class VmdescEntry:
    """One `devices` element: which section it describes, and how."""

    idstr: str
    instance_id: int
    description: Description
    #: old-style SaveVMHandlers section (no vmsd): one opaque "data" buffer of `size` bytes
    old_style: bool
    size: int | None


@dataclass(frozen=True, slots=True)
class Vmdesc:
    page_size: int | None
    configuration: Description | None
    entries: tuple[VmdescEntry, ...]
    #: (idstr, instance_id) -> first entry: a scan per section was quadratic in a hostile stream
    #: with tens of thousands of sections and entries
    _index: dict[tuple[str, int], VmdescEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, int], VmdescEntry] = {}
        for entry in self.entries:
            index.setdefault((entry.idstr, entry.instance_id), entry)
        object.__setattr__(self, "_index", index)

    def find(self, idstr: str, instance_id: int) -> VmdescEntry | None:
        return self._index.get((idstr, instance_id))


def parse_vmdesc_text(text: bytes, *, offset: int) -> Any:
    """JSON from bytes, with every failure a VmdescError (not UTF-8, malformed, too deep)."""
    from ..textin import TextInputError, loads

    try:
        return loads(text)
    except TextInputError as exc:
        raise VmdescError(f"vmdesc is malformed: {exc.reason}", offset=offset + exc.byte, path=("vmdesc",)) from None


def read_vmdesc(doc: Any, *, offset: int) -> Vmdesc:
    """Build descriptions from a parsed vmdesc document; `offset` is where the JSON starts."""
    reader = _Reader(offset)
    obj = reader.mapping(doc, ("vmdesc",))
    page_size = obj.get("page_size")
    # the range QEMU targets have (TARGET_PAGE_BITS 9..24, as for configuration/target-page-bits):
    # anything else would only surface later as "impossible RAM flags"
    if page_size is not None and not (isinstance(page_size, int) and not isinstance(page_size, bool) and
                                      1 << 9 <= page_size <= 1 << 24 and page_size & (page_size - 1) == 0):
        reader.fail(f"page_size {page_size!r} is not a power of two from 512 to 16 MiB", ("vmdesc", "page_size"))
    configuration = None
    if "configuration" in obj:
        configuration = reader.description(obj["configuration"], ("vmdesc", "configuration"), 0)
    devices = reader.sequence(obj.get("devices", []), ("vmdesc", "devices"))
    entries = tuple(reader.entry(d, ("vmdesc", "devices", i)) for i, d in enumerate(devices))
    return Vmdesc(page_size=page_size, configuration=configuration, entries=entries)


class _Reader:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def fail(self, message: str, path: FieldPath) -> None:
        raise VmdescError(f"vmdesc: {message}", offset=self.offset, path=path)

    def mapping(self, value: Any, path: FieldPath) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"expected an object, found {type(value).__name__}", path)
        return value

    def sequence(self, value: Any, path: FieldPath) -> list[Any]:
        if not isinstance(value, list):
            self.fail(f"expected a list, found {type(value).__name__}", path)
        return value

    def string(self, obj: dict[str, Any], key: str, path: FieldPath) -> str:
        value = obj.get(key)
        if not isinstance(value, str):
            self.fail(f"expected string '{key}'", path)
        # QEMU's names and type names are printable UTF-8; a JSON escape like "\ud800" (no UTF-8 at
        # all) or "\u001b" would crash compiling it to wire bytes or reach the terminal as is
        if not value.isprintable():  # also False for any surrogate
            self.fail(f"string '{key}' holds a character QEMU never writes there: {value!a}", path)
        return value

    def number(self, obj: dict[str, Any], key: str, path: FieldPath, *, default: int | None = None) -> int:
        value = obj.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.fail(f"expected a non-negative integer '{key}'", path)
        return value

    def entry(self, value: Any, path: FieldPath) -> VmdescEntry:
        obj = self.mapping(value, path)
        idstr = self.string(obj, "name", path)
        instance_id = self.number(obj, "instance_id", path)
        if "vmsd_name" not in obj:
            size = self.number(obj, "size", path)
            desc = Description(name=idstr, version=0, fields=(FieldDesc("data", "buffer", size=size),))
            return VmdescEntry(idstr, instance_id, desc, old_style=True, size=size)
        return VmdescEntry(idstr, instance_id, self.description(obj, path, 0), old_style=False, size=None)

    def description(self, value: Any, path: FieldPath, depth: int) -> Description:
        if depth > MAX_DEPTH:
            self.fail(f"descriptions nested deeper than {MAX_DEPTH}", path)
        obj = self.mapping(value, path)
        name = self.string(obj, "vmsd_name", path)
        version = self.number(obj, "version", path, default=0)
        fields = tuple(self.field(f, path + ("fields", i), depth)
                       for i, f in enumerate(self.sequence(obj.get("fields", []), path + ("fields",))))
        subsections = tuple(self.description(s, path + ("subsections", i), depth + 1)
                            for i, s in enumerate(self.sequence(obj.get("subsections", []),
                                                                path + ("subsections",))))
        return Description(name=name, version=version, fields=fields, subsections=subsections)

    def field(self, value: Any, path: FieldPath, depth: int) -> FieldDesc:
        obj = self.mapping(value, path)
        name = self.string(obj, "name", path)
        ftype = self.string(obj, "type", path)
        size = self.number(obj, "size", path)
        count = self.number(obj, "array_len", path) if "array_len" in obj else None
        index = self.number(obj, "index", path) if "index" in obj else None
        if ftype == "struct":
            struct = self.description(obj.get("struct"), path + ("struct",), depth + 1)
            return FieldDesc(name, "struct", size=size, count=count, struct=struct, index=index)
        if ftype in INLINE_STRUCT_TYPES and "fields" in obj:
            return FieldDesc(name, "struct", size=size, count=count, index=index,
                             struct=self.description(obj, path, depth + 1))
        if ftype == "capability":
            return FieldDesc(name, ftype, size=None, count=count, index=index)
        if ftype == RAMFB_CFG_TYPE:
            # vmig's own name for the 28 RAMFBCfg bytes (QEMU writes "buffer"): a stream must not
            # choose vmig's reading of them for a field of any size or count; the vmdesc text
            # itself is kept as it was
            ftype = "buffer"
        return FieldDesc(name, ftype, size=size, count=count, index=index)
