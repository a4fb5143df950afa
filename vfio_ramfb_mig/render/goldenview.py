"""Golden check and update results as styled lines (`vmig golden check|update`).

The same lines as `golden.report_lines` (which the pytest plugin prints as
plain text), with styles: paths in vmig.path, the old value in vmig.removed,
the new one in vmig.added, one `[group]` line per section.

A line is a tuple of (text, style) pieces. `Lines` prints them through a rich console on a
terminal or when colour is asked for, and otherwise as their bare text, the same characters
rich would print without styles, without loading rich: a CI job that pipes `golden check`
should not wait for the import while its hashing could be under way.

show_check and show_update print a whole `vmig golden check|update` run as its results come
(and --json, --junit FILE for a check).

Imports: golden, outfile; rich only for a console that styles.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..golden import Change, CheckResult, Run, UpdateResult, check_document, junit_xml

if TYPE_CHECKING:
    from rich.console import Console

#: a piece of a line: its text and its style ("" for none)
Piece = tuple[str, str]
Line = tuple[Piece, ...]

_MARK = {"changed": ("~", "vmig.changed"), "added": ("+", "vmig.added"), "removed": ("-", "vmig.removed")}
_STATUS = {"ok": "vmig.dim", "different": "vmig.error", "missing": "vmig.error", "stale": "vmig.error",
           "error": "vmig.error", "created": "vmig.added", "updated": "vmig.changed", "unchanged": "vmig.dim"}


class Lines:
    """Where lines go: `console()` gives the rich console to style them with, or None for plain text
    written to `stream` (the console is asked for only when the first line is printed)."""

    def __init__(self, console: Callable[[], Console | None], stream: IO[str]) -> None:
        self._make, self._stream = console, stream
        self._console: Console | None = None
        self._asked = False

    def print(self, line: Line) -> None:
        if not self._asked:
            self._console, self._asked = self._make(), True
        console = self._console
        if console is None:
            self._stream.write("".join(text for text, _ in line) + "\n")
            return
        from rich.text import Text

        console.print(Text.assemble(*line))


def _status(word: str) -> Piece:
    return f"{word.upper():<10}", _STATUS.get(word, "")


def change_line(change: Change) -> Line:
    mark, style = _MARK[change.kind]
    old = ("(absent)", "vmig.dim") if change.old is None else (change.old, "vmig.removed")
    new = ("(absent)", "vmig.dim") if change.new is None else (change.new, "vmig.added")
    return ("    ", ""), (mark, style), (" ", ""), (change.path, "vmig.path"), (": ", ""), old, (" \u2192 ", ""), new


def change_lines(changes: tuple[Change, ...], limit: int | None) -> list[Line]:
    lines: list[Line] = []
    group = None
    for n, change in enumerate(changes):
        if limit and n >= limit:
            lines.append(((f"    ... and {len(changes) - n} more (--limit 0 shows all)", "vmig.dim"),))
            break
        if change.group != group:
            group = change.group
            lines.append((("  [", ""), (group, "vmig.name"), ("]", "")))
        lines.append(change_line(change))
    return lines


def check_lines(result: CheckResult, limit: int | None = 200) -> list[Line]:
    head = (_status(result.status), (str(result.stream), ""))
    if result.status == "ok":
        return [head]
    if result.status != "different":
        return [(*head, (f": {result.message}", ""))]
    n = len(result.changes)
    said = f": {n} difference{'s' if n != 1 else ''} from {result.golden} (old \u2192 new)"
    return [(*head, (said, "")), *change_lines(result.changes, limit)]


def error_line(stream: object, message: str) -> Line:
    return _status("error"), (str(stream), ""), (f": {message}", "")


def update_lines(result: UpdateResult, show_changes: bool = False, limit: int | None = 200) -> list[Line]:
    head = (_status(result.status), (str(result.golden), ""))
    if result.status == "updated":
        n = len(result.changes)
        head = (*head, (f" ({n} line{'s' if n != 1 else ''} changed)", "vmig.dim"))
        if show_changes and result.changes:
            return [head, *change_lines(result.changes, limit)]
    return [head]


def summary_line(verb: str, counts: dict[str, int]) -> Line:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {word}" for word, n in counts.items() if n or word in ("ok", "unchanged"))
    return ((f"vmig golden {verb}: {total} stream{'s' if total != 1 else ''}: {parts}", "vmig.title"),)


def _orphan_warnings(err: Lines, orphans: list[Path]) -> None:
    for orphan in orphans:
        err.print(((f"vmig: warning: {orphan} has no stream beside it", "vmig.warn"),))


def show_check(out: Lines, err: Lines, run: Run, *, limit: int | None = 200, verbose: bool = False,
               as_json: bool = False, junit: str | None = None, version: str = "") -> None:
    """Each failed stream (every one with `verbose`) as it is checked, trouble on `err`, then the
    counts; `as_json`: one JSON document instead of the text; `junit`: also that JUnit XML file."""
    from ..outfile import check_output, write_output

    if junit is not None:
        check_output(junit)  # before the work: a directory or a missing one is said now
    for result in run:
        if result.status == "error":
            err.print(error_line(result.stream, result.message))
        elif not as_json and (result.failed or verbose):
            for line in check_lines(result, limit):
                out.print(line)
    orphans = run.orphans()
    _orphan_warnings(err, orphans)
    if junit is not None:
        write_output(junit, junit_xml(run.results))
    if as_json:
        sys.stdout.write(json.dumps(check_document(run.results, orphans, version), indent=2) + "\n")
    else:
        out.print(summary_line("check", run.counts))


def show_update(out: Lines, err: Lines, run: Run, *, show_changes: bool = False, verbose: bool = False) -> None:
    """Each created or updated golden (every one with `verbose`) as it is written, then the counts."""
    for result in run:
        if result.status == "error":
            err.print(error_line(result.stream, result.message))
        elif result.status != "unchanged" or verbose:
            for line in update_lines(result, show_changes=show_changes):
                out.print(line)
    out.print(summary_line("update", run.counts))
