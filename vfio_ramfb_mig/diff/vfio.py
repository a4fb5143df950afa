"""A VFIO device's section: its config state field by field, its device data by content.

The device data is the vendor driver's opaque state: compared by length, chunk count and a
hash of the bytes, never decoded.

Imports: model, diff.comparison, diff.byteranges, diff.fields.
"""

from __future__ import annotations

from ..model import Blob, Section, VfioBody, VmstateBody
from .byteranges import hash_ranges
from .comparison import Comparison
from .fields import compare_level


def compare_vfio(diff: Comparison, name: str, ra: list[tuple[int, Section]], rb: list[tuple[int, Section]]) -> None:
    ca, cb = _vfio_config(ra), _vfio_config(rb)
    path = f"{name}/config"
    if ca is not None and cb is not None:
        if not diff.skip(path):
            compare_level(diff, name, path, (ca.vmsd_name, ca.fields, ca.subsections),
                       (cb.vmsd_name, cb.fields, cb.subsections))
    elif (ca is None) != (cb is None):
        diff.one_side("subsection", name, path,
                      f"device config state (DEV_CONFIG_STATE) only in {'A' if cb is None else 'B'}", None, None, cb is None)
    da, db = _vfio_data(ra), _vfio_data(rb)
    dpath = f"{name}/data"
    if diff.skip(dpath):
        return
    na, nb = sum(b.length for b in da), sum(b.length for b in db)
    ha = hash_ranges(diff.ra, ((b.offset, b.length, b.data) for b in da))
    hb = hash_ranges(diff.rb, ((b.offset, b.length, b.data) for b in db))
    if ha is None or hb is None:
        diff.notes.append(f"{name}: device data not compared (no source to read it from)")
    if na != nb or len(da) != len(db) or (ha is not None and hb is not None and ha != hb):
        same = ", same bytes" if ha is not None and ha == hb else ", content differs"
        diff.add("vfio_data", name, dpath, f"device data: {len(da)} chunks, {na:,} bytes → {len(db)} chunks, "
                 f"{nb:,} bytes{same}", old=na, new=nb, old_offset=da[0].offset if da else None,
                 new_offset=db[0].offset if db else None)


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
