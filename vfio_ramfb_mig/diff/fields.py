"""Field comparison: one vmstate level of A against the same level of B, field by field.

Fields and subsections are matched by the names paths give them (naming.level_names) and
compared through the decoded model, so built-in schemas name what the vmdesc leaves opaque
(the ramfb cfg per key: ``state/cfg/width 1024 → 1280``). Fields the two vmdescs spell
differently over the same bytes are folded by diff.equivalence first.

Imports: model, naming, vmstate.compile, wire.ramfb, diff.comparison, diff.byteranges,
diff.words, diff.equivalence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model import Blob, Field, Span, StructValue, Subsection
from ..naming import element, level_names, subsection_name
from ..vmstate.compile import RAMFB_CFG_TYPE
from ..wire.ramfb import RAMFB_CFG_OFFSETS
from . import equivalence
from .byteranges import Inline, range_diff, same_bytes
from .comparison import Comparison
from .words import counted, differ_word, ramfb_value_text, value_text

#: more element changes than this in one array collapse into one summary change
LIST_LIMIT = 8


def compare_level(diff: Comparison, group: str, prefix: str, a: tuple[str, Sequence[Field], Sequence[Subsection]],
                  b: tuple[str, Sequence[Field], Sequence[Subsection]]) -> None:
    """One level of a vmstate on both sides: (vmsd name, fields, subsections) of A and of B,
    matched by their names at the level (naming.level_names)."""
    fa, sa = _level(*a)
    fb, sb = _level(*b)
    compare_fields(diff, group, prefix, fa, fb)
    compare_subsections(diff, group, prefix, sa, sb)


def compare_subsections(diff: Comparison, group: str, prefix: str, da: dict[str, Subsection], db: dict[str, Subsection]) -> None:
    for key in list(da) + [k for k in db if k not in da]:
        path = f"{prefix}/{key}"
        x, y = da.get(key), db.get(key)
        if x is None or y is None:
            only = x if y is None else y
            diff.one_side("subsection", group, path, f"subsection {only.name} v{only.version} only in "
                          f"{'A' if y is None else 'B'}", only.version, span_offset(only.span), y is None)
        elif not diff.skip(path):
            if x.version != y.version:
                diff.add("version", group, f"{path}/version", f"subsection {x.name} version {x.version} → "
                         f"{y.version}", old=x.version, new=y.version, old_offset=span_offset(x.span),
                         new_offset=span_offset(y.span))
            compare_level(diff, group, path, (x.name, x.fields, x.subsections), (y.name, y.fields, y.subsections))


def compare_fields(diff: Comparison, group: str, prefix: str, da: dict[str, Field], db: dict[str, Field]) -> None:
    done_a: set[str] = set()
    done_b: set[str] = set()
    # what changed, not how each vmdesc spelled it (diff.equivalence): renamed and re-split fields,
    # and index/value register arrays compared register by register
    for region in equivalence.regions(da, db):
        compare_region(diff, group, prefix, region, da, db)
        done_a.update(region.a)
        done_b.update(region.b)
    for pair in equivalence.register_pairs(da, db):
        if pair.indexes not in done_a and not diff.skip(f"{prefix}/{pair.stem}"):
            compare_registers(diff, group, prefix, pair, da, db)
        done_a.update((pair.indexes, pair.values))
        done_b.update((pair.indexes, pair.values))
    for key in list(da) + [k for k in db if k not in da]:
        path = f"{prefix}/{key}"
        x = None if key in done_a else da.get(key)
        y = None if key in done_b else db.get(key)
        if x is None and y is None:
            continue
        if x is None or y is None:
            only = x if y is None else y
            diff.one_side("field", group, path, f"field only in {'A' if y is None else 'B'}: {only.type} = "
                          f"{value_text(only.value, only.type)}", only.value, span_offset(only.span), y is None)
        elif not diff.skip(path):
            compare_field(diff, group, path, x, y)


def compare_region(diff: Comparison, group: str, prefix: str, region: equivalence.Region, da: dict[str, Field],
                   db: dict[str, Field]) -> None:
    """One stretch of bytes the two sides name differently: equivalent when the bytes are equal."""
    names_a, names_b = ", ".join(region.a), ", ".join(region.b)
    path = f"{prefix}/{region.b[0] if len(region.b) == 1 else region.a[0]}"
    if diff.skip(path):
        return
    result = range_diff(diff.ra, region.offset_a, region.length, diff.rb, region.offset_b, region.length)
    how = "renamed" if len(region.a) == len(region.b) else "re-split"
    if result is not None and result[0] < 0:
        diff.add("equivalent", group, path, f"{names_a} ≡ {names_b}: {how}, the same {counted(region.length, 'byte')}",
                 old=list(region.a), new=list(region.b), old_offset=region.offset_a, new_offset=region.offset_b)
        return
    if result is None:
        diff.notes.append(f"{path}: {names_a} / {names_b} not compared (no source to read them from)")
        return
    first, count = result
    where_a = equivalence.field_at([(k, da[k]) for k in region.a], region.offset_a + first)
    where_b = equivalence.field_at([(k, db[k]) for k in region.b], region.offset_b + first)
    x = diff.ra.get(region.offset_a + first, 1)
    y = diff.rb.get(region.offset_b + first, 1)
    sample = f" ({x.hex()} → {y.hex()})" if x is not None and y is not None else ""
    diff.add("bytes", group, path, f"{names_a} → {names_b} ({how}, {counted(region.length, 'byte')}): "
             f"{counted(count, 'byte')} {differ_word(count)}, first at {where_a} → {where_b}{sample}", old=list(region.a),
             new=list(region.b), old_offset=region.offset_a + first, new_offset=region.offset_b + first,
             count=count)


def compare_registers(diff: Comparison, group: str, prefix: str, pair: equivalence.RegisterPair, da: dict[str, Field],
                      db: dict[str, Field]) -> None:
    """`stem_indexes`/`stem_values` as a map: registers on one side only, then values that differ."""
    name = equivalence.register_namer(pair.stem)
    ma = dict(zip(da[pair.indexes].value, da[pair.values].value))
    mb = dict(zip(db[pair.indexes].value, db[pair.values].value))
    only_a = [k for k in ma if k not in mb]
    only_b = [k for k in mb if k not in ma]
    path = f"{prefix}/{pair.stem}"
    for keys, side in ((only_a, "A"), (only_b, "B")):
        if keys:
            shown = ", ".join(name(k) for k in keys[:LIST_LIMIT]) + (" …" if len(keys) > LIST_LIMIT else "")
            diff.one_side("field", group, path, f"{counted(len(keys), 'register')} only in {side}: {shown}", keys,
                          None, side == "A", count=len(keys))
    changed = [k for k in ma if k in mb and ma[k] != mb[k]]
    for k in changed[:LIST_LIMIT]:
        diff.add("value", group, f"{path}[{name(k)}]", f"{value_text(ma[k])} → {value_text(mb[k])}",
                 old=ma[k], new=mb[k])
    if len(changed) > LIST_LIMIT:
        diff.add("value", group, path, f"{len(changed)} of {len(set(ma) & set(mb))} common registers differ "
                 f"(the first {LIST_LIMIT} above)", count=len(changed))


def compare_field(diff: Comparison, group: str, path: str, x: Field, y: Field) -> None:
    oa, ob = span_offset(x.span), span_offset(y.span)
    if x.type != y.type:
        if same_bytes(diff.ra, x.span, diff.rb, y.span):  # only the vmdesc's spelling of the type changed
            diff.add("equivalent", group, path, f"type {x.type} ≡ {y.type}: the same {counted(x.span.length, 'byte')} "
                     f"({value_text(y.value, y.type)})", old=x.type, new=y.type, old_offset=oa, new_offset=ob)
            return
        diff.add("type", group, path, f"type {x.type} → {y.type}: {value_text(x.value, x.type)} → "
                 f"{value_text(y.value, y.type)}", old=x.type, new=y.type, old_offset=oa, new_offset=ob)
        return
    compare_value(diff, group, path, x.type, x.value, y.value, x.span, y.span)


def compare_value(diff: Comparison, group: str, path: str, ftype: str, va: Any, vb: Any, span_a: Span | None,
                  span_b: Span | None) -> None:
    oa, ob = span_offset(span_a), span_offset(span_b)
    if isinstance(va, StructValue) and isinstance(vb, StructValue):
        if (va.vmsd_name, va.version) != (vb.vmsd_name, vb.version):
            diff.add("version", group, f"{path}/version", f"nested {va.vmsd_name} v{va.version} → "
                     f"{vb.vmsd_name} v{vb.version}", old=va.version, new=vb.version, old_offset=oa,
                     new_offset=ob)
        compare_level(diff, group, path, (va.vmsd_name, va.fields, va.subsections),
                   (vb.vmsd_name, vb.fields, vb.subsections))
        return
    if isinstance(va, list) and isinstance(vb, list):
        compare_array(diff, group, path, ftype, va, vb, span_a, span_b)
        return
    if isinstance(va, dict) and isinstance(vb, dict) and ftype == RAMFB_CFG_TYPE:
        for key, at in RAMFB_CFG_OFFSETS.items():
            if va.get(key) != vb.get(key):
                ka = oa + at if oa is not None else None
                kb = ob + at if ob is not None else None
                diff.add("value", group, f"{path}/{key}", f"{ramfb_value_text(key, va.get(key, 0))} → "
                         f"{ramfb_value_text(key, vb.get(key, 0))}", old=va.get(key), new=vb.get(key),
                         old_offset=ka, new_offset=kb)
        return
    if isinstance(va, (bytes, bytearray, Blob)) and isinstance(vb, (bytes, bytearray, Blob)):
        compare_buffer(diff, group, path, va, vb, span_a, span_b)
        return
    if type(va) is not type(vb) and not (isinstance(va, int) and isinstance(vb, int)):
        diff.add("type", group, path, f"{value_text(va, ftype)} → {value_text(vb, ftype)}", old=va, new=vb,
                 old_offset=oa, new_offset=ob)
        return
    if va != vb:
        diff.add("value", group, path, f"{value_text(va, ftype)} → {value_text(vb, ftype)}", old=va, new=vb,
                 old_offset=oa, new_offset=ob)


def compare_array(diff: Comparison, group: str, path: str, ftype: str, va: list[Any], vb: list[Any], span_a: Span | None,
                  span_b: Span | None) -> None:
    if len(va) != len(vb):
        diff.add("length", group, path, f"{len(va)} → {len(vb)} elements", old=len(va), new=len(vb),
                 old_offset=span_offset(span_a), new_offset=span_offset(span_b))
    if va and isinstance(va[0], StructValue):
        for i, (x, y) in enumerate(zip(va, vb)):
            if x != y:
                compare_value(diff, group, element(path, i), ftype, x, y, _first_span(x), _first_span(y))
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
        diff.add("value", group, path, f"{len(differing)} of {min(len(va), len(vb))} elements differ, first "
                 f"[{i}] {value_text(va[i], ftype)} → {value_text(vb[i], ftype)}", old=va, new=vb,
                 old_offset=at(span_a, elem_a, i), new_offset=at(span_b, elem_b, i), count=len(differing))
        return
    for i in differing:
        compare_value(diff, group, element(path, i), ftype, va[i], vb[i],
                   Span(at(span_a, elem_a, i), elem_a) if at(span_a, elem_a, i) is not None else None,
                   Span(at(span_b, elem_b, i), elem_b) if at(span_b, elem_b, i) is not None else None)


def compare_buffer(diff: Comparison, group: str, path: str, va: Any, vb: Any, span_a: Span | None, span_b: Span | None) -> None:
    la = va.length if isinstance(va, Blob) else len(va)
    lb = vb.length if isinstance(vb, Blob) else len(vb)
    oa = va.offset if isinstance(va, Blob) else span_offset(span_a)
    ob = vb.offset if isinstance(vb, Blob) else span_offset(span_b)
    ra = diff.ra if isinstance(va, Blob) and va.data is None else Inline(va.data if isinstance(va, Blob)
                                                                          else bytes(va), oa or 0)
    rb = diff.rb if isinstance(vb, Blob) and vb.data is None else Inline(vb.data if isinstance(vb, Blob)
                                                                          else bytes(vb), ob or 0)
    result = range_diff(ra, oa or 0, la, rb, ob or 0, lb)
    if result is None:
        diff.notes.append(f"{path}: buffer contents not compared (no source to read them from)")
        if la != lb:
            diff.add("bytes", group, path, f"{la:,} → {lb:,} bytes", old=la, new=lb, old_offset=oa, new_offset=ob)
        return
    first, count = result
    if first < 0:
        return
    fa = oa + first if oa is not None else None
    fb = ob + first if ob is not None else None
    if not count:  # only the lengths differ
        diff.add("bytes", group, path, f"{la:,} → {lb:,} bytes; the first {min(la, lb):,} are equal", old=la,
                 new=lb, old_offset=fa, new_offset=fb, count=0)
        return
    sizes = f"{la:,} → {lb:,} bytes, " if la != lb else ""
    x = ra.get((oa or 0) + first, min(8, max(la - first, 0)))
    y = rb.get((ob or 0) + first, min(8, max(lb - first, 0)))
    sample = f": {x.hex(' ')} → {y.hex(' ')}" if x is not None and y is not None else ""
    diff.add("bytes", group, path, f"{sizes}{counted(count, 'byte')} of {min(la, lb):,} {differ_word(count)}, first at byte "
             f"{first:#x}{sample}", old=la, new=lb, old_offset=fa, new_offset=fb, count=count)


def _level(vmsd: str, fields: Sequence[Field], subsections: Sequence[Subsection]
           ) -> tuple[dict[str, Field], dict[str, Subsection]]:
    """The fields and subsections of one level by the names paths give them (naming.level_names)."""
    names = level_names([f.name for f in fields] + [subsection_name(vmsd, s.name) for s in subsections],
                        arrays={i for i, f in enumerate(fields) if isinstance(f.value, list)})
    return dict(zip(names, fields)), dict(zip(names[len(fields):], subsections))


def span_offset(span: Span | None) -> int | None:
    return span.offset if span is not None else None


def _first_span(value: StructValue) -> Span | None:
    return next((f.span for f in value.fields if f.span is not None), None)


def _element_size(span: Span | None, count: int) -> int | None:
    if span is None or not count or span.length % count:
        return None
    return span.length // count
