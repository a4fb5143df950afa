"""Reporting: a check's results as plain text (the pytest plugin), as the JSON document of
`golden check --json` (schemas/golden-check.schema.json) and as JUnit XML (`--junit FILE`).
The CLI's styled text is render/goldenview's.

Imports: golden.check, golden.compare.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from .check import CHECK_STATUSES, CheckResult
from .compare import change_line


def report_lines(result: CheckResult, limit: int | None = 200) -> list[str]:
    """Plain text of a check result (the pytest plugin's failure message; the CLI styles the same)."""
    head = f"{result.status.upper()} {result.stream}"
    if result.status == "ok":
        return [f"{head}: matches {result.golden}"]
    if result.status != "different":
        return [f"{head}: {result.message}"]
    lines = [f"{head}: {len(result.changes)} difference{'s' if len(result.changes) != 1 else ''} "
             f"from {result.golden} (old \u2192 new)"]
    group = None
    for n, change in enumerate(result.changes):
        if limit and n >= limit:
            lines.append(f"  ... and {len(result.changes) - n} more")
            break
        if change.group != group:
            group = change.group
            lines.append(f"  [{group}]")
        lines.append(f"    {'~+-'[('changed', 'added', 'removed').index(change.kind)]} {change_line(change)}")
    return lines


#: `vmig golden check --json`'s document format (schemas/golden-check.schema.json)
CHECK_JSON_FORMAT = 1


def check_document(results: Iterable[CheckResult], orphans: Iterable[Path] = (), version: str = "") -> dict[str, Any]:
    """`vmig golden check --json`: every stream's status and all its changes (no --limit), the
    counts, and the goldens whose stream is gone. `passed` is what exit status 0 means."""
    results = list(results)
    counts = dict.fromkeys(CHECK_STATUSES, 0)
    for result in results:
        counts[result.status] += 1
    return {
        "vmig": {"golden_check_format": CHECK_JSON_FORMAT, "version": version},
        "passed": not any(r.failed for r in results),
        "counts": counts,
        "streams": [{"stream": str(r.stream), "snapshot": r.snapshot, "golden": str(r.golden), "status": r.status,
                     "message": r.message or None,
                     "changes": [{"group": c.group, "path": c.path, "kind": c.kind, "old": c.old, "new": c.new}
                                 for c in r.changes]}
                    for r in results],
        "orphans": [str(p) for p in orphans],
    }


def junit_xml(results: Iterable[CheckResult], suite: str = "vmig golden check") -> bytes:
    """JUnit XML of a check, as CI systems read it: one testcase per stream (per VM state of a
    qcow2 image), named by the stream's file name in a class named by its directory; a difference,
    a missing or stale golden is a <failure> holding the report's text (every change); a stream
    or golden that cannot be read is an <error>. No times: the file of -j1 and -jN is the same."""
    from xml.etree import ElementTree as ET

    results = list(results)
    failures = sum(r.status in ("different", "missing", "stale") for r in results)
    errors = sum(r.status == "error" for r in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors)}
    top = ET.Element("testsuites", name=suite, **counts)
    tests = ET.SubElement(top, "testsuite", name=suite, skipped="0", **counts)
    for result in results:
        name = result.stream.name + (f"@{result.snapshot}" if result.snapshot is not None else "")
        case = ET.SubElement(tests, "testcase", classname=_xml_text(str(result.stream.parent)),
                             name=_xml_text(name), file=_xml_text(str(result.stream)))
        if result.status == "ok":
            continue
        head, *rest = report_lines(result, limit=None)
        kind = "error" if result.status == "error" else "failure"
        problem = ET.SubElement(case, kind, type=result.status, message=_xml_text(head))
        problem.text = _xml_text("\n".join(rest) if rest else head)
    ET.indent(top)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True) + b"\n"


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """Characters XML 1.0 cannot hold (controls; a path's undecodable bytes) as \\xNN / \\uNNNN."""
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
