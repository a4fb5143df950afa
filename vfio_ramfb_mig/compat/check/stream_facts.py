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


def ram_block_list(stream: MigrationStream) -> tuple[Any, ...]:
    """The RamBlocks of the stream's first RAM block list (the START section's), in order."""
    for r in stream.sections:
        if isinstance(r.body, RamBody):
            for item in r.body.items:
                if isinstance(item, RamMemSize):
                    return item.blocks
    return ()


def subsection_names(fields: Sequence[Field], subsections: Sequence[Subsection]) -> Iterator[str]:
    for f in fields:
        values = f.value if isinstance(f.value, list) else [f.value]
        for v in values:
            if isinstance(v, StructValue):
                yield from subsection_names(v.fields, v.subsections)
    for s in subsections:
        yield s.name
        yield from subsection_names(s.fields, s.subsections)
