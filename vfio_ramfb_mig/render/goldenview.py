"""Golden check and update results -> rich Text (`vmig golden check|update`).

The same lines as `golden.report_lines` (which the pytest plugin prints as
plain text), with styles: paths in vmig.path, the old value in vmig.removed,
the new one in vmig.added, one `[group]` line per section.

show_check and show_update print a whole `vmig golden check|update` run as its results come
(and --json, --junit FILE for a check).

Imports: rich, golden, outfile.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from ..golden import Change, CheckResult, Run, UpdateResult, check_document, junit_xml

_MARK = {"changed": ("~", "vmig.changed"), "added": ("+", "vmig.added"), "removed": ("-", "vmig.removed")}
_STATUS = {"ok": "vmig.dim", "different": "vmig.error", "missing": "vmig.error", "stale": "vmig.error",
           "error": "vmig.error", "created": "vmig.added", "updated": "vmig.changed", "unchanged": "vmig.dim"}


def _status(word: str) -> Text:
    return Text(f"{word.upper():<10}", style=_STATUS.get(word, ""))


def change_text(change: Change) -> Text:
    mark, style = _MARK[change.kind]
    old = Text("(absent)", style="vmig.dim") if change.old is None else Text(change.old, style="vmig.removed")
    new = Text("(absent)", style="vmig.dim") if change.new is None else Text(change.new, style="vmig.added")
    return Text.assemble("    ", (mark, style), " ", (change.path, "vmig.path"), ": ", old, " \u2192 ", new)


def changes_text(changes: tuple[Change, ...], limit: int | None) -> Text:
    lines, group = [], None
    for n, change in enumerate(changes):
        if limit and n >= limit:
            lines.append(Text(f"    ... and {len(changes) - n} more (--limit 0 shows all)", style="vmig.dim"))
            break
        if change.group != group:
            group = change.group
            lines.append(Text.assemble("  [", (group, "vmig.name"), "]"))
        lines.append(change_text(change))
    return Text("\n").join(lines)


def check_text(result: CheckResult, limit: int | None = 200) -> Text:
    head = Text.assemble(_status(result.status), str(result.stream))
    if result.status == "ok":
        return head
    if result.status != "different":
        return head.append(f": {result.message}")
    n = len(result.changes)
    head.append(f": {n} difference{'s' if n != 1 else ''} from {result.golden} (old \u2192 new)")
    return Text("\n").join([head, changes_text(result.changes, limit)])


def error_line(stream: object, message: str) -> Text:
    return Text.assemble(_status("error"), str(stream), f": {message}")


def update_text(result: UpdateResult, show_changes: bool = False, limit: int | None = 200) -> Text:
    head = Text.assemble(_status(result.status), str(result.golden))
    if result.status == "updated":
        n = len(result.changes)
        head.append(f" ({n} line{'s' if n != 1 else ''} changed)", style="vmig.dim")
        if show_changes and result.changes:
            return Text("\n").join([head, changes_text(result.changes, limit)])
    return head


def summary_text(verb: str, counts: dict[str, int]) -> Text:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {word}" for word, n in counts.items() if n or word in ("ok", "unchanged"))
    return Text(f"vmig golden {verb}: {total} stream{'s' if total != 1 else ''}: {parts}", style="vmig.title")


def _orphan_warnings(err: Console, orphans: list[Path]) -> None:
    for orphan in orphans:
        err.print(f"vmig: warning: {orphan} has no stream beside it", style="vmig.warn", markup=False)


def show_check(out: Console, err: Console, run: Run, *, limit: int | None = 200, verbose: bool = False,
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
            out.print(check_text(result, limit))
    orphans = run.orphans()
    _orphan_warnings(err, orphans)
    if junit is not None:
        write_output(junit, junit_xml(run.results))
    if as_json:
        sys.stdout.write(json.dumps(check_document(run.results, orphans, version), indent=2) + "\n")
    else:
        out.print(summary_text("check", run.counts))


def show_update(out: Console, err: Console, run: Run, *, show_changes: bool = False, verbose: bool = False) -> None:
    """Each created or updated golden (every one with `verbose`) as it is written, then the counts."""
    for result in run:
        if result.status == "error":
            err.print(error_line(result.stream, result.message))
        elif result.status != "unchanged" or verbose:
            out.print(update_text(result, show_changes=show_changes))
    out.print(summary_text("update", run.counts))
