"""Comparison: two goldens -> the paths whose values differ (changed, added, removed), by group.

Imports: naming, golden.goldenfile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..naming import IgnorePatterns
from .goldenfile import Golden


@dataclass(frozen=True, slots=True)
class Change:
    """One path whose value differs: `old` None means added, `new` None means removed."""

    group: str
    path: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"


def compare(expected: Golden, actual: Golden, ignore: Iterable[str] = ()) -> list[Change]:
    """Differences by path, grouped by section (groups in golden order, then new ones)."""
    ignored = IgnorePatterns(ignore)
    old = {e.path: e for e in expected.entries if not (ignored and ignored(e.path))}
    new = {e.path: e for e in actual.entries if not (ignored and ignored(e.path))}
    by_group: dict[str, list[Change]] = {}
    for path, entry in old.items():
        now = new.get(path)
        if now is None:
            by_group.setdefault(entry.group, []).append(Change(entry.group, path, entry.value, None))
        elif now.value != entry.value:
            by_group.setdefault(now.group, []).append(Change(now.group, path, entry.value, now.value))
    for path, entry in new.items():
        if path not in old:
            by_group.setdefault(entry.group, []).append(Change(entry.group, path, None, entry.value))
    return [change for changes in by_group.values() for change in changes]


def change_line(change: Change) -> str:
    """`path: old -> new`, with (absent) for a side that does not have the path."""
    old = "(absent)" if change.old is None else change.old
    new = "(absent)" if change.new is None else change.new
    return f"{change.path}: {old} \u2192 {new}"
