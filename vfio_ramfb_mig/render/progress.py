"""A progress bar on stderr for long work: bytes done, rate, time left; cleared at the end.

    with progress_bar(console, total=src.size, description="decode big.bin", enabled=tty) as progress:
        stream = decode(src, progress=progress)

The context manager yields a callback, `progress(done)` or `progress(done, total)` (the
second form also moves the goal, for work that learns its size on the way). It draws
nothing unless `enabled` (the CLI enables it when stderr is a terminal and --quiet is not
given), and nothing for work that ends quickly: the bar appears only once the work has
run `delay` seconds on an input of at least `min_size` bytes (or of unknown size). The
bar is transient: when the block ends, normally or by an exception, it is erased, so
what is printed next starts on a clean line.

Imports: rich, and only once a bar is drawn.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task
    from rich.text import Text

#: inputs smaller than this never get a bar: they are decoded in a blink
MIN_SIZE = 64 << 20
#: seconds the work must have run before a bar appears (no flicker for quick runs)
DELAY = 0.3

ProgressCallback = Callable[..., None]
ConsoleLike = Union["Console", Callable[[], "Console"]]

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def size_words(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as vmig's trees print sizes)."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _nothing(done: int, total: int | None = None) -> None:
    """The callback when no bar is wanted."""


class _Bar:
    """Starts a rich Progress on the first update that is worth showing; updates it after."""

    def __init__(self, console: ConsoleLike, total: int | None, description: str, min_size: int, delay: float,
                 clock: Callable[[], float]) -> None:
        self.console, self.total, self.description = console, total, description
        self.min_size, self.delay, self.clock = min_size, delay, clock
        self.started_at = clock()
        self.progress: Progress | None = None
        self.task: Any = None

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        if self.progress is None:
            if not self._worth_showing(done):
                return
            self._start(done)
        assert self.progress is not None
        self.progress.update(self.task, completed=done, total=self.total)

    def _worth_showing(self, done: int) -> bool:
        if self.total is not None and (done >= self.total or self.total < self.min_size):
            return False
        return self.clock() - self.started_at >= self.delay

    def _start(self, done: int) -> None:
        from rich.console import Console  # rich only when a bar is drawn
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from rich.table import Column

        console = self.console if isinstance(self.console, Console) else self.console()
        # the line fits the terminal: the numbers keep their width, a long description is cut
        # with an ellipsis (at most a third of the line) and the bar takes what is left
        width = console.width
        description = TextColumn("{task.description}", table_column=Column(
            no_wrap=True, overflow="ellipsis", max_width=max(10, width // 3)))
        bar = BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5))
        self.progress = Progress(description, bar, *_byte_columns(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=console, transient=True, expand=True,
                                 refresh_per_second=5, redirect_stdout=False, redirect_stderr=False)
        self.task = self.progress.add_task(self.description, total=self.total, completed=done)
        self.progress.start()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _byte_columns() -> list[Any]:
    """Columns for done/total and rate in binary units ('1.2 GiB / 4.0 GiB', '512.0 MiB/s')."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class BytesColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            total = "?" if task.total is None else size_words(task.total)
            return Text(f"{size_words(task.completed)} / {total}", style="progress.download")

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?" if speed is None else f"{size_words(speed)}/s", style="progress.data.speed")

    return [BytesColumn(), RateColumn()]


@contextmanager
def progress_bar(console: ConsoleLike, total: int | None, description: str, *, enabled: bool = True,
                 min_size: int | None = None, delay: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> Iterator[ProgressCallback]:
    """Yield `progress(done, total=None)`; draw a transient bar on `console` while it is worth it.

    `console` may be a function returning the console, so a run that never shows a bar
    never makes one. Disabled, the callback does nothing and nothing is imported.
    `min_size` and `delay` default to MIN_SIZE and DELAY as they are at the call.
    """
    if not enabled:
        yield _nothing
        return
    bar = _Bar(console, total, description, MIN_SIZE if min_size is None else min_size,
               DELAY if delay is None else delay, clock)
    try:
        yield bar.update
    finally:
        bar.close()
