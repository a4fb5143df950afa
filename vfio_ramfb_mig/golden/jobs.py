"""Many streams at once (`-j N`): check or update every target in worker processes, the
results in sorted path order whatever order they finish in, so the output and exit status
are those of one job.

Imports: errors, notices, golden (options, discovery, check).
"""

from __future__ import annotations

import os
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .. import notices
from ..errors import GoldenError, VmigError
from .check import CHECK_STATUSES, UPDATE_STATUSES, CheckResult, UpdateResult, check_stream, update_stream
from .discovery import Target, find_streams, orphan_goldens
from .options import GoldenOptions


def default_jobs() -> int:
    """The CPUs this process may run on (its affinity, as `nproc` says), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def check_all(targets: Iterable[Target], options: GoldenOptions = GoldenOptions(),
              jobs: int = 1) -> Iterator[CheckResult]:
    """Check every target, `jobs` streams at a time in worker processes, yielding the results in
    the targets' sorted order (by stream path) whatever order they finish in. A stream that does not
    decode or a golden that cannot be read is a result of status "error" with the message."""
    return _each(_check_target, targets, options, jobs)


def update_all(targets: Iterable[Target], options: GoldenOptions = GoldenOptions(),
               jobs: int = 1) -> Iterator[UpdateResult]:
    """Update every target's golden as check_all checks them (status "error" for trouble)."""
    return _each(_update_target, targets, options, jobs)


def _check_target(target: Target, options: GoldenOptions) -> CheckResult:
    try:
        return check_stream(target.stream, target.golden, options=options, config_root=target.root,
                            snapshot=target.snapshot)
    except VmigError as err:
        return CheckResult(target.stream, target.golden, "error", message=str(err), snapshot=target.snapshot)


def _update_target(target: Target, options: GoldenOptions) -> UpdateResult:
    try:
        return update_stream(target.stream, target.golden, options=options, config_root=target.root,
                             snapshot=target.snapshot)
    except VmigError as err:
        return UpdateResult(target.stream, target.golden, "error", message=str(err))


def _each(work: Any, targets: Iterable[Target], options: GoldenOptions, jobs: int) -> Iterator[Any]:
    """`work(target, options)` for every target, in sorted order. With more than one job, each
    stream goes to a worker process (spawned, so nothing of the parent leaks into the workers; one
    stream at a time each, so a worker's memory is one stream's, flat in its size as golden_of_path
    is); the biggest streams are handed out first, so a big one does not start last and keep one
    worker busy after the others are done."""
    ordered = sorted(targets, key=lambda t: t.stream)  # stable: a qcow2's snapshots keep their order
    jobs = min(jobs, len(ordered))
    if jobs <= 1:
        for target in ordered:
            yield work(target, options)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_signals)
    try:
        biggest_first = sorted(range(len(ordered)), key=lambda i: -_size(ordered[i].stream))
        # the workers are spawned as the work is handed out: with SIGINT blocked, which they
        # inherit, so a Ctrl-C while one is still starting (before _worker_signals) cannot print
        # its traceback; here it waits until the hand-out is done, then ends the pool
        with _sigint_blocked():
            pending = {i: pool.submit(_in_worker, work, ordered[i], options) for i in biggest_first}
        for i in range(len(ordered)):
            try:
                result, copies = pending.pop(i).result()
                for copy in copies:  # what the worker would have said, said here, in order
                    if notices.copied is not None:
                        notices.copied(*copy)
                yield result
            except BrokenProcessPool:
                raise GoldenError(f"a worker process ended abruptly (killed, out of memory?) while "
                                  f"{ordered[i].stream} or another stream was worked on") from None
    except BaseException:  # Ctrl-C, SIGTERM, an error, a consumer that stops early
        _stop_workers(pool)
        raise
    pool.shutdown()


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _stop_workers(pool: Any) -> None:
    """End a pool now: SIGTERM to every worker (which unwinds, see _worker_signals), no waiting for
    the streams at hand to finish."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _in_worker(work: Any, target: Target, options: GoldenOptions) -> tuple[Any, list[tuple[str, int, int]]]:
    """`work(target, options)` in a worker, with the notices it gave: a spawned worker has no
    CLI to say them, so they travel back with the result and the parent says them."""
    copies: list[tuple[str, int, int]] = []
    notices.copied = lambda *copy: copies.append(copy)
    try:
        return work(target, options), copies
    finally:
        notices.copied = None


def _worker_signals() -> None:
    """In a worker: Ctrl-C is the parent's to handle (it ends the pool), so a terminal's SIGINT to
    the whole process group does not print a traceback per worker; SIGTERM (the pool ending) unwinds
    the stream at hand, so a golden being written leaves no temporary file."""
    import signal
    import sys

    def stop(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)


class Run:
    """`vmig golden check|update PATHS`: every stream under the paths, `jobs` at a time. Iterate
    for the results as they come, in sorted path order; `counts`, `results` and `exit_status`
    (diff(1)'s: 0 all ok, 1 a difference or a missing or stale golden, 2 trouble) say the whole."""

    def __init__(self, verb: str, paths: Iterable[str | os.PathLike[str]], options: GoldenOptions,
                 jobs: int | None = None) -> None:
        self.verb, self.paths = verb, tuple(paths)
        targets = find_streams(self.paths)
        if not targets:
            raise GoldenError(f"no stream under {', '.join(map(str, self.paths))}; a check that checks nothing fails")
        each = check_all if verb == "check" else update_all
        self._results = each(targets, options, jobs or default_jobs())
        self.results: list[Any] = []
        self.counts = dict.fromkeys(CHECK_STATUSES if verb == "check" else UPDATE_STATUSES, 0)

    def __iter__(self) -> Iterator[Any]:
        with closing(self._results) as results:  # stopped early: the workers end now
            for result in results:
                self.results.append(result)
                self.counts[result.status] += 1
                yield result

    def orphans(self) -> list[Path]:
        """Goldens under the directory arguments whose stream is gone."""
        return orphan_goldens(self.paths)

    @property
    def exit_status(self) -> int:
        if self.counts["error"]:
            return 2
        return 1 if any(self.counts.get(s) for s in ("different", "missing", "stale")) else 0


def check_paths(paths: Iterable[str | os.PathLike[str]], options: GoldenOptions = GoldenOptions(),
                jobs: int | None = None) -> Run:
    """Check every stream under `paths` (`jobs`: default the CPU count). No stream: GoldenError."""
    return Run("check", paths, options, jobs)


def update_paths(paths: Iterable[str | os.PathLike[str]], options: GoldenOptions = GoldenOptions(),
                 jobs: int | None = None) -> Run:
    """Update the golden of every stream under `paths`, as check_paths checks them."""
    return Run("update", paths, options, jobs)
