"""Description -> construct: the same schema parses and builds a vmstate payload.

A description compiles to `Fields`: its fields in order, then its subsection list.
Each field parses to `Loc(value, start, end)` so the codec can give every field its
absolute byte span; building takes the plain value (or a Loc). The parsed
container is keyed by position ("f0", "f1", ... and "subsections"), because field
names are not unique across vmdesc objects and may clash with construct's own
context keys; the Description keeps the names.

Speed (a q35 stream has ~30 device sections, thousands of fields and tens of
thousands of array elements): fixed-size leaves (integers, bool, short buffers,
the PCI irq state, the ramfb cfg) are `Packed`; consecutive packed fields of one
description are read with one read and one struct call, and an array of packed
elements (`PackedArray`: PCI config bytes, uint32 queues, ...) is one read and
one struct call that gives a `PackedList` of plain values, element i at
start + i * size. Other arrays (`LocatedArray`) give one Loc per element.

Hostile input: an array's count is checked against the bytes left before any
element is read (`CountTooLarge`), and every field or element that takes no bytes
is charged to the allowance its stream carries (wire/bounded.py): the input does
not bound those, and they multiply. A short read fails with construct's StreamError
and the path of the field it was in, as the field-by-field parse would.

Subsections follow the loader's peek rule: a 0x05 byte whose name starts with
this vmsd's name belongs to it; anything else ends the list. A name that
belongs to it but is not listed is an error, as it is for QEMU (-ENOENT).

Imports: construct, wire, vmstate.model.
References: migration/vmstate.c (vmstate_load_state, vmstate_subsection_load,
vmstate_field_exists), migration/vmstate-types.c.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from construct import (
    Array,
    Bytes,
    Construct,
    ConstructError,
    Container,
    FormatField,
    Int8ub,
    Int32ub,
    StreamError,
    stream_read,
    stream_seek,
    stream_write,
)

from ..wire.bounded import BoundedStream
from ..wire.primitives import INT_TYPES, Str8
from ..wire.ramfb import RAMFB_CFG_KEYS, RAMFB_CFG_SIZE, RamfbCfg
from ..wire.stream import SubsectionHeader
from .model import RAMFB_CFG_TYPE, Description, FieldDesc

#: fixed buffers up to this size are read with their neighbours in one struct call
PACKED_BUFFER_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Loc:
    value: Any
    start: int
    end: int


class PackedList(list):
    """An array of fixed-size elements parsed in one piece: plain values, element i spans
    `size` bytes from the array's start + i * size."""

    __slots__ = ("size",)

    def __init__(self, values: Any, size: int) -> None:
        super().__init__(values)
        self.size = size


class UnknownSubsectionFound(ConstructError):
    """A subsection name that belongs to the vmsd but that its description does not list."""

    def __init__(self, name: bytes, parent: str, offset: int, path: str | None = None) -> None:
        super().__init__(f"unknown subsection {name!r} of {parent!r}", path=path)
        self.name, self.parent, self.offset = name, parent, offset


class CountTooLarge(ConstructError):
    """An element count that cannot fit in the bytes that are left."""


def _charge_empty(stream: Any, path: str) -> None:
    """Fields and elements without bytes are not bounded by the input, and they multiply
    (nested arrays, many sections of one description: 2000 x 2000 empty fields took minutes
    and gigabytes): each is charged to the allowance of the stream's input (wire/bounded.py);
    real streams have none."""
    if isinstance(stream, BoundedStream):
        empty = stream.empty
        empty[0] -= 1
        if empty[0] < 0:
            raise CountTooLarge("more fields and elements without bytes than the input can justify", path=path)


def _short_read(expected: int, found: int, path: str) -> StreamError:
    """The error construct's stream_read gives for a read that came back short."""
    return StreamError(f"stream read less than specified amount, expected {expected}, found {found}", path=path)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Loc) else value


def _child_context(context: Any, stream: Any) -> Container:
    """A context for building members, as construct's Struct makes one."""
    ctx = Container(_=context, _params=context._params, _root=None, _parsing=context._parsing,
                    _building=context._building, _sizing=context._sizing, _subcons=None, _io=stream,
                    _index=context.get("_index", None))
    ctx._root = context.get("_root", ctx)
    return ctx


class Packed(Construct):
    """A fixed-size leaf read with one struct call: `fmt` (big-endian, no '>') gives `count`
    values, which `make` turns into the value (None: the one value as it is). Builds with
    `builder`, the construct it stands for."""

    def __init__(self, fmt: str, builder: Construct, make: Callable[[tuple], Any] | None = None) -> None:
        super().__init__()
        self.fmt, self.builder, self.make = fmt, builder, make
        self.codec = struct.Struct(">" + fmt)
        self.size = self.codec.size
        self.count = len(self.codec.unpack(bytes(self.size)))
        assert self.size > 0 and (make is not None or self.count == 1)

    def _parse(self, stream, context, path):
        values = self.codec.unpack(stream_read(stream, self.size, path))
        return values[0] if self.make is None else self.make(values)

    def _build(self, obj, stream, context, path):
        return self.builder._build(_plain(obj), stream, context, path)

    def _sizeof(self, context, path):
        return self.size


def _count(count: Any, context: Any) -> int:
    return count(context) if callable(count) else count


def _check_count(count: int, min_size: int, stream: Any, path: str) -> None:
    """Fail before any element is parsed when `count` cannot fit in the bytes left, so a
    hostile count can neither allocate nor spin."""
    if isinstance(stream, BoundedStream) and count > 0:
        left = stream.remaining()
        # elements that may be empty still cost one step each: bound the count by the input too
        need = count * min_size if min_size else count - 1
        if need > left:
            raise CountTooLarge(f"{count} elements cannot fit in the {left} bytes left", path=path)


def _build_elements(count: Any, subcon: Construct, obj, stream, context, path):
    count = _count(count, context)
    if len(obj) != count:
        raise ConstructError(f"expected {count} elements, found {len(obj)}", path=path)
    return [subcon._build(_plain(item), stream, context, path) for item in obj]


class PackedArray(Construct):
    """`count` elements of one `Packed` type, read at once: a PackedList of plain values."""

    def __init__(self, count: Any, subcon: Packed, min_size: int) -> None:
        super().__init__()
        self.count, self.subcon, self.min_size = count, subcon, min_size
        self.one = subcon.make is None and not subcon.fmt.endswith("s")

    def _parse(self, stream, context, path):
        count = _count(self.count, context)
        _check_count(count, self.min_size, stream, path)
        if count <= 0:
            return PackedList((), self.subcon.size)
        size = self.subcon.size
        data = stream.read(count * size)
        if len(data) != count * size:
            have = len(data) % size
            raise _short_read(size, have, path)
        if self.subcon.fmt == "B":
            values: Any = data
        elif self.one:
            values = struct.unpack(f">{count}{self.subcon.fmt}", data)
        elif self.subcon.make is None:
            values = [v for (v,) in self.subcon.codec.iter_unpack(data)]
        else:
            make = self.subcon.make
            values = [make(v) for v in self.subcon.codec.iter_unpack(data)]
        return PackedList(values, size)

    def _build(self, obj, stream, context, path):
        count = _count(self.count, context)
        if self.one and isinstance(obj, list) and len(obj) == count > 0:
            try:
                data = struct.pack(f">{count}{self.subcon.fmt}", *obj)
            except (struct.error, TypeError):
                pass  # element by element below, for the error that names the value
            else:
                stream_write(stream, data, len(data), path)
                return obj
        return _build_elements(self.count, self.subcon, obj, stream, context, path)


class LocatedArray(Construct):
    """`count` elements of any kind, each parsed to Loc(value, start, end)."""

    def __init__(self, count: Any, subcon: Construct, min_size: int) -> None:
        super().__init__()
        self.count, self.subcon, self.min_size = count, subcon, min_size

    def _parse(self, stream, context, path):
        count = _count(self.count, context)
        _check_count(count, self.min_size, stream, path)
        subcon, tell, items = self.subcon, stream.tell, []
        for _ in range(count):
            start = tell()
            value = subcon._parsereport(stream, context, path)
            end = tell()
            if end == start:
                _charge_empty(stream, path)
            items.append(Loc(value, start, end))
        return items

    def _build(self, obj, stream, context, path):
        return _build_elements(self.count, self.subcon, obj, stream, context, path)


class SizedBytes(Construct):
    """A buffer whose length is an earlier field's value (VMSTATE_VBUFFER)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def _parse(self, stream, context, path):
        return stream_read(stream, _plain(context[self.key]), path)

    def _build(self, obj, stream, context, path):
        obj = _plain(obj)
        stream_write(stream, obj, _plain(context[self.key]), path)
        return obj


class Subsections(Construct):
    """Zero or more subsections of one vmsd, found the way QEMU's loader finds them."""

    def __init__(self, parent: str, compiled: dict[bytes, Construct]) -> None:
        super().__init__()
        self.parent, self.prefix, self.compiled = parent, parent.encode(), compiled

    def _parse(self, stream, context, path):
        items = []
        shortest = len(self.prefix) + 1
        while True:
            start = stream.tell()
            head = stream.read(2)
            if len(head) < 2 or head[0] != 0x05 or head[1] < shortest:
                stream_seek(stream, start, 0, path)
                return items
            name = stream.read(head[1])
            if len(name) < head[1] or not name.startswith(self.prefix):
                stream_seek(stream, start, 0, path)
                return items
            body = self.compiled.get(name)
            if body is None:
                stream_seek(stream, start, 0, path)
                raise UnknownSubsectionFound(name, self.parent, start, path=path)
            word = stream.read(4)
            if len(word) != 4:
                raise _short_read(4, len(word), path + " -> version_id")
            value = body._parsereport(stream, context, path)
            items.append(Loc((name, int.from_bytes(word, "big"), value), start, stream.tell()))

    def _build(self, obj, stream, context, path):
        for item in obj:
            name, version, value = _plain(item)
            body = self.compiled.get(name)
            if body is None:
                raise ConstructError(f"subsection {name!r} is not one of {self.parent!r}'s", path=path)
            SubsectionHeader._build({"marker": 0x05, "name": name, "version_id": version}, stream, context, path)
            body._build(value, stream, context, path)
        return obj


class _Run:
    """Consecutive packed fields, read with one read and one struct call."""

    __slots__ = ("codec", "entries", "size")

    def __init__(self, members: list[tuple[str, Packed]]) -> None:
        self.codec = struct.Struct(">" + "".join(p.fmt for _, p in members))
        self.size = self.codec.size
        entries, at, index = [], 0, 0
        for key, p in members:
            # (key, start, end, first value, last value + 1, make)
            entries.append((key, at, at + p.size, index, index + p.count, p.make))
            at, index = at + p.size, index + p.count
        assert at == self.size
        self.entries = tuple(entries)

    def short(self, found: int, path: str) -> StreamError:
        """The error of the field the input ends in."""
        for key, start, end, *_ in self.entries:
            if end > found:
                return _short_read(end - start, max(found - start, 0), f"{path} -> {key}")
        raise AssertionError("a short read that is not short")


class Fields(Construct):
    """One description's fields in order, each parsed to a Loc under its key, then its
    subsection list under "subsections"."""

    def __init__(self, members: list[tuple[str, Construct]], subsections: Subsections) -> None:
        super().__init__()
        self.members, self.subsections = members, subsections
        steps: list[Any] = []
        run: list[tuple[str, Packed]] = []
        for key, sub in members:
            if isinstance(sub, Packed):
                run.append((key, sub))
                continue
            if run:
                steps.append(_Run(run))
                run = []
            steps.append((key, sub, f" -> {key}"))
        if run:
            steps.append(_Run(run))
        self.steps = tuple(steps)

    def _parse(self, stream, context, path):
        obj = Container()
        tell, read = stream.tell, stream.read
        for step in self.steps:
            if type(step) is _Run:
                start = tell()
                data = read(step.size)
                if len(data) != step.size:
                    raise step.short(len(data), path)
                values = step.codec.unpack(data)
                for key, a, b, first, stop, make in step.entries:
                    obj[key] = Loc(values[first] if make is None else make(values[first:stop]), start + a, start + b)
            else:
                key, sub, suffix = step
                start = tell()
                value = sub._parsereport(stream, obj, path + suffix)
                end = tell()
                if end == start:
                    _charge_empty(stream, path + suffix)
                obj[key] = Loc(value, start, end)
        obj["subsections"] = self.subsections._parsereport(stream, obj, path + " -> subsections")
        return obj

    def _build(self, obj, stream, context, path):
        ctx = _child_context(context, stream)
        for key, sub in self.members:
            value = _plain(obj[key])
            ctx[key] = value
            ctx[key] = sub._build(value, stream, ctx, f"{path} -> {key}")
        self.subsections._build(obj["subsections"], stream, ctx, path + " -> subsections")
        return obj


def min_size(fd: FieldDesc) -> int:
    """The fewest bytes one element of this field can take (0 when it can be empty)."""
    if fd.type == "struct" and fd.struct is not None:
        return sum(min_size(f) * (f.count or 1) for f in fd.struct.fields if not f.count_from)
    if fd.type == "capability":
        return 1
    return fd.size or 0 if fd.size_from is None else 0


def _int(construct: FormatField) -> Packed:
    return Packed(construct.fmtstr[1:], construct)


def _ramfb_cfg(values: tuple) -> Container:
    return Container(zip(RAMFB_CFG_KEYS, values))


def element(fd: FieldDesc, keys: dict[str, str] | None = None) -> Construct:
    """The construct for one element of a field."""
    if fd.type == "struct" and fd.struct is not None:
        return compile_description(fd.struct)
    if fd.type == "bool":
        return _int(Int8ub)  # any non-zero loads as true; keep the byte exactly
    if fd.type in INT_TYPES and fd.size == INT_TYPES[fd.type][1]:
        return _int(INT_TYPES[fd.type][0])
    if fd.type == "pci irq state" and fd.size == 16:
        return Packed("4I", Array(4, Int32ub), list)
    if fd.type == "capability":
        return Str8
    if fd.type == RAMFB_CFG_TYPE and fd.size == RAMFB_CFG_SIZE:
        return Packed("QIIIII", RamfbCfg, _ramfb_cfg)
    if fd.size_from is not None:
        return SizedBytes((keys or {})[fd.size_from])
    if 0 < (fd.size or 0) <= PACKED_BUFFER_LIMIT:
        return Packed(f"{fd.size}s", Bytes(fd.size))
    return Bytes(fd.size or 0)


def field_construct(fd: FieldDesc, keys: dict[str, str]) -> Construct:
    if fd.count_from is None and fd.count is None:
        return element(fd, keys)
    count: Any = fd.count
    if fd.count_from is not None:
        key = keys[fd.count_from]
        count = lambda ctx: _plain(ctx[key])
    sub = element(fd, keys)
    if isinstance(sub, Packed):
        return PackedArray(count, sub, min_size(fd))
    return LocatedArray(count, sub, min_size(fd))


@lru_cache(maxsize=4096)
def compile_description(desc: Description) -> Fields:
    """Fields in order (each parsed to a Loc), then the subsection list."""
    keys: dict[str, str] = {}
    members = []
    for i, fd in enumerate(desc.fields):
        key = f"f{i}"
        members.append((key, field_construct(fd, keys)))
        keys[fd.key] = key
    subs = {s.name.encode(): compile_description(s) for s in desc.subsections}
    return Fields(members, Subsections(desc.name, subs))
