"""Opening the streams a verb reads: Source.open with the --snapshot option and a progress bar.

Every verb that reads a stream takes what `Source.open` takes: a plain stream, a compressed
one, a libvirt save image or a qcow2 image (with `--snapshot NAME|ID` when it has several VM
states), or '-' for stdin. While a pipe or compressed input is copied into its spool, a bar on
stderr says how far it got (on a terminal, unless --quiet).

Imports: click; source (when a verb runs).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:
    from ..source import Source
    from .main import App

SNAPSHOT_HELP = "qcow2 images: the internal snapshot whose VM state to read, by id or name (default: the only " \
                "snapshot that has one)"


def snapshot_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--snapshot", metavar="NAME|ID", help=SNAPSHOT_HELP)(f)


def open_stream(app: App, path: str, *, snapshot: str | None = None, quiet: bool = False,
                seek: bool = True) -> Source:
    """Source.open, with a progress bar while a forward-only input is copied. `seek=False` for a
    verb that reads the stream once, forward (a pipe or compressed input then takes a window of
    temp space, not its size)."""
    from ..source import Source  # start-up: see main's docstring

    label = "stdin" if path == "-" else path
    with ExitStack() as stack:
        bar: list[Callable[..., None]] = []

        def progress(done: int, total: int | None = None) -> None:
            # the bar is asked for only when something is copied (a file read in place needs none)
            if not bar:
                bar.append(stack.enter_context(app.progress(f"read {label}", total, quiet=quiet)))
            bar[0](done, total)

        # read forward, the input is copied as the verb reads it: the verb's own bar follows that
        src = Source.open(path, snapshot=snapshot, progress=progress if seek else None, seek=seek)
    return src


def snapshots_for(paths: tuple[str, ...], snapshots: tuple[str, ...]) -> tuple[str | None, ...]:
    """Verbs with several inputs (diff): one --snapshot applies to each qcow2 among them, or one
    per input in order."""
    if not snapshots:
        return (None,) * len(paths)
    if len(snapshots) == 1:
        return tuple(snapshots) * len(paths)
    if len(snapshots) == len(paths):
        return tuple(snapshots)
    raise click.UsageError(f"give --snapshot once (for every input) or {len(paths)} times (one per input, in order)")
