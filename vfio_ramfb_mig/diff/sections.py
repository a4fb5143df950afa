"""Section matching: stream facts, the configuration, and each section of A with its pair in B.

Sections are matched by (idstr, instance_id), never by position or section id (QEMU's
loader finds a section's handler the same way): the same machine saved by two QEMU
versions writes them in another order with other ids. A matched pair goes to the
comparison its body asks for: RAM (diff.ram), VFIO (diff.vfio), a decoded vmstate
(diff.fields), or the raw payload bytes when a side could not be decoded.

Imports: model, naming, text, diff.comparison, diff.byteranges, diff.words, diff.fields, diff.ram, diff.vfio.
"""

from __future__ import annotations

from typing import Any

from ..model import Command, Configuration, MigrationStream, OpaqueBody, RamBody, Section, VfioBody, VmstateBody
from ..naming import section_name
from ..text import printable, to_wire
from .byteranges import Inline, Reader, hash_ranges, range_diff
from .comparison import Comparison
from .fields import compare_level
from .ram import compare_ram, ram_plan
from .vfio import compare_vfio
from .words import counted, differ_word


def compare_all(diff: Comparison) -> None:
    sa, sb = _by_key(diff.a), _by_key(diff.b)
    if diff.progress is not None:
        diff.ram_total = sum(ram_plan(diff, section_name(*key), sa[key], sb[key]) for key in sa if key in sb)
        diff.progress(0, diff.ram_total)
    try:
        compare_records(diff, sa, sb)
    finally:
        diff.ra.drop()
        diff.rb.drop()
    if diff.progress is not None and diff.ram_reported < diff.ram_total:
        diff.progress(diff.ram_total, diff.ram_total)


def compare_records(diff: Comparison, sa: dict[tuple[str, int], list[tuple[int, Section]]],
                    sb: dict[tuple[str, int], list[tuple[int, Section]]]) -> None:
    stream_facts(diff)
    configuration(diff)
    for key in list(sa) + [k for k in sb if k not in sa]:
        idstr, instance = key
        name = section_name(idstr, instance)
        if key not in sb:
            only_one_side(diff, name, sa[key], True)
        elif key not in sa:
            only_one_side(diff, name, sb[key], False)
        elif not diff.skip(name):
            section(diff, name, sa[key], sb[key])


def stream_facts(diff: Comparison) -> None:
    fa, fb = _footers(diff.a), _footers(diff.b)
    if fa is not None and fb is not None and fa != fb:
        diff.add("stream", "stream", "stream/footers", f"section footers {'on' if fa else 'off'} → "
                 f"{'on' if fb else 'off'}", old=fa, new=fb)
    va, vb = diff.a.vmdesc is not None, diff.b.vmdesc is not None
    if va != vb:
        diff.add("stream", "stream", "stream/vmdesc", f"vmdesc trailer {'present' if va else 'absent'} → "
                 f"{'present' if vb else 'absent'}", old=va, new=vb,
                 old_offset=diff.a.vmdesc.span.offset if va and diff.a.vmdesc.span else None,
                 new_offset=diff.b.vmdesc.span.offset if vb and diff.b.vmdesc.span else None)
    ca, cb = _commands(diff.a), _commands(diff.b)
    for name in dict.fromkeys(list(ca) + list(cb)):
        na, nb = len(ca.get(name, [])), len(cb.get(name, []))
        if na != nb:
            oa = ca[name][0].span.offset if na and ca[name][0].span else None
            ob = cb[name][0].span.offset if nb and cb[name][0].span else None
            diff.add("stream", "stream", f"stream/commands/{name}",
                     f"COMMAND {name}: {na} → {nb} in the stream", old=na, new=nb, old_offset=oa, new_offset=ob)


def configuration(diff: Comparison) -> None:
    ca, cb = diff.a.configuration, diff.b.configuration
    if ca is None or cb is None:
        if (ca is None) != (cb is None):
            diff.add("configuration", "configuration", "configuration",
                     f"configuration record {'present' if ca else 'absent'} → {'present' if cb else 'absent'}",
                     old=ca is not None, new=cb is not None, old_offset=record_offset(ca), new_offset=record_offset(cb))
        return
    if ca.machine != cb.machine:
        diff.add("machine", "configuration", "configuration/machine",
                 f"{printable(ca.machine)} → {printable(cb.machine)}", old=ca.machine,
                 new=cb.machine, old_offset=record_offset(ca), new_offset=record_offset(cb))
    caps_a, caps_b = _capabilities(ca), _capabilities(cb)
    for cap in sorted(caps_a - caps_b):
        diff.add("configuration", "configuration", f"configuration/capabilities/{cap}",
                 "on → off", old=True, new=False, old_offset=record_offset(ca), new_offset=record_offset(cb))
    for cap in sorted(caps_b - caps_a):
        diff.add("configuration", "configuration", f"configuration/capabilities/{cap}",
                 "off → on", old=False, new=True, old_offset=record_offset(ca), new_offset=record_offset(cb))
    subs_a = {s.name: s for s in ca.subsections if s.name != "configuration/capabilities"}
    subs_b = {s.name: s for s in cb.subsections if s.name != "configuration/capabilities"}
    compare_level(diff, "configuration", "configuration", ("configuration", (), tuple(subs_a.values())),
               ("configuration", (), tuple(subs_b.values())))


def only_one_side(diff: Comparison, name: str, records: list[tuple[int, Section]], in_a: bool) -> None:
    """A section only A (section_removed) or only B (section_added) has: its record types and version."""
    first = records[0][1]
    kinds = ", ".join(dict.fromkeys(s.type.removeprefix("section_").upper() for _, s in records))
    what = _body_words(records)
    diff.one_side("section", name, name, f"only in {'A' if in_a else 'B'}: {kinds} section{what}, version "
                  f"{first.version_id}", first.version_id, record_offset(first), in_a)


def section(diff: Comparison, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> None:
    ha = next((s for _, s in ra if s.long_header), ra[0][1])
    hb = next((s for _, s in rb if s.long_header), rb[0][1])
    if ha.version_id != hb.version_id:
        diff.add("version", name, f"{name}/version", f"section version {ha.version_id} → {hb.version_id}",
                 old=ha.version_id, new=hb.version_id, old_offset=record_offset(ha), new_offset=record_offset(hb))
    if any(isinstance(s.body, RamBody) for _, s in ra) or any(isinstance(s.body, RamBody) for _, s in rb):
        compare_ram(diff, name, ra, rb)
        return
    if any(isinstance(s.body, VfioBody) for _, s in ra) and any(isinstance(s.body, VfioBody) for _, s in rb):
        compare_vfio(diff, name, ra, rb)
        return
    fa = [s for _, s in ra if s.type == "section_full"]
    fb = [s for _, s in rb if s.type == "section_full"]
    if fa and fb and isinstance(fa[-1].body, VmstateBody) and isinstance(fb[-1].body, VmstateBody):
        ba, bb = fa[-1].body, fb[-1].body
        if ba.vmsd_name != bb.vmsd_name:
            diff.add("type", name, f"{name}/vmsd", f"vmsd {ba.vmsd_name} → {bb.vmsd_name}", old=ba.vmsd_name,
                     new=bb.vmsd_name, old_offset=record_offset(fa[-1]), new_offset=record_offset(fb[-1]))
        compare_level(diff, name, name, (ba.vmsd_name, ba.fields, ba.subsections),
                   (bb.vmsd_name, bb.fields, bb.subsections))
        return
    payloads(diff, name, [s for _, s in ra], [s for _, s in rb])


def payloads(diff: Comparison, name: str, la: list[Section], lb: list[Section]) -> None:
    """Sections not decoded on both sides (no vmdesc, opaque): compare the raw payload bytes."""
    if len(la) == 1 and len(lb) == 1:
        (oa, na), (ob, nb) = _payload(la[0]), _payload(lb[0])
        inline_a = la[0].body.data.data if isinstance(la[0].body, OpaqueBody) else None
        inline_b = lb[0].body.data.data if isinstance(lb[0].body, OpaqueBody) else None
        ra = Reader(diff.ra.source) if inline_a is None else Inline(inline_a, oa)
        rb = Reader(diff.rb.source) if inline_b is None else Inline(inline_b, ob)
        result = range_diff(ra, oa, na, rb, ob, nb)
        if result is None:
            diff.notes.append(f"{name}: payload not compared (no source to read it from)")
            if na != nb:
                diff.add("payload", name, f"{name}/payload", f"payload {na:,} → {nb:,} bytes", old=na, new=nb)
            return
        first, count = result
        if first >= 0:
            sizes = f"payload {na:,} → {nb:,} bytes; " if na != nb else f"payload of {na:,} bytes: "
            diff.add("payload", name, f"{name}/payload",
                     f"{sizes}{counted(count, 'byte')} {differ_word(count)}, first at payload byte {first:#x}", old=na, new=nb,
                     old_offset=oa + first, new_offset=ob + first, count=count)
        return
    ha = hash_ranges(diff.ra, ((o, n, None) for o, n in map(_payload, la)))
    hb = hash_ranges(diff.rb, ((o, n, None) for o, n in map(_payload, lb)))
    na, nb = sum(_payload(s)[1] for s in la), sum(_payload(s)[1] for s in lb)
    if ha is None or hb is None:
        diff.notes.append(f"{name}: payloads not compared (no source to read them from)")
    if na != nb or (ha is not None and hb is not None and ha != hb):
        diff.add("payload", name, f"{name}/payload",
                 f"payload of {len(la)} → {len(lb)} records, {na:,} → {nb:,} bytes, content differs",
                 old=na, new=nb, old_offset=record_offset(la[0]), new_offset=record_offset(lb[0]))


def _by_key(stream: MigrationStream) -> dict[tuple[str, int], list[tuple[int, Section]]]:
    out: dict[tuple[str, int], list[tuple[int, Section]]] = {}
    for index, record in enumerate(stream.records):
        if isinstance(record, Section):
            out.setdefault((record.idstr, record.instance_id or 0), []).append((index, record))
    return out


def record_offset(record: Any) -> int | None:
    return record.span.offset if record is not None and record.span is not None else None


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
