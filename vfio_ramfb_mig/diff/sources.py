"""Decode two inputs and diff them, memory flat in their size: what `vmig diff` runs.

Each side's final RAM is kept by a ram.PageState fed as the decoder walks the pages (no page
runs kept), and the diff reads page contents back from the sources.

Progress is a bar factory, ``bar(description, total)`` -> a context manager giving the
callback (cli's App.progress has that shape): one bar over decoding both inputs (A's offsets,
then B's after A's size), then one over the guest RAM compared (its total from diff_streams).

Imports: model, source, codec.decode, ram.state, diff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass

from ..codec.decode import decode
from ..model import MigrationStream
from ..ram.state import PageState
from ..source import Source
from .changes import StreamDiff

#: ``bar(description, total)``: a context manager whose value is the progress callback
BarFactory = Callable[[str, "int | None"], AbstractContextManager[Callable[..., None]]]


@dataclass(frozen=True)
class Diffed:
    """Two decoded streams and their diff."""

    a: MigrationStream
    b: MigrationStream
    diff: StreamDiff


def _no_bar(description: str, total: int | None) -> AbstractContextManager[Callable[..., None]]:
    return nullcontext(lambda *args: None)


def diff_sources(source_a: Source, source_b: Source, *, ignore: Sequence[str] = (),
                 bar: BarFactory | None = None) -> Diffed:
    """Decode A and B (the RAM pages only into their final page states) and diff them."""
    from . import diff_streams

    bar = bar or _no_bar
    with ExitStack() as stack:
        ram_a, ram_b = stack.enter_context(PageState(source_a)), stack.enter_context(PageState(source_b))
        with bar("diff: decode A and B", source_a.size + source_b.size) as progress:
            a = decode(source_a, ram_runs=False, on_ram_item=ram_a.feed, progress=progress)
            b = decode(source_b, ram_runs=False, on_ram_item=ram_b.feed,
                       progress=lambda done: progress(source_a.size + done))
        with bar("diff: compare RAM", None) as progress:
            result = diff_streams(a, b, source_a, source_b, ignore=ignore, progress=progress,
                                  ram_a=ram_a.finish(), ram_b=ram_b.finish())
    return Diffed(a, b, result)
