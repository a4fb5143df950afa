"""Description -> construct: the same schema parses and builds a vmstate payload.

Each field is wrapped in `Located`, which parses to `Loc(value, start, end)`
so the codec can give every field its absolute byte span; building takes the
plain value. Struct members are keyed by position ("f0", "f1", ...), because
field names are not unique across vmdesc objects and may clash with
construct's own context keys; the Description keeps the names.

Subsections follow the loader's peek rule: a 0x05 byte whose name starts with
this vmsd's name belongs to it; anything else ends the list. A name that
belongs to it but is not listed is an error, as it is for QEMU (-ENOENT).

Imports: construct, errors, wire, vmstate.model.
References: migration/vmstate.c (vmstate_load_state, vmstate_subsection_load,
vmstate_field_exists), migration/vmstate-types.c.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from construct import (
    Array,
    Bytes,
    Construct,
    ConstructError,
    Int8ub,
    Int32ub,
    Struct,
    Subconstruct,
    stream_seek,
    stream_tell,
)

from ..wire.primitives import INT_TYPES, Str8
from ..wire.ramfb import RAMFB_CFG_SIZE, RamfbCfg
from ..wire.stream import SubsectionHeader
from .model import Description, FieldDesc

#: vmig's name for the 28 big-endian RAMFBCfg bytes (vmstate/builtin.py); a raw buffer to QEMU
RAMFB_CFG_TYPE = "ramfb cfg"


@dataclass(frozen=True, slots=True)
class Loc:
    value: Any
    start: int
    end: int


class Located(Subconstruct):
    """Parse to Loc(value, start, end); build from the plain value."""

    def _parse(self, stream, context, path):
        start = stream_tell(stream, path)
        value = self.subcon._parsereport(stream, context, path)
        end = stream_tell(stream, path)
        if end == start:
            # fields and elements without bytes are not bounded by the input, and they multiply
            # (nested arrays, many sections of one description: 2000 x 2000 empty fields took
            # minutes and gigabytes): each is charged to the allowance a Source shares across its
            # decode (codec/source.py); real streams have none
            empty = getattr(stream, "empty", None)
            if empty is not None:
                empty[0] -= 1
                if empty[0] < 0:
                    raise CountTooLarge("more fields and elements without bytes than the input can justify",
                                        path=path)
        return Loc(value, start, end)

    def _build(self, obj, stream, context, path):
        return self.subcon._build(obj.value if isinstance(obj, Loc) else obj, stream, context, path)


class UnknownSubsectionFound(ConstructError):
    """A subsection name that belongs to the vmsd but that its description does not list."""

    def __init__(self, name: bytes, parent: str, offset: int, path: str | None = None) -> None:
        super().__init__(f"unknown subsection {name!r} of {parent!r}", path=path)
        self.name, self.parent, self.offset = name, parent, offset


class CountTooLarge(ConstructError):
    """An element count that cannot fit in the bytes that are left."""


class CheckedArray(Subconstruct):
    """Array whose count is checked against the bytes left before any element is parsed,
    so a hostile count can neither allocate nor spin."""

    def __init__(self, count: Any, subcon: Construct, min_size: int) -> None:
        super().__init__(subcon)
        self.count, self.min_size = count, min_size

    def _count(self, context: Any) -> int:
        return self.count(context) if callable(self.count) else self.count

    def _parse(self, stream, context, path):
        count = self._count(context)
        left = getattr(stream, "remaining", lambda: None)()
        if left is not None and count > 0:
            # elements that may be empty still cost one step each: bound the count by the input too
            need = count * self.min_size if self.min_size else count - 1
            if need > left:
                raise CountTooLarge(f"{count} elements cannot fit in the {left} bytes left", path=path)
        return [self.subcon._parsereport(stream, context, path) for _ in range(count)]

    def _build(self, obj, stream, context, path):
        count = self._count(context)
        if len(obj) != count:
            raise ConstructError(f"expected {count} elements, found {len(obj)}", path=path)
        return [self.subcon._build(item, stream, context, path) for item in obj]


class Subsections(Construct):
    """Zero or more subsections of one vmsd, found the way QEMU's loader finds them."""

    def __init__(self, parent: str, compiled: dict[bytes, Construct]) -> None:
        super().__init__()
        self.parent, self.prefix, self.compiled = parent, parent.encode(), compiled

    def _parse(self, stream, context, path):
        items = []
        while True:
            start = stream_tell(stream, path)
            head = stream.read(2)
            name = b""
            if len(head) == 2 and head[0] == 0x05:
                name = stream.read(head[1])
            stream_seek(stream, start, 0, path)
            if len(head) < 2 or head[0] != 0x05 or head[1] < len(self.prefix) + 1 \
                    or len(name) < head[1] or not name.startswith(self.prefix):
                return items
            body = self.compiled.get(name)
            if body is None:
                raise UnknownSubsectionFound(name, self.parent, start, path=path)
            header = SubsectionHeader._parsereport(stream, context, path)
            value = body._parsereport(stream, context, path)
            items.append(Loc((header.name, header.version_id, value), start, stream_tell(stream, path)))

    def _build(self, obj, stream, context, path):
        for item in obj:
            name, version, value = item.value if isinstance(item, Loc) else item
            body = self.compiled.get(name)
            if body is None:
                raise ConstructError(f"subsection {name!r} is not one of {self.parent!r}'s", path=path)
            SubsectionHeader._build({"marker": 0x05, "name": name, "version_id": version}, stream, context, path)
            body._build(value, stream, context, path)
        return obj


def min_size(fd: FieldDesc) -> int:
    """The fewest bytes one element of this field can take (0 when it can be empty)."""
    if fd.type == "struct" and fd.struct is not None:
        return sum(min_size(f) * (f.count or 1) for f in fd.struct.fields if not f.count_from)
    if fd.type == "capability":
        return 1
    return fd.size or 0 if fd.size_from is None else 0


def element(fd: FieldDesc, keys: dict[str, str] | None = None) -> Construct:
    """The construct for one element of a field."""
    if fd.type == "struct" and fd.struct is not None:
        return compile_description(fd.struct)
    if fd.type == "bool":
        return Int8ub  # any non-zero loads as true; keep the byte exactly
    if fd.type in INT_TYPES and fd.size == INT_TYPES[fd.type][1]:
        return INT_TYPES[fd.type][0]
    if fd.type == "pci irq state" and fd.size == 16:
        return Array(4, Int32ub)
    if fd.type == "capability":
        return Str8
    if fd.type == RAMFB_CFG_TYPE and fd.size == RAMFB_CFG_SIZE:
        return RamfbCfg
    if fd.size_from is not None:
        key = (keys or {})[fd.size_from]
        return Bytes(lambda ctx: _value(ctx, key))
    return Bytes(fd.size or 0)


def _value(ctx: Any, key: str) -> Any:
    value = ctx[key]
    return value.value if isinstance(value, Loc) else value


def field_construct(fd: FieldDesc, keys: dict[str, str]) -> Construct:
    if fd.count_from is not None:
        key = keys[fd.count_from]
        return CheckedArray(lambda ctx: _value(ctx, key), Located(element(fd, keys)), min_size(fd))
    if fd.count is not None:
        return CheckedArray(fd.count, Located(element(fd, keys)), min_size(fd))
    return element(fd, keys)


@lru_cache(maxsize=4096)
def compile_description(desc: Description) -> Construct:
    """Fields in order (each `Located`), then the subsection list."""
    keys: dict[str, str] = {}
    members = []
    for i, fd in enumerate(desc.fields):
        key = f"f{i}"
        members.append(key / Located(field_construct(fd, keys)))
        keys[fd.key] = key
    subs = {s.name.encode(): compile_description(s) for s in desc.subsections}
    members.append("subsections" / Subsections(desc.name, subs))
    return Struct(*members)
