"""The load verdict: run the rules over a stream, order the findings as QEMU meets them, say what
QEMU prints; and the `vmig check --json` document.

Imports: model, compat.check.{destination, findings, rules}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...model import MigrationStream
from .destination import Destination
from .findings import EINVAL, Context, Finding
from .rules import CONFIG_ORDER, RULES


@dataclass(frozen=True)
class Verdict:
    """`check_stream`'s answer. `loadable` is False iff some finding is "refused"."""

    destination: Destination
    findings: tuple[Finding, ...]
    #: what QEMU prints: the first failure's lines and "load of migration failed: ...", or its warnings
    qemu_output: tuple[str, ...]
    stream: str | None = None

    @property
    def loadable(self) -> bool:
        return not self.refusals

    @property
    def refusals(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "refused")

    @property
    def first(self) -> Finding | None:
        return next(iter(self.refusals), None)


def check_stream(stream: MigrationStream, dest: Destination, *, illegal: list[Any] | None = None,
                 compressed: list[Any] | None = None) -> Verdict:
    """Judge whether `dest` would load `stream`, the way QEMU's loader goes through it.

    `illegal`, `compressed`: the page records past their block's end and the first compressed run
    (ram.state.IllegalOffsetScan fed by decode's on_ram_item) when the stream was decoded without
    its page runs."""
    ctx = Context(stream, dest, illegal=illegal, compressed=compressed)
    for order, rule in enumerate(RULES):
        ctx.order = order
        for finding in rule.check(ctx, rule):
            ctx.add(finding)
    ordered = [f for _, f in sorted(ctx.findings, key=lambda kf: _sort_key(kf[0], kf[1]))]
    # QEMU stops at the first failure: everything after it in the stream it never sees, but vmig reports it
    return Verdict(destination=dest, findings=tuple(ordered), qemu_output=_qemu_output(ordered), stream=stream.source)


def _sort_key(key: tuple[int, int, int], finding: Finding) -> tuple[int, int, int]:
    """Stream order (record, offset); inside the configuration record QEMU's own order (fields, then post_load)."""
    record, offset, order = key
    if finding.rule_id in CONFIG_ORDER:
        return (record, -1, CONFIG_ORDER.index(finding.rule_id))
    return (record, offset, order)


def _qemu_output(findings: Sequence[Finding]) -> tuple[str, ...]:
    refused = [f for f in findings if f.severity == "refused"]
    if not refused:
        return tuple(line for f in findings if f.severity == "warning" for line in f.messages)
    first = refused[0]
    lines = list(first.messages)
    if first.continues:
        for f in refused[1:]:
            if f.rule_id != first.rule_id:
                break
            lines.extend(f.messages)
    lines.append(f"load of migration failed: {first.errno or EINVAL}")
    return tuple(lines)


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """The `vmig check --json` document."""
    dest = verdict.destination
    return {
        "stream": verdict.stream,
        "loadable": verdict.loadable,
        "destination": {"qemu": dest.qemu, "arch": dest.arch, "machine": dest.machine, "devices": list(dest.devices),
                        "capabilities": sorted(dest.capabilities), "memory": dest.memory,
                        "schema": dest.schema.origin, "notes": list(dest.notes)},
        "qemu_output": list(verdict.qemu_output),
        "findings": [
            {k: v for k, v in {
                "rule": f.rule_id, "severity": f.severity, "summary": f.summary, "messages": list(f.messages),
                "errno": f.errno, "record": f.record, "offset": f.offset, "pointer": f.pointer or None,
                "path": f.path or None, "source": f.source}.items() if v is not None}
            for f in verdict.findings
        ],
    }
