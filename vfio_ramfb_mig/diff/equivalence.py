"""Which fields of two versions of one vmsd carry the same bytes under other names.

Between QEMU releases a vmsd keeps its wire bytes while its vmdesc spells them
differently: a field is renamed (``num_timers`` -> ``num_timers_save``,
``gt_timer[0]`` -> ``gt_timer[GTIMER_PHYS]``), retired into an unused buffer of
the same size (pl011's ``readbuff`` -> ``unused``), or one buffer is re-split into
several fields (globalstate's 100-byte ``runstate`` -> ``runstate``,
``has_vm_was_suspended``, ``vm_was_suspended``, ``unused``). The diff should show
what changed, not the spelling. The rules here are general, not a list of cases:

* `regions`: fields both sides name alike are anchors; between two anchors, the
  fields only one side names (and an anchor whose size changed, when other fields
  sit beside it) form a region. A region whose byte length is the same on both
  sides is one stretch of the stream described two ways: the diff compares its
  bytes, and reports it as equivalent when they are equal, or as one change naming
  the fields at the first differing byte.
* `register_pairs`: two arrays ``X_indexes`` and ``X_values`` of one length are a
  map (arm's cpreg list): they are compared key by key, naming the keys present on
  one side only and the values that differ (arm cpreg ids are named the way the
  assembler names system registers).

Imports: model, compat.check.load_rules (cpreg names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..model import Field


@dataclass(frozen=True)
class Region:
    """A stretch of bytes both sides describe with other fields (keys as `naming.level_names` gives them)."""

    a: tuple[str, ...]
    b: tuple[str, ...]
    offset_a: int
    offset_b: int
    length: int


def _length(f: Field) -> int | None:
    return f.span.length if f.span is not None else None


def regions(da: Mapping[str, Field], db: Mapping[str, Field]) -> list[Region]:
    """The regions of two named field lists of one struct (see the module doc)."""
    ka, kb = list(da), list(db)
    common = [k for k in ka if k in db]
    # an anchor whose size changed while unnamed fields sit right after it is part of a re-split
    for k in list(common):
        if _length(da[k]) == _length(db[k]):
            continue
        after_a = ka[ka.index(k) + 1] if ka.index(k) + 1 < len(ka) else None
        after_b = kb[kb.index(k) + 1] if kb.index(k) + 1 < len(kb) else None
        if (after_a is not None and after_a not in db) or (after_b is not None and after_b not in da):
            common.remove(k)
    if [k for k in kb if k in common] != common:
        return []  # the two sides order their common fields differently: no safe alignment
    found = []
    for ga, gb in zip(_gaps(ka, common), _gaps(kb, common), strict=True):
        if not ga or not gb:
            continue
        fa, fb = [da[k] for k in ga], [db[k] for k in gb]
        if any(f.span is None for f in (*fa, *fb)):
            continue
        la, lb = sum(f.span.length for f in fa), sum(f.span.length for f in fb)
        if la == lb and _contiguous(fa) and _contiguous(fb):
            found.append(Region(tuple(ga), tuple(gb), fa[0].span.offset, fb[0].span.offset, la))
    return found


def _gaps(keys: Sequence[str], anchors: Sequence[str]) -> list[list[str]]:
    gaps: list[list[str]] = [[]]
    anchor_set = set(anchors)
    for k in keys:
        if k in anchor_set:
            gaps.append([])
        else:
            gaps[-1].append(k)
    return gaps


def _contiguous(fields: Sequence[Field]) -> bool:
    return all(x.span.end == y.span.offset for x, y in zip(fields, fields[1:]))


def field_at(fields: Sequence[tuple[str, Field]], offset: int) -> str:
    """The name (and byte inside it) of the field covering absolute `offset`."""
    for key, f in fields:
        if f.span is not None and f.span.offset <= offset < f.span.end:
            inside = offset - f.span.offset
            return key if f.span.length == 1 else f"{key} byte {inside}"
    return "?"


# ---------------------------------------------------------------- index/value maps


@dataclass(frozen=True)
class RegisterPair:
    """Arrays `stem_indexes` and `stem_values` of equal length on both sides: a map."""

    stem: str
    indexes: str
    values: str


def register_pairs(da: Mapping[str, Field], db: Mapping[str, Field]) -> list[RegisterPair]:
    found = []
    for key in da:
        if not key.endswith("_indexes"):
            continue
        stem = key[: -len("_indexes")]
        values = f"{stem}_values"
        if values not in da or key not in db or values not in db:
            continue
        sides = [(d[key].value, d[values].value) for d in (da, db)]
        if all(isinstance(i, list) and isinstance(v, list) and len(i) == len(v) for i, v in sides):
            found.append(RegisterPair(stem, key, values))
    return found


def register_namer(stem: str) -> Callable[[int], str]:
    """How the keys of a register map are named: arm cpreg ids as system registers, else hex."""
    if stem.startswith("cpreg"):
        from ..compat.check.load_rules import cpreg_name

        return cpreg_name
    return lambda index: f"{index:#x}"
