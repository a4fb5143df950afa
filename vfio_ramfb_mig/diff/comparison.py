"""One comparison under way: the two streams, their bytes, the ignore patterns, what is found.

The comparing modules (sections, fields, ram, vfio, screens) are functions of a `Comparison`:
they add changes and notes to it, and ask it whether a path is ignored.

Imports: model, naming (ignore patterns), source, ram.state (PageState), diff.changes, diff.byteranges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import MigrationStream
from ..naming import IgnorePatterns
from ..ram.state import PageState
from ..source import Source
from .byteranges import Reader
from .changes import Change


class Comparison:
    """A and B with their readers and final page states; the changes, notes and ignored count so far."""

    def __init__(self, a: MigrationStream, b: MigrationStream, source_a: Source | None, source_b: Source | None,
                 ignore: tuple[str, ...], progress: Callable[[int, int], None] | None = None,
                 ram_a: PageState | None = None, ram_b: PageState | None = None) -> None:
        self.a, self.b, self.ignore = a, b, IgnorePatterns(ignore)
        self.ra, self.rb = Reader(source_a), Reader(source_b)
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

    def one_side(self, kind: str, group: str, path: str, text: str, value: Any, offset: int | None, in_a: bool,
                 **kw: Any) -> None:
        """Something only one side has: a ``<kind>_removed`` change (only in A) with its value and
        offset as the old ones, or a ``<kind>_added`` change (only in B) with them as the new ones."""
        if in_a:
            self.add(f"{kind}_removed", group, path, text, old=value, old_offset=offset, **kw)
        else:
            self.add(f"{kind}_added", group, path, text, new=value, new_offset=offset, **kw)

    def skip(self, path: str) -> bool:
        """A whole subtree is ignored: count it once and do not compute it."""
        if self.ignore(path):
            self.ignored += 1
            return True
        return False


