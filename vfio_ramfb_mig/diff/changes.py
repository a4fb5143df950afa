"""What a diff finds: one `Change` per difference, and the `StreamDiff` that holds them.

Imports: nothing of the package (the render layer, JSON and golden read these).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
