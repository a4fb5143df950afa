"""`vmig decode --pages`: one line per RAM page record, as the stream has them.

Each line names where the record starts in the input, the RAM section that holds it
(START/PART/END and its section id), the block, the page's offset in the block, its
kind and, for a ZERO record, the fill byte (for XBZRLE, the delta's length). Text
lines read like the tree; `as_json` gives JSON lines (one object per record).

The stream is walked twice, both times without keeping page runs, so memory stays
flat in the stream's size: the first walk finds the RAM sections' spans and the page
size (and any decode error, before a line is written), the second expands every run
of page records as the walk passes it (ram.walk.records) and writes its lines at once.

Imports: codec (decode), source, text, model, ram.walk.
References: migration/ram.c (ram_save_page, save_zero_page, save_xbzrle_page); wire-format.md §6.3.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import IO, Any

from ..codec.decode import decode
from ..model import RamBody, RamPages
from ..source import Source
from ..text import printable
from .walk import compressed_length, records

#: lines written per write() call at most
_BATCH = 4096
#: the word for each run kind in text output (a "page" record is a normal page)
KIND_TEXT = {"page": "normal", "zero": "zero", "xbzrle": "xbzrle", "compressed": "compressed"}
_TYPE_TEXT = {"section_start": "START", "section_part": "PART", "section_end": "END", "section_full": "FULL"}


class _Lister:
    def __init__(self, sections: list[tuple[int, int, str, int]], page_size: int, out: IO[Any], as_json: bool) -> None:
        self.sections, self.page_size, self.as_json = sections, page_size, as_json
        self.index = 0
        self.count = 0
        self.binary = not isinstance(out, io.TextIOBase)
        self.out = out

    def _section(self, offset: int) -> tuple[str, int]:
        # runs come in stream order, so the section holding a run is found by moving forward
        sections = self.sections
        while self.index + 1 < len(sections) and sections[self.index][1] <= offset:
            self.index += 1
        _, _, rtype, section_id = sections[self.index]
        return rtype, section_id

    def _write(self, lines: list[str]) -> None:
        text = "".join(lines)
        self.out.write(text.encode("utf-8") if self.binary else text)

    def run(self, run: RamPages) -> None:
        assert run.span is not None
        rtype, section_id = self._section(run.span.offset)
        if self.as_json:
            # the parts of the object every record of the run shares, serialised once
            head = f'"record": "{rtype}", "section_id": {section_id}, "block": {json.dumps(run.block)}'
            tail = f', "kind": "{run.kind}"'
            if run.kind == "zero":
                tail += f', "fill": {run.fill}'
            elif run.kind == "xbzrle":
                tail += f', "delta_length": {len(run.delta or b"")}'
            elif run.kind == "compressed":
                tail += f', "data_length": {compressed_length(run)}'
        else:
            head = f"{_TYPE_TEXT.get(rtype, rtype)} id {section_id}  {printable(run.block)}"
            tail = f"  {KIND_TEXT[run.kind]}"
            if run.kind == "zero":
                tail += f"  fill {run.fill:#04x}"
            elif run.kind == "xbzrle":
                tail += f"  delta {len(run.delta or b'')} bytes"
            elif run.kind == "compressed":
                tail += f"  zlib {compressed_length(run)} bytes"
        lines: list[str] = []
        for offset, length, page, _named in records(run, self.page_size):
            if self.as_json:
                lines.append(f'{{"offset": {offset}, "length": {length}, {head}, "page_offset": {page}{tail}}}\n')
            else:
                lines.append(f"{offset:#010x}  {head}  {page:#010x}{tail}\n")
            if len(lines) >= _BATCH:
                self._write(lines)
                lines.clear()
        if lines:
            self._write(lines)
        self.count += run.count


def write_page_list(source: Source | str, out: IO[Any], as_json: bool = False,
                    progress: Callable[..., None] | None = None) -> int:
    """Write one line per RAM page record of the stream to `out` (a text or binary file), in
    stream order; returns how many. A decode error is raised before anything is written.

    Text: ``0x000000ce  PART id 1  pc.ram  0x00000000  zero  fill 0x00`` (input offset of the
    record, section, block, page offset in the block, kind: normal, zero, xbzrle or compressed).
    JSON lines: ``{"offset": 206, "length": 16, "record": "section_part", "section_id": 1,
    "block": "pc.ram", "page_offset": 0, "kind": "zero", "fill": 0}`` (kind as in the
    `--json` contract: page, zero, xbzrle, compressed; "delta_length" for xbzrle, "data_length"
    (its zlib data) for compressed).

    `progress(done, total)` (render.progress) sees both walks: total is twice the input size."""
    if isinstance(source, str):
        with Source.open(source) as opened:
            return write_page_list(opened, out, as_json, progress)
    size = source.size
    first: Callable[[int], None] | None = None
    second: Callable[[int], None] | None = None
    if progress is not None:
        first = lambda done: progress(done, 2 * size)  # noqa: E731
        second = lambda done: progress(size + done, 2 * size)  # noqa: E731

    # each walk gets its own Source over the same buffer: a Source remembers how far it let
    # mapped pages go, and a second walk over the same one would let none go (memory = input)
    stream = decode(source.sibling(), ram_runs=False, progress=first)
    sections = [(s.span.offset, s.span.end, s.type, s.section_id) for s in stream.sections
                if isinstance(s.body, RamBody) and s.span is not None]
    if not sections:
        return 0
    page_size = next(s.body.page_size for s in stream.sections if isinstance(s.body, RamBody))
    lister = _Lister(sections, page_size, out, as_json)
    decode(source.sibling(), ram_runs=False, on_ram_run=lister.run, progress=second)
    out.flush()
    return lister.count
