"""What the load rules and the destinations data read off a decoded stream.

Imports: model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ...model import (
    Configuration,
    Field,
    MigrationStream,
    RamBody,
    RamMemSize,
    Section,
    StructValue,
    Subsection,
    VmstateBody,
)


def records(stream: MigrationStream) -> Iterator[tuple[int, Any]]:
    return iter(enumerate(stream.records))


def configuration_record(stream: MigrationStream) -> tuple[int, Configuration] | None:
    return next(((i, r) for i, r in records(stream) if isinstance(r, Configuration)), None)


def section_vmsd_name(section: Section) -> str:
    """The vmsd (or handler) name of a section: the decoded body's, else the idstr's last component."""
    if isinstance(section.body, VmstateBody):
        return section.body.vmsd_name
    return section.idstr.rsplit("/", 1)[-1]


def stream_capabilities(config: Configuration) -> list[str]:
    for sub in config.subsections:
        if sub.name == "configuration/capabilities":
            caps = next((f.value for f in sub.fields if f.name == "capabilities"), [])
            return [c if isinstance(c, str) else str(c) for c in caps]
    return []


def pc_ram(stream: MigrationStream) -> tuple[Any, int, int] | None:
    """(RamBlock pc.ram, record index, offset of its block-list item) of the first RAM START."""
    for i, r in records(stream):
        if isinstance(r, Section) and isinstance(r.body, RamBody):
            for item in r.body.items:
                if isinstance(item, RamMemSize):
                    for block in item.blocks:
                        if block.idstr == "pc.ram":
                            return block, i, item.span.offset if item.span else r.span.offset
    return None


def subsection_names(fields: Sequence[Field], subsections: Sequence[Subsection]) -> Iterator[str]:
    for f in fields:
        values = f.value if isinstance(f.value, list) else [f.value]
        for v in values:
            if isinstance(v, StructValue):
                yield from subsection_names(v.fields, v.subsections)
    for s in subsections:
        yield s.name
        yield from subsection_names(s.fields, s.subsections)
