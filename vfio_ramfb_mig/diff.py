"""Structural diff of two decoded migration streams: what differs, in words, and where.

Sections are matched by (idstr, instance_id), never by position or section id:
the same machine type saved by QEMU 7.2 and by QEMU 10.0 writes the same
sections in another order with other ids. Within a section, fields and
subsections are matched by name and compared through the decoded model, so
built-in schemas name what the vmdesc leaves opaque (the ramfb cfg is compared
per key: ``state/cfg/width 1024 → 1280``; the VFIO config field by field).

RAM is compared by each page's *final* content (the last record for a page
wins; an XBZRLE record is applied to the page's previous content), one RAM
block at a time, at memory speed: each side's final page state is ram.state's,
and ram.compare compares them (whole slices of both inputs where both sides have
pages in the same layout, page by page elsewhere). A zero page equals a page of
zeros. A page record QEMU refuses (past its block's end) is a CorruptError.

Paths and section names are vmig's one spelling (naming.py), the same as golden files and
`vmig check` use: ``dma#1``, ``fw_cfg/acpi_mr/...``, ``ahci/dev[5]``, ``configuration/...``,
``stream/...`` for stream-level facts (footers, vmdesc, commands), ``ram/<block>``. ``ignore``
patterns are naming's: fnmatch patterns applied to a change's path and to every ancestor of
it, so ``ram`` ignores all RAM and ``cpu/env.tsc*`` the TSC fields.

Imports: model, errors, source (Source), text, wire.ramfb, vmstate.compile (type names), ram (state, compare).
References: migration/savevm.c (find_se: sections are found by idstr + instance_id),
migration/ram.c (ram_load_precopy: the last record for a page wins; load_xbzrle),
migration/xbzrle.c (xbzrle_decode_buffer), hw/display/ramfb.c (RAMFBCfg).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .naming import IgnorePatterns, element, level_names, section_name, subsection_name
from .source import Source
from .text import printable, to_wire
from . import equivalence
from .model import (
    Blob,
    Command,
    Configuration,
    Field,
    MigrationStream,
    OpaqueBody,
    RamBlock,
    RamBody,
    Section,
    Span,
    StructValue,
    Subsection,
    VfioBody,
    VmstateBody,
)
from .vmstate.compile import RAMFB_CFG_TYPE
from .wire.ramfb import RAMFB_CFG_OFFSETS, fourcc_text
from .ram.compare import compare_block
from .ram.state import PageState, ReadWindow

#: Change kinds, in the order a reader meets them
KINDS = (
    "stream",               # footers, vmdesc, commands, header: facts about the whole stream
    "machine",              # configuration: machine type name
    "configuration",        # configuration: capabilities, uuid, target page bits
    "section_removed",      # a section only in A
    "section_added",        # a section only in B
    "version",              # version_id of a section (or of a nested vmsd, or a subsection)
    "subsection_removed",
    "subsection_added",
    "field_removed",
    "field_added",
    "type",                 # the same field decoded with another type
    "value",                # a scalar value
    "bytes",                # a byte buffer (first differing byte, number of differing bytes)
    "length",               # an array's element count
    "ram_block",            # a RAM block only on one side, or its length changed
    "ram_pages",            # pages of one RAM block differ
    "vfio_data",            # VFIO device data (opaque vendor state) differs
    "payload",              # a section vmig could not decode on both sides: raw payload bytes differ
)

#: more element changes than this in one array collapse into one summary change
LIST_LIMIT = 8
#: bytes compared per step when a range is larger
CHUNK = 1 << 20
#: after reading this much through a source's mmap, let the kernel drop the mapped pages (RSS stays flat)
DROP_AFTER = 8 << 20


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between stream A (old) and stream B (new).

    `group` is the section key (``idstr[/instance]``), ``configuration`` or ``stream``;
    `path` starts with it. `old_offset`/`new_offset` are absolute offsets in A and B
    (None where the thing is absent on that side). `text` says it in words.
    `count` is the number of differing bytes, pages or elements where one change
    stands for many.
    """

    kind: str
    group: str
    path: str
    text: str
    old: Any = None
    new: Any = None
    old_offset: int | None = None
    new_offset: int | None = None
    count: int | None = None


@dataclass(frozen=True)
class StreamDiff:
    """The result of `diff_streams`: the changes in stream order of A (then B-only ones)."""

    a: str | None
    b: str | None
    changes: tuple[Change, ...]
    #: changes that matched an ignore pattern (not in `changes`)
    ignored: int = 0
    #: what could not be compared (e.g. RAM contents without a source)
    notes: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        """No differences; fields that only changed their names (kind "equivalent") are none."""
        return all(c.kind == "equivalent" for c in self.changes)

    def groups(self) -> dict[str, list[Change]]:
        """Changes by group, groups in first-seen order."""
        out: dict[str, list[Change]] = {}
        for change in self.changes:
            out.setdefault(change.group, []).append(change)
        return out


def diff_streams(a: MigrationStream, b: MigrationStream, source_a: Source | None = None,
                 source_b: Source | None = None, *, ignore: Sequence[str] = (),
                 progress: Callable[[int, int], None] | None = None,
                 ram_a: PageState | None = None, ram_b: PageState | None = None) -> StreamDiff:
    """Compare two decoded streams.

    Args:
        a, b: the decoded streams (A is "old", B is "new").
        source_a, source_b: the inputs they were decoded from. Needed to compare what the
            model keeps as byte ranges (RAM pages, VFIO device data, buffers over 4 KiB);
            without them those are compared by length only and a note says so.
        ignore: fnmatch patterns on change paths (see the module docstring).
        progress: called as ``progress(done, total)`` in bytes of guest RAM: `total` is the size
            of the RAM blocks whose pages are compared (pages x page size, the larger side of each
            block; 0 when there are none), `done` how much of it is behind. First (0, total), then
            about every 32 MiB (ram.compare.PROGRESS_EVERY) while pages are compared, last
            (total, total). `done` never goes back nor past `total`.
        ram_a, ram_b: the streams' final page states (ram.PageState fed by the decode that made
            them: memory flat in the streams); without them the streams must keep their page runs
            (decode's default) and the states are made from those.
    """
    states = []
    for stream, state, source in ((a, ram_a, source_a), (b, ram_b, source_b)):
        if state is None:
            if any(isinstance(r, Section) and isinstance(r.body, RamBody) and not r.body.runs_kept
                   for r in stream.records):
                # without its page runs a RAM section would compare as equal, whatever it holds
                raise ValueError("diff_streams needs the RAM page runs: decode with ram_runs=True, or "
                                 "pass the stream's ram.PageState")
            state = PageState.of(stream, source)
        state.check()
        states.append(state)
    differ = _Differ(a, b, source_a, source_b, tuple(ignore), progress, states[0], states[1])
    differ.run()
    if source_a is not None and source_b is not None:
        _screens(differ, a, b, source_a, source_b)
    return StreamDiff(a=a.source, b=b.source, changes=tuple(differ.changes), ignored=differ.ignored,
                      notes=tuple(dict.fromkeys(differ.notes)), ignore=tuple(ignore))


def _screens(differ: _Differ, a: MigrationStream, b: MigrationStream, source_a: Source, source_b: Source) -> None:
    """The guest's screens (screen.compare_streams): one change when they differ, with the number of
    differing pixels and the box around them; when only one side can be drawn, why the other cannot.
    (Analysis engineer: this belongs in the diff/ package when diff.py is split.)"""
    from .screen import compare_streams

    if differ.ignore("screen"):
        return
    result = compare_streams(a, source_a, b, source_b)
    if result is None:
        return
    if result.diff is not None:
        if not result.diff.same:
            d = result.diff
            differ.add("screen", "screen", "screen", d.words(), old={"size": list(d.size_a), "bbox": list(d.bbox or ())},
                       new={"size": list(d.size_b), "bbox": list(d.bbox or ())}, count=d.pixels)
    elif result.a is not None or result.b is not None:
        side, why = ("B", result.b_error) if result.a is not None else ("A", result.a_error)
        differ.add("screen", "screen", "screen", f"only {'A' if side == 'B' else 'B'} has a screen; {side}: {why}",
                   old=None if side == "A" else {"size": list(result.a.image.size)},
                   new=None if side == "B" else {"size": list(result.b.image.size)})
    # neither drawn (say, both configs still zero): the ramfb fields' changes say it all


# ================================================================ words


def int_text(value: int, ftype: str = "") -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if ftype == "timer" and value == 0xFFFF_FFFF_FFFF_FFFF:
        return "not pending"
    if -10 < value < 10:
        return str(value)
    return f"{value} ({value & ((1 << 64) - 1):#x})"


def ramfb_value_text(key: str, value: int) -> str:
    if key == "fourcc":
        return f"{fourcc_text(value)} ({value:#010x})" if value else "0"
    if key in ("addr", "flags"):
        return f"{value:#x}"
    return str(value)


def value_text(value: Any, ftype: str = "") -> str:
    if isinstance(value, (bool, int)):
        return int_text(value, ftype)
    if isinstance(value, str):
        return repr(printable(value))
    if isinstance(value, (bytes, bytearray)):
        shown = value[:16].hex(" ")
        more = f" … +{len(value) - 16} more" if len(value) > 16 else ""
        return f"{len(value)} bytes ({shown}{more})"
    if isinstance(value, Blob):
        return f"{value.length:,} bytes"
    if isinstance(value, StructValue):
        return f"{value.vmsd_name} v{value.version}"
    if isinstance(value, dict) and ftype == RAMFB_CFG_TYPE:
        if not any(value.values()):
            return "not configured (28 zero bytes)"
        return (f"{value['width']}x{value['height']} {fourcc_text(value['fourcc'])} at {value['addr']:#x} "
                f"stride {value['stride']}")
    if isinstance(value, list):
        if value and all(isinstance(v, (bool, int)) for v in value):
            shown = ", ".join(int_text(v, ftype) for v in value[:8])
            if len(value) > 8:
                return f"[{shown}, … +{len(value) - 8} more] ({len(value)} items; --json shows all)"
            return f"[{shown}] ({len(value)} items)"
        return f"{len(value)} items"
    return repr(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex() if len(value) <= 64 else {"length": len(value),
                                                      "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, Blob):
        return {"length": value.length, "offset": value.offset}
    if isinstance(value, StructValue):
        return {"vmsd_name": value.vmsd_name, "version": value.version}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


def diff_json(result: StreamDiff) -> dict[str, Any]:
    """The `vmig diff --json` document."""
    return {
        "a": result.a,
        "b": result.b,
        "same": result.same,
        "ignore": list(result.ignore),
        "ignored": result.ignored,
        "notes": list(result.notes),
        "changes": [
            {k: v for k, v in {
                "kind": c.kind, "group": c.group, "path": c.path, "text": c.text,
                "old": _jsonable(c.old), "new": _jsonable(c.new),
                "old_offset": c.old_offset, "new_offset": c.new_offset, "count": c.count,
            }.items() if v is not None}
            for c in result.changes
        ],
    }


# ================================================================ byte ranges


def _xor_count(x: bytes, y: bytes) -> tuple[int, int]:
    """(index of the first differing byte or -1, number of differing bytes) of equal-length x, y."""
    if x == y:
        return -1, 0
    n = len(x)
    diff = (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).to_bytes(n, "big")
    first = next(i for i, c in enumerate(diff) if c)
    return first, n - diff.count(0)


class _Bytes:
    """Reads byte ranges of one side: from the model (inline bytes) or its source.

    Reads through a mapped file are counted: once `DROP_AFTER` bytes were read, the mapped
    pages of the range read since the last drop are let go (MADV_DONTNEED), so resident
    memory does not grow with the input however much of it is compared."""

    def __init__(self, source: Source | None) -> None:
        self.source = source
        self.window = ReadWindow(source, DROP_AFTER)

    def get(self, offset: int, length: int, inline: bytes | None = None) -> bytes | None:
        if inline is not None:
            return inline
        if self.source is None or offset + length > self.source.size:
            return None
        data = self.source.buf[offset:offset + length]
        self.touched(offset, length)
        return data if isinstance(data, bytes) else bytes(data)

    def touched(self, offset: int, length: int) -> None:
        """`length` bytes at `offset` were read: let them go once there is enough of it."""
        self.window.touched(offset, length)

    def drop(self) -> None:
        """Let the kernel drop the mapped pages read since the last drop (Source.forget)."""
        self.window.flush()


def _range_diff(ra: _Bytes, oa: int, la: int, rb: _Bytes, ob: int, lb: int) -> tuple[int, int] | None:
    """(first differing index or -1, differing bytes over the common length) of two ranges,
    read in chunks; None when a side cannot be read."""
    n = min(la, lb)
    first, count, pos = -1, 0, 0
    while pos < n:
        step = min(CHUNK, n - pos)
        x, y = ra.get(oa + pos, step), rb.get(ob + pos, step)
        if x is None or y is None:
            return None
        f, c = _xor_count(x, y)
        if c and first < 0:
            first = pos + f
        count += c
        pos += step
    if la != lb and first < 0:
        first = n
    return first, count


def _hash_ranges(reader: _Bytes, ranges: Iterable[tuple[int, int, bytes | None]]) -> str | None:
    h = hashlib.blake2b(digest_size=20)
    for offset, length, inline in ranges:
        if inline is not None:
            h.update(inline)
            continue
        pos = 0
        while pos < length:
            step = min(CHUNK, length - pos)
            data = reader.get(offset + pos, step)
            if data is None:
                return None
            h.update(data)
            pos += step
    return h.hexdigest()


# ================================================================ RAM (the engine is ram.compare)


def _block_list(state: PageState) -> dict[str, RamBlock]:
    """The blocks of a stream's block list (and those its records name without one)."""
    return {name: pages.block for name, pages in state.blocks.items()}


# ================================================================ the differ


class _Differ:
    def __init__(self, a: MigrationStream, b: MigrationStream, source_a: Source | None, source_b: Source | None,
                 ignore: tuple[str, ...], progress: Callable[[int, int], None] | None = None,
                 ram_a: PageState | None = None, ram_b: PageState | None = None) -> None:
        self.a, self.b, self.ignore = a, b, IgnorePatterns(ignore)
        self.ra, self.rb = _Bytes(source_a), _Bytes(source_b)
        self.changes: list[Change] = []
        self.notes: list[str] = []
        self.ignored = 0
        self.progress = progress
        self.ram_total = self.ram_done = 0  # progress: guest RAM bytes to compare, and compared
        self.ram_reported = 0
        self.ram_a, self.ram_b = ram_a, ram_b

    def add(self, kind: str, group: str, path: str, text: str, **kw: Any) -> None:
        if self.ignore(path):
            self.ignored += 1
            return
        self.changes.append(Change(kind=kind, group=group, path=path, text=text, **kw))

    def skip(self, path: str) -> bool:
        """A whole subtree is ignored: count it once and do not compute it."""
        if self.ignore(path):
            self.ignored += 1
            return True
        return False

    # ------------------------------------------------------------ top level

    def run(self) -> None:
        sa, sb = _by_key(self.a), _by_key(self.b)
        if self.progress is not None:
            self.ram_total = sum(self.ram_plan(section_name(*key), sa[key], sb[key]) for key in sa if key in sb)
            self.progress(0, self.ram_total)
        try:
            self.compare(sa, sb)
        finally:
            self.ra.drop()
            self.rb.drop()
        if self.progress is not None and self.ram_reported < self.ram_total:
            self.progress(self.ram_total, self.ram_total)

    def compare(self, sa: dict[tuple[str, int], list[tuple[int, Section]]],
                sb: dict[tuple[str, int], list[tuple[int, Section]]]) -> None:
        self.stream_facts()
        self.configuration()
        for key in list(sa) + [k for k in sb if k not in sa]:
            idstr, instance = key
            name = section_name(idstr, instance)
            if key not in sb:
                self.only_one_side("section_removed", name, sa[key], True)
            elif key not in sa:
                self.only_one_side("section_added", name, sb[key], False)
            elif not self.skip(name):
                self.section(name, sa[key], sb[key])

    def stream_facts(self) -> None:
        fa, fb = _footers(self.a), _footers(self.b)
        if fa is not None and fb is not None and fa != fb:
            self.add("stream", "stream", "stream/footers", f"section footers {'on' if fa else 'off'} → "
                     f"{'on' if fb else 'off'}", old=fa, new=fb)
        va, vb = self.a.vmdesc is not None, self.b.vmdesc is not None
        if va != vb:
            self.add("stream", "stream", "stream/vmdesc", f"vmdesc trailer {'present' if va else 'absent'} → "
                     f"{'present' if vb else 'absent'}", old=va, new=vb,
                     old_offset=self.a.vmdesc.span.offset if va and self.a.vmdesc.span else None,
                     new_offset=self.b.vmdesc.span.offset if vb and self.b.vmdesc.span else None)
        ca, cb = _commands(self.a), _commands(self.b)
        for name in dict.fromkeys(list(ca) + list(cb)):
            na, nb = len(ca.get(name, [])), len(cb.get(name, []))
            if na != nb:
                oa = ca[name][0].span.offset if na and ca[name][0].span else None
                ob = cb[name][0].span.offset if nb and cb[name][0].span else None
                self.add("stream", "stream", f"stream/commands/{name}",
                         f"COMMAND {name}: {na} → {nb} in the stream", old=na, new=nb, old_offset=oa, new_offset=ob)

    def configuration(self) -> None:
        ca, cb = self.a.configuration, self.b.configuration
        if ca is None or cb is None:
            if (ca is None) != (cb is None):
                self.add("configuration", "configuration", "configuration",
                         f"configuration record {'present' if ca else 'absent'} → {'present' if cb else 'absent'}",
                         old=ca is not None, new=cb is not None, old_offset=_off(ca), new_offset=_off(cb))
            return
        if ca.machine != cb.machine:
            self.add("machine", "configuration", "configuration/machine",
                     f"{printable(ca.machine)} → {printable(cb.machine)}", old=ca.machine,
                     new=cb.machine, old_offset=_off(ca), new_offset=_off(cb))
        caps_a, caps_b = _capabilities(ca), _capabilities(cb)
        for cap in sorted(caps_a - caps_b):
            self.add("configuration", "configuration", f"configuration/capabilities/{cap}",
                     "on → off", old=True, new=False, old_offset=_off(ca), new_offset=_off(cb))
        for cap in sorted(caps_b - caps_a):
            self.add("configuration", "configuration", f"configuration/capabilities/{cap}",
                     "off → on", old=False, new=True, old_offset=_off(ca), new_offset=_off(cb))
        subs_a = {s.name: s for s in ca.subsections if s.name != "configuration/capabilities"}
        subs_b = {s.name: s for s in cb.subsections if s.name != "configuration/capabilities"}
        self.level("configuration", "configuration", ("configuration", (), tuple(subs_a.values())),
                   ("configuration", (), tuple(subs_b.values())))

    # ------------------------------------------------------------ sections

    def only_one_side(self, kind: str, name: str, records: list[tuple[int, Section]], in_a: bool) -> None:
        first = records[0][1]
        kinds = ", ".join(dict.fromkeys(s.type.removeprefix("section_").upper() for _, s in records))
        what = _body_words(records)
        side = "A" if in_a else "B"
        self.add(kind, name, name, f"only in {side}: {kinds} section{what}, version {first.version_id}",
                 old=first.version_id if in_a else None, new=None if in_a else first.version_id,
                 old_offset=_off(first) if in_a else None, new_offset=None if in_a else _off(first))

    def section(self, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> None:
        ha = next((s for _, s in ra if s.long_header), ra[0][1])
        hb = next((s for _, s in rb if s.long_header), rb[0][1])
        if ha.version_id != hb.version_id:
            self.add("version", name, f"{name}/version", f"section version {ha.version_id} → {hb.version_id}",
                     old=ha.version_id, new=hb.version_id, old_offset=_off(ha), new_offset=_off(hb))
        if any(isinstance(s.body, RamBody) for _, s in ra) or any(isinstance(s.body, RamBody) for _, s in rb):
            self.ram(name, ra, rb)
            return
        if any(isinstance(s.body, VfioBody) for _, s in ra) and any(isinstance(s.body, VfioBody) for _, s in rb):
            self.vfio(name, ra, rb)
            return
        fa = [s for _, s in ra if s.type == "section_full"]
        fb = [s for _, s in rb if s.type == "section_full"]
        if fa and fb and isinstance(fa[-1].body, VmstateBody) and isinstance(fb[-1].body, VmstateBody):
            ba, bb = fa[-1].body, fb[-1].body
            if ba.vmsd_name != bb.vmsd_name:
                self.add("type", name, f"{name}/vmsd", f"vmsd {ba.vmsd_name} → {bb.vmsd_name}", old=ba.vmsd_name,
                         new=bb.vmsd_name, old_offset=_off(fa[-1]), new_offset=_off(fb[-1]))
            self.level(name, name, (ba.vmsd_name, ba.fields, ba.subsections),
                       (bb.vmsd_name, bb.fields, bb.subsections))
            return
        self.payloads(name, [s for _, s in ra], [s for _, s in rb])

    def payloads(self, name: str, la: list[Section], lb: list[Section]) -> None:
        """Sections not decoded on both sides (no vmdesc, opaque): compare the raw payload bytes."""
        if len(la) == 1 and len(lb) == 1:
            (oa, na), (ob, nb) = _payload(la[0]), _payload(lb[0])
            inline_a = la[0].body.data.data if isinstance(la[0].body, OpaqueBody) else None
            inline_b = lb[0].body.data.data if isinstance(lb[0].body, OpaqueBody) else None
            ra = _Bytes(self.ra.source) if inline_a is None else _Inline(inline_a, oa)
            rb = _Bytes(self.rb.source) if inline_b is None else _Inline(inline_b, ob)
            result = _range_diff(ra, oa, na, rb, ob, nb)
            if result is None:
                self.notes.append(f"{name}: payload not compared (no source to read it from)")
                if na != nb:
                    self.add("payload", name, f"{name}/payload", f"payload {na:,} → {nb:,} bytes", old=na, new=nb)
                return
            first, count = result
            if first >= 0:
                sizes = f"payload {na:,} → {nb:,} bytes; " if na != nb else f"payload of {na:,} bytes: "
                self.add("payload", name, f"{name}/payload",
                         f"{sizes}{_n(count, 'byte')} {_verb(count)}, first at payload byte {first:#x}", old=na, new=nb,
                         old_offset=oa + first, new_offset=ob + first, count=count)
            return
        ha = _hash_ranges(self.ra, ((o, n, None) for o, n in map(_payload, la)))
        hb = _hash_ranges(self.rb, ((o, n, None) for o, n in map(_payload, lb)))
        na, nb = sum(_payload(s)[1] for s in la), sum(_payload(s)[1] for s in lb)
        if ha is None or hb is None:
            self.notes.append(f"{name}: payloads not compared (no source to read them from)")
        if na != nb or (ha is not None and hb is not None and ha != hb):
            self.add("payload", name, f"{name}/payload",
                     f"payload of {len(la)} → {len(lb)} records, {na:,} → {nb:,} bytes, content differs",
                     old=na, new=nb, old_offset=_off(la[0]), new_offset=_off(lb[0]))

    # ------------------------------------------------------------ vmstate values

    def level(self, group: str, prefix: str, a: tuple[str, Sequence[Field], Sequence[Subsection]],
              b: tuple[str, Sequence[Field], Sequence[Subsection]]) -> None:
        """One level of a vmstate on both sides: (vmsd name, fields, subsections) of A and of B,
        matched by their names at the level (naming.level_names)."""
        fa, sa = _level(*a)
        fb, sb = _level(*b)
        self.fields(group, prefix, fa, fb)
        self.subsections(group, prefix, sa, sb)

    def subsections(self, group: str, prefix: str, da: dict[str, Subsection], db: dict[str, Subsection]) -> None:
        for key in list(da) + [k for k in db if k not in da]:
            path = f"{prefix}/{key}"
            x, y = da.get(key), db.get(key)
            if y is None:
                self.add("subsection_removed", group, path, f"subsection {x.name} v{x.version} only in A",
                         old=x.version, old_offset=_span_off(x.span))
            elif x is None:
                self.add("subsection_added", group, path, f"subsection {y.name} v{y.version} only in B",
                         new=y.version, new_offset=_span_off(y.span))
            elif not self.skip(path):
                if x.version != y.version:
                    self.add("version", group, f"{path}/version", f"subsection {x.name} version {x.version} → "
                             f"{y.version}", old=x.version, new=y.version, old_offset=_span_off(x.span),
                             new_offset=_span_off(y.span))
                self.level(group, path, (x.name, x.fields, x.subsections), (y.name, y.fields, y.subsections))

    def fields(self, group: str, prefix: str, da: dict[str, Field], db: dict[str, Field]) -> None:
        done_a: set[str] = set()
        done_b: set[str] = set()
        # what changed, not how each vmdesc spelled it (equivalence.py): renamed and re-split fields,
        # and index/value register arrays compared register by register
        for region in equivalence.regions(da, db):
            self.region(group, prefix, region, da, db)
            done_a.update(region.a)
            done_b.update(region.b)
        for pair in equivalence.register_pairs(da, db):
            if pair.indexes not in done_a and not self.skip(f"{prefix}/{pair.stem}"):
                self.registers(group, prefix, pair, da, db)
            done_a.update((pair.indexes, pair.values))
            done_b.update((pair.indexes, pair.values))
        for key in list(da) + [k for k in db if k not in da]:
            path = f"{prefix}/{key}"
            x = None if key in done_a else da.get(key)
            y = None if key in done_b else db.get(key)
            if x is None and y is None:
                continue
            if y is None:
                self.add("field_removed", group, path, f"field only in A: {x.type} = {value_text(x.value, x.type)}",
                         old=x.value, old_offset=_span_off(x.span))
            elif x is None:
                self.add("field_added", group, path, f"field only in B: {y.type} = {value_text(y.value, y.type)}",
                         new=y.value, new_offset=_span_off(y.span))
            elif not self.skip(path):
                self.field(group, path, x, y)

    def region(self, group: str, prefix: str, region: equivalence.Region, da: dict[str, Field],
               db: dict[str, Field]) -> None:
        """One stretch of bytes the two sides name differently: equivalent when the bytes are equal."""
        names_a, names_b = ", ".join(region.a), ", ".join(region.b)
        path = f"{prefix}/{region.b[0] if len(region.b) == 1 else region.a[0]}"
        if self.skip(path):
            return
        result = _range_diff(self.ra, region.offset_a, region.length, self.rb, region.offset_b, region.length)
        how = "renamed" if len(region.a) == len(region.b) else "re-split"
        if result is not None and result[0] < 0:
            self.add("equivalent", group, path, f"{names_a} ≡ {names_b}: {how}, the same {_n(region.length, 'byte')}",
                     old=list(region.a), new=list(region.b), old_offset=region.offset_a, new_offset=region.offset_b)
            return
        if result is None:
            self.notes.append(f"{path}: {names_a} / {names_b} not compared (no source to read them from)")
            return
        first, count = result
        where_a = equivalence.field_at([(k, da[k]) for k in region.a], region.offset_a + first)
        where_b = equivalence.field_at([(k, db[k]) for k in region.b], region.offset_b + first)
        x = self.ra.get(region.offset_a + first, 1)
        y = self.rb.get(region.offset_b + first, 1)
        sample = f" ({x.hex()} → {y.hex()})" if x is not None and y is not None else ""
        self.add("bytes", group, path, f"{names_a} → {names_b} ({how}, {_n(region.length, 'byte')}): "
                 f"{_n(count, 'byte')} {_verb(count)}, first at {where_a} → {where_b}{sample}", old=list(region.a),
                 new=list(region.b), old_offset=region.offset_a + first, new_offset=region.offset_b + first,
                 count=count)

    def registers(self, group: str, prefix: str, pair: equivalence.RegisterPair, da: dict[str, Field],
                  db: dict[str, Field]) -> None:
        """`stem_indexes`/`stem_values` as a map: registers on one side only, then values that differ."""
        name = equivalence.register_namer(pair.stem)
        ma = dict(zip(da[pair.indexes].value, da[pair.values].value))
        mb = dict(zip(db[pair.indexes].value, db[pair.values].value))
        only_a = [k for k in ma if k not in mb]
        only_b = [k for k in mb if k not in ma]
        path = f"{prefix}/{pair.stem}"
        for keys, kind, side in ((only_a, "field_removed", "A"), (only_b, "field_added", "B")):
            if keys:
                shown = ", ".join(name(k) for k in keys[:LIST_LIMIT]) + (" …" if len(keys) > LIST_LIMIT else "")
                self.add(kind, group, path, f"{_n(len(keys), 'register')} only in {side}: {shown}",
                         old=keys if side == "A" else None, new=keys if side == "B" else None, count=len(keys))
        changed = [k for k in ma if k in mb and ma[k] != mb[k]]
        for k in changed[:LIST_LIMIT]:
            self.add("value", group, f"{path}[{name(k)}]", f"{value_text(ma[k])} → {value_text(mb[k])}",
                     old=ma[k], new=mb[k])
        if len(changed) > LIST_LIMIT:
            self.add("value", group, path, f"{len(changed)} of {len(set(ma) & set(mb))} common registers differ "
                     f"(the first {LIST_LIMIT} above)", count=len(changed))

    def field(self, group: str, path: str, x: Field, y: Field) -> None:
        oa, ob = _span_off(x.span), _span_off(y.span)
        if x.type != y.type:
            if _same_bytes(self.ra, x.span, self.rb, y.span):  # only the vmdesc's spelling of the type changed
                self.add("equivalent", group, path, f"type {x.type} ≡ {y.type}: the same {_n(x.span.length, 'byte')} "
                         f"({value_text(y.value, y.type)})", old=x.type, new=y.type, old_offset=oa, new_offset=ob)
                return
            self.add("type", group, path, f"type {x.type} → {y.type}: {value_text(x.value, x.type)} → "
                     f"{value_text(y.value, y.type)}", old=x.type, new=y.type, old_offset=oa, new_offset=ob)
            return
        self.value(group, path, x.type, x.value, y.value, x.span, y.span)

    def value(self, group: str, path: str, ftype: str, va: Any, vb: Any, span_a: Span | None,
              span_b: Span | None) -> None:
        oa, ob = _span_off(span_a), _span_off(span_b)
        if isinstance(va, StructValue) and isinstance(vb, StructValue):
            if (va.vmsd_name, va.version) != (vb.vmsd_name, vb.version):
                self.add("version", group, f"{path}/version", f"nested {va.vmsd_name} v{va.version} → "
                         f"{vb.vmsd_name} v{vb.version}", old=va.version, new=vb.version, old_offset=oa,
                         new_offset=ob)
            self.level(group, path, (va.vmsd_name, va.fields, va.subsections),
                       (vb.vmsd_name, vb.fields, vb.subsections))
            return
        if isinstance(va, list) and isinstance(vb, list):
            self.array(group, path, ftype, va, vb, span_a, span_b)
            return
        if isinstance(va, dict) and isinstance(vb, dict) and ftype == RAMFB_CFG_TYPE:
            for key, at in RAMFB_CFG_OFFSETS.items():
                if va.get(key) != vb.get(key):
                    ka = oa + at if oa is not None else None
                    kb = ob + at if ob is not None else None
                    self.add("value", group, f"{path}/{key}", f"{ramfb_value_text(key, va.get(key, 0))} → "
                             f"{ramfb_value_text(key, vb.get(key, 0))}", old=va.get(key), new=vb.get(key),
                             old_offset=ka, new_offset=kb)
            return
        if isinstance(va, (bytes, bytearray, Blob)) and isinstance(vb, (bytes, bytearray, Blob)):
            self.buffer(group, path, va, vb, span_a, span_b)
            return
        if type(va) is not type(vb) and not (isinstance(va, int) and isinstance(vb, int)):
            self.add("type", group, path, f"{value_text(va, ftype)} → {value_text(vb, ftype)}", old=va, new=vb,
                     old_offset=oa, new_offset=ob)
            return
        if va != vb:
            self.add("value", group, path, f"{value_text(va, ftype)} → {value_text(vb, ftype)}", old=va, new=vb,
                     old_offset=oa, new_offset=ob)

    def array(self, group: str, path: str, ftype: str, va: list[Any], vb: list[Any], span_a: Span | None,
              span_b: Span | None) -> None:
        if len(va) != len(vb):
            self.add("length", group, path, f"{len(va)} → {len(vb)} elements", old=len(va), new=len(vb),
                     old_offset=_span_off(span_a), new_offset=_span_off(span_b))
        if va and isinstance(va[0], StructValue):
            for i, (x, y) in enumerate(zip(va, vb)):
                if x != y:
                    self.value(group, element(path, i), ftype, x, y, _first_span(x), _first_span(y))
            return
        differing = [i for i, (x, y) in enumerate(zip(va, vb)) if x != y]
        if not differing:
            return
        elem_a = _element_size(span_a, len(va))
        elem_b = _element_size(span_b, len(vb))

        def at(span: Span | None, size: int | None, i: int) -> int | None:
            return span.offset + i * size if span is not None and size is not None else None

        if len(differing) > LIST_LIMIT:
            i = differing[0]
            self.add("value", group, path, f"{len(differing)} of {min(len(va), len(vb))} elements differ, first "
                     f"[{i}] {value_text(va[i], ftype)} → {value_text(vb[i], ftype)}", old=va, new=vb,
                     old_offset=at(span_a, elem_a, i), new_offset=at(span_b, elem_b, i), count=len(differing))
            return
        for i in differing:
            self.value(group, element(path, i), ftype, va[i], vb[i],
                       Span(at(span_a, elem_a, i), elem_a) if at(span_a, elem_a, i) is not None else None,
                       Span(at(span_b, elem_b, i), elem_b) if at(span_b, elem_b, i) is not None else None)

    def buffer(self, group: str, path: str, va: Any, vb: Any, span_a: Span | None, span_b: Span | None) -> None:
        la = va.length if isinstance(va, Blob) else len(va)
        lb = vb.length if isinstance(vb, Blob) else len(vb)
        oa = va.offset if isinstance(va, Blob) else _span_off(span_a)
        ob = vb.offset if isinstance(vb, Blob) else _span_off(span_b)
        ra = self.ra if isinstance(va, Blob) and va.data is None else _Inline(va.data if isinstance(va, Blob)
                                                                              else bytes(va), oa or 0)
        rb = self.rb if isinstance(vb, Blob) and vb.data is None else _Inline(vb.data if isinstance(vb, Blob)
                                                                              else bytes(vb), ob or 0)
        result = _range_diff(ra, oa or 0, la, rb, ob or 0, lb)
        if result is None:
            self.notes.append(f"{path}: buffer contents not compared (no source to read them from)")
            if la != lb:
                self.add("bytes", group, path, f"{la:,} → {lb:,} bytes", old=la, new=lb, old_offset=oa, new_offset=ob)
            return
        first, count = result
        if first < 0:
            return
        fa = oa + first if oa is not None else None
        fb = ob + first if ob is not None else None
        if not count:  # only the lengths differ
            self.add("bytes", group, path, f"{la:,} → {lb:,} bytes; the first {min(la, lb):,} are equal", old=la,
                     new=lb, old_offset=fa, new_offset=fb, count=0)
            return
        sizes = f"{la:,} → {lb:,} bytes, " if la != lb else ""
        x = ra.get((oa or 0) + first, min(8, max(la - first, 0)))
        y = rb.get((ob or 0) + first, min(8, max(lb - first, 0)))
        sample = f": {x.hex(' ')} → {y.hex(' ')}" if x is not None and y is not None else ""
        self.add("bytes", group, path, f"{sizes}{_n(count, 'byte')} of {min(la, lb):,} {_verb(count)}, first at byte "
                 f"{first:#x}{sample}", old=la, new=lb, old_offset=fa, new_offset=fb, count=count)

    # ------------------------------------------------------------ RAM

    def ram_plan(self, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> int:
        """Bytes of guest RAM `ram` will compare for this pair of sections (for progress): what it
        decides, without adding changes."""
        if self.ignore(name) or not (any(isinstance(s.body, RamBody) for _, s in ra)
                                                  or any(isinstance(s.body, RamBody) for _, s in rb)):
            return 0
        sa, sb = self.ram_a, self.ram_b
        assert sa is not None and sb is not None
        if sa.page_size != sb.page_size and sa.page_size and sb.page_size:
            return 0
        blocks_a, blocks_b = _block_list(sa), _block_list(sb)
        total = 0
        for block in dict.fromkeys(list(blocks_a) + list(blocks_b)):
            ia, ib = blocks_a.get(block), blocks_b.get(block)
            if self.ignore(f"{name}/{block}") or (ia is not None and ib is None and blocks_b) \
                    or (ib is not None and ia is None and blocks_a):
                continue
            total += max(sa.blocks[block].pages if ia else 0, sb.blocks[block].pages if ib else 0) * \
                (sa.page_size or sb.page_size)
        return total

    def report(self, done: int) -> None:
        done = min(done, self.ram_total)
        if self.progress is not None and done > self.ram_reported:
            self.ram_reported = done
            self.progress(done, self.ram_total)

    def ram(self, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> None:
        sa, sb = self.ram_a, self.ram_b
        assert sa is not None and sb is not None
        page_size, page_size_b = sa.page_size or sb.page_size, sb.page_size or sa.page_size
        if page_size != page_size_b:
            self.add("ram_block", name, f"{name}/page_size", f"page size {page_size} → {page_size_b}",
                     old=page_size, new=page_size_b)
            return
        blocks_a, blocks_b = _block_list(sa), _block_list(sb)
        can_read = self.ra.source is not None and self.rb.source is not None
        if not can_read:
            self.notes.append("RAM page contents not compared (no source to read them from); counts only")
        for block in dict.fromkeys(list(blocks_a) + list(blocks_b)):
            path = f"{name}/{block}"
            if self.skip(path):
                continue
            ia, ib = blocks_a.get(block), blocks_b.get(block)
            if ia is not None and ib is None and blocks_b:
                self.add("ram_block", name, path, f"RAM block of {ia.used_length:#x} bytes only in A", old=ia.used_length)
                continue
            if ib is not None and ia is None and blocks_a:
                self.add("ram_block", name, path, f"RAM block of {ib.used_length:#x} bytes only in B", new=ib.used_length)
                continue
            if ia is not None and ib is not None and ia.used_length != ib.used_length:
                self.add("ram_block", name, f"{path}/length", f"length {ia.used_length:#x} → "
                         f"{ib.used_length:#x}", old=ia.used_length, new=ib.used_length)
            self.ram_block(name, path, block, page_size, can_read)

    def ram_block(self, name: str, path: str, block: str, page_size: int, can_read: bool) -> None:
        done = self.ram_done
        result = compare_block(block, self.ram_a, self.ram_b, page_size, can_read,
                               lambda page: self.report(done + page * page_size))
        self.ram_done = done + result.pages * page_size
        differing, only_a, only_b, first = result.differing, result.only_a, result.only_b, result.first
        ka, kb = result.records_a, result.records_b
        counts = f"records {_ram_counts(ka)} → {_ram_counts(kb)}" if ka != kb else f"records {_ram_counts(ka)}"
        parts = []
        if differing:
            assert first is not None
            parts.append(f"{_n(differing, 'page')} {_verb(differing)}, first at block "
                         f"offset {first[0]:#x}")
        if only_a:
            parts.append(f"{_n(only_a, 'page')} sent only in A")
        if only_b:
            parts.append(f"{_n(only_b, 'page')} sent only in B")
        # the same final contents written with other records is not a difference of the state
        if parts or (ka != kb and not can_read):
            if not parts:
                parts.append("contents not compared")
            self.add("ram_pages", name, path, f"{'; '.join(parts)} ({counts})",
                     old=dict(ka), new=dict(kb), count=differing,
                     old_offset=first[1] if first else result.first_record_a,
                     new_offset=first[2] if first else result.first_record_b)

    # ------------------------------------------------------------ VFIO

    def vfio(self, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> None:
        ca, cb = _vfio_config(ra), _vfio_config(rb)
        path = f"{name}/config"
        if ca is not None and cb is not None:
            if not self.skip(path):
                self.level(name, path, (ca.vmsd_name, ca.fields, ca.subsections),
                           (cb.vmsd_name, cb.fields, cb.subsections))
        elif (ca is None) != (cb is None):
            self.add("subsection_removed" if cb is None else "subsection_added", name, path,
                     f"device config state (DEV_CONFIG_STATE) only in {'A' if cb is None else 'B'}")
        da, db = _vfio_data(ra), _vfio_data(rb)
        dpath = f"{name}/data"
        if self.skip(dpath):
            return
        na, nb = sum(b.length for b in da), sum(b.length for b in db)
        ha = _hash_ranges(self.ra, ((b.offset, b.length, b.data) for b in da))
        hb = _hash_ranges(self.rb, ((b.offset, b.length, b.data) for b in db))
        if ha is None or hb is None:
            self.notes.append(f"{name}: device data not compared (no source to read it from)")
        if na != nb or len(da) != len(db) or (ha is not None and hb is not None and ha != hb):
            same = ", same bytes" if ha is not None and ha == hb else ", content differs"
            self.add("vfio_data", name, dpath, f"device data: {len(da)} chunks, {na:,} bytes → {len(db)} chunks, "
                     f"{nb:,} bytes{same}", old=na, new=nb, old_offset=da[0].offset if da else None,
                     new_offset=db[0].offset if db else None)


# ================================================================ helpers


class _Inline(_Bytes):
    """A byte string that sits at `base` in its input."""

    def __init__(self, data: bytes, base: int) -> None:
        super().__init__(None)
        self.data, self.base = data, base

    def get(self, offset: int, length: int, inline: bytes | None = None) -> bytes | None:
        start = offset - self.base
        if start < 0 or start + length > len(self.data):
            return None
        return self.data[start:start + length]


def _by_key(stream: MigrationStream) -> dict[tuple[str, int], list[tuple[int, Section]]]:
    out: dict[tuple[str, int], list[tuple[int, Section]]] = {}
    for index, record in enumerate(stream.records):
        if isinstance(record, Section):
            out.setdefault((record.idstr, record.instance_id or 0), []).append((index, record))
    return out


def _same_bytes(ra: _Bytes, sa: Span | None, rb: _Bytes, sb: Span | None) -> bool:
    if sa is None or sb is None or sa.length != sb.length:
        return False
    result = _range_diff(ra, sa.offset, sa.length, rb, sb.offset, sb.length)
    return result is not None and result[0] < 0


def _level(vmsd: str, fields: Sequence[Field], subsections: Sequence[Subsection]
           ) -> tuple[dict[str, Field], dict[str, Subsection]]:
    """The fields and subsections of one level by the names paths give them (naming.level_names)."""
    names = level_names([f.name for f in fields] + [subsection_name(vmsd, s.name) for s in subsections],
                        arrays={i for i, f in enumerate(fields) if isinstance(f.value, list)})
    return dict(zip(names, fields)), dict(zip(names[len(fields):], subsections))


def _off(record: Any) -> int | None:
    return record.span.offset if record is not None and record.span is not None else None


def _span_off(span: Span | None) -> int | None:
    return span.offset if span is not None else None


def _first_span(value: StructValue) -> Span | None:
    return next((f.span for f in value.fields if f.span is not None), None)


def _element_size(span: Span | None, count: int) -> int | None:
    if span is None or not count or span.length % count:
        return None
    return span.length // count


def _footers(stream: MigrationStream) -> bool | None:
    return next((s.footer for s in stream.sections), None)


def _commands(stream: MigrationStream) -> dict[str, list[Command]]:
    out: dict[str, list[Command]] = {}
    for r in stream.records:
        if isinstance(r, Command):
            out.setdefault(r.name, []).append(r)
    return out


def _capabilities(config: Configuration) -> frozenset[str]:
    for sub in config.subsections:
        if sub.name == "configuration/capabilities":
            caps = next((f.value for f in sub.fields if f.name == "capabilities"), [])
            return frozenset(c if isinstance(c, str) else str(c) for c in caps)
    return frozenset()


def _payload(section: Section) -> tuple[int, int]:
    """(offset, length) of a section record's payload: between its header and its footer."""
    assert section.span is not None
    header = 14 + len(to_wire(section.idstr)) if section.long_header else 5
    footer = 5 if section.footer else 0
    return section.span.offset + header, section.span.length - header - footer


def _body_words(records: list[tuple[int, Section]]) -> str:
    body = records[-1][1].body
    if isinstance(body, VmstateBody):
        return f" ({body.vmsd_name})"
    if isinstance(body, VfioBody):
        return " (VFIO device)"
    if isinstance(body, RamBody):
        return " (RAM)"
    return ""


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _verb(count: int) -> str:
    return "differs" if count == 1 else "differ"


def _ram_counts(counts: dict[str, int]) -> str:
    words = {"page": "normal", "zero": "zero", "xbzrle": "xbzrle"}
    shown = [f"{n} {words[k]}" for k, n in counts.items() if n or k != "xbzrle"]
    return " + ".join(shown)


def _vfio_config(records: list[tuple[int, Section]]) -> VmstateBody | None:
    for _, section in reversed(records):
        if isinstance(section.body, VfioBody):
            for item in section.body.items:
                if item.kind == "config" and item.config is not None:
                    return item.config
    return None


def _vfio_data(records: list[tuple[int, Section]]) -> list[Blob]:
    return [item.data for _, section in records if isinstance(section.body, VfioBody)
            for item in section.body.items if item.kind == "data" and item.data is not None]
