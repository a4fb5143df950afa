"""Structural diff of two decoded migration streams: what differs, in words, and where.

Sections are matched by (idstr, instance_id), never by position or section id:
the same machine type saved by QEMU 7.2 and by QEMU 10.0 writes the same
sections in another order with other ids. Within a section, fields and
subsections are matched by name and compared through the decoded model, so
built-in schemas name what the vmdesc leaves opaque (the ramfb cfg is compared
per key: ``state/cfg/width 1024 → 1280``; the VFIO config field by field).

RAM is compared by each page's *final* content (the last record for a page
wins; an XBZRLE record is applied to the page's previous content), one RAM
block at a time, at memory speed: each side's final page state is ram.state's,
and ram.compare compares them (whole slices of both inputs where both sides have
pages in the same layout, page by page elsewhere). A zero page equals a page of
zeros. A page record QEMU refuses (past its block's end) is a CorruptError.

Paths and section names are vmig's one spelling (naming.py), the same as golden files and
`vmig check` use: ``dma#1``, ``fw_cfg/acpi_mr/...``, ``ahci/dev[5]``, ``configuration/...``,
``stream/...`` for stream-level facts (footers, vmdesc, commands), ``ram/<block>``. ``ignore``
patterns are naming's: fnmatch patterns applied to a change's path and to every ancestor of
it, so ``ram`` ignores all RAM and ``cpu/env.tsc*`` the TSC fields.

The package, by concern (each module's docstring says more):
  changes      Change, StreamDiff, KINDS: what a diff finds (render/ and --json read these)
  comparison   Comparison: one comparison under way (streams, readers, ignore patterns, findings)
  sections     section matching: stream facts, configuration, sections paired by idstr + instance
  fields       field comparison within a vmstate level (arrays, buffers, ramfb cfg, registers)
  equivalence  fields two vmdescs spell differently over the same bytes (renamed, re-split)
  ram          RAM comparison input: blocks to compare and their results in words (engine: ram/)
  vfio         a VFIO section: config state by field, device data by content
  screens      the guests' ramfb screens drawn and compared (screen/)
  byteranges   reading and comparing byte ranges of both sides, memory flat
  words        values and counts in words
  jsonform     the `vmig diff --json` document
  sources      decode two inputs and diff them, memory flat (what `vmig diff` runs)
  compat       `vmig diff --compat`: where each stream was made, each judged where the other was

Imports: model, naming, source, text, wire.ramfb, vmstate.compile, ram (state, compare), screen, compat (cpreg names).
References: migration/savevm.c (find_se: sections are found by idstr + instance_id),
migration/ram.c (ram_load_precopy: the last record for a page wins; load_xbzrle),
migration/xbzrle.c (xbzrle_decode_buffer), hw/display/ramfb.c (RAMFBCfg).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..model import MigrationStream, RamBody, Section
from ..ram.state import PageState
from ..source import Source
from .changes import KINDS, Change, StreamDiff
from .comparison import Comparison
from .fields import LIST_LIMIT
from .jsonform import diff_json
from .screens import compare_screens
from .sections import compare_all
from .words import int_text, ramfb_value_text, value_text

__all__ = ["KINDS", "LIST_LIMIT", "Change", "StreamDiff", "diff_json", "diff_streams", "int_text",
           "ramfb_value_text", "value_text"]


def diff_streams(a: MigrationStream, b: MigrationStream, source_a: Source | None = None,
                 source_b: Source | None = None, *, ignore: Sequence[str] = (),
                 progress: Callable[[int, int], None] | None = None,
                 ram_a: PageState | None = None, ram_b: PageState | None = None) -> StreamDiff:
    """Compare two decoded streams.

    Args:
        a, b: the decoded streams (A is "old", B is "new").
        source_a, source_b: the inputs they were decoded from. Needed to compare what the
            model keeps as byte ranges (RAM pages, VFIO device data, buffers over 4 KiB);
            without them those are compared by length only and a note says so.
        ignore: fnmatch patterns on change paths (see the module docstring).
        progress: called as ``progress(done, total)`` in bytes of guest RAM: `total` is the size
            of the RAM blocks whose pages are compared (pages x page size, the larger side of each
            block; 0 when there are none), `done` how much of it is behind. First (0, total), then
            about every 32 MiB (ram.compare.PROGRESS_EVERY) while pages are compared, last
            (total, total). `done` never goes back nor past `total`.
        ram_a, ram_b: the streams' final page states (ram.PageState fed by the decode that made
            them: memory flat in the streams); without them the streams must keep their page runs
            (decode's default) and the states are made from those.
    """
    states = []
    for stream, state, source in ((a, ram_a, source_a), (b, ram_b, source_b)):
        if state is None:
            if any(isinstance(r, Section) and isinstance(r.body, RamBody) and not r.body.runs_kept
                   for r in stream.records):
                # without its page runs a RAM section would compare as equal, whatever it holds
                raise ValueError("diff_streams needs the RAM page runs: decode with ram_runs=True, or "
                                 "pass the stream's ram.PageState")
            state = PageState.of(stream, source)
        state.check()
        states.append(state)
    diff = Comparison(a, b, source_a, source_b, tuple(ignore), progress, states[0], states[1])
    compare_all(diff)
    if source_a is not None and source_b is not None:
        compare_screens(diff, source_a, source_b)
    return StreamDiff(a=a.source, b=b.source, changes=tuple(diff.changes), ignored=diff.ignored,
                      notes=tuple(dict.fromkeys(diff.notes)), ignore=tuple(ignore))
