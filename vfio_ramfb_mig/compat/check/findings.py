"""A finding (one rule that fails for one place in the stream), the rule that makes it, and
the context rules read.

Imports: errors, model, compat.check.destination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import pointer
from ...model import MigrationStream
from .destination import Destination

EINVAL = "Invalid argument"
ENOENT = "No such file or directory"


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fails (or a warning/note) for one place in the stream.

    `messages` are the lines QEMU prints for it (without QEMU's program-name prefix and
    without the final "load of migration failed" line); `errno` is the strerror that
    final line carries. `severity` is "refused" (QEMU fails the load), "warning" (QEMU
    prints it and goes on) or "note" (vmig could not verify something).
    """

    rule_id: str
    severity: str
    summary: str
    messages: tuple[str, ...]
    source: str
    record: int | None = None
    offset: int | None = None
    pointer: str = ""
    path: str = ""
    errno: str | None = None
    #: QEMU goes on checking after this one and reports the next too (capabilities)
    continues: bool = False


@dataclass
class Context:
    stream: MigrationStream
    dest: Destination
    findings: list[tuple[tuple[int, int, int], Finding]] = field(default_factory=list)
    order: int = 0
    #: page records past their block's end, gathered while decoding (None: find them in the stream's runs)
    illegal: list[Any] | None = None
    #: the first compressed run (COMPRESS_PAGE), gathered while decoding (None: find it in the stream's runs)
    compressed: list[Any] | None = None

    def add(self, finding: Finding) -> None:
        record = finding.record if finding.record is not None else -1
        self.findings.append(((record, finding.offset if finding.offset is not None else -1, self.order), finding))


@dataclass(frozen=True, slots=True)
class Rule:
    """One thing QEMU's loader checks. `check` yields findings; RULES is the list, in QEMU's order."""

    rule_id: str
    summary: str
    source: str
    check: Callable[[Context, Rule], Iterator[Finding]]


def report(rule: Rule, severity: str, summary: str, messages: Sequence[str], *, record: int | None = None,
       offset: int | None = None, ptr: tuple[Any, ...] = (), path: str = "", errno: str | None = EINVAL,
       continues: bool = False) -> Finding:
    return Finding(rule_id=rule.rule_id, severity=severity, summary=summary, messages=tuple(messages),
                   source=rule.source, record=record, offset=offset, pointer=pointer(ptr) if ptr else "",
                   path=path, errno=errno if severity == "refused" else None, continues=continues)


def loading_error(idstr: str, instance: int) -> str:
    return f"error while loading state for instance {instance:#x} of device '{idstr}'"
