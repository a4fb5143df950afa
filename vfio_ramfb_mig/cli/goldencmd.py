"""`vmig golden check|update [PATHS...]`: golden-file checks for CI (see docs/golden.md).

Every stream under PATHS (files, or directories searched recursively for files whose content is a
stream, a libvirt save image, a qcow2 snapshot, compressed or not, whatever their names) is
compared with `<stem>.golden.txt` beside it. Exit status, diff(1)'s way:
0 every stream matches its golden; 1 a stream differs, or its golden is
missing (a missing golden fails, it never passes) or lacks the --offsets /
--order asked for; 2 trouble: a stream that does not decode, a bad
golden or vmig-golden.toml, no stream under PATHS.

Imports: click at start-up; golden and render.goldenview when a verb runs; rich only for output
to a terminal or in colour (render.goldenview.Lines).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .main import FILE, App, SuggestingGroup

if TYPE_CHECKING:
    from ..render.goldenview import Lines


def _lines(app: App) -> tuple[Lines, Lines]:
    """Where results (stdout) and trouble (stderr) go: styled through the app's consoles, or plain."""
    from ..render.goldenview import Lines

    return (Lines(lambda: app.out if app.styles(sys.stdout) else None, sys.stdout),
            Lines(lambda: app.err if app.styles(sys.stderr) else None, sys.stderr))


def _content_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
                        help="check N streams at a time, each in its own process [default: the CPU "
                             "count]; the output and exit status are those of -j1")(func)
    func = click.option("--order", is_flag=True,
                        help="the record order and section ids are part of the golden")(func)
    func = click.option("--offsets", is_flag=True,
                        help="byte offsets are part of the golden (implies --order)")(func)
    func = click.option("--ignore", "ignore", multiple=True, metavar="PATTERN",
                        help="leave out paths matching this fnmatch pattern, e.g. 'timer/*', 'ram/*', "
                             "'cpu/*/tsc*'; a pattern matching a parent path ('timer') covers its subtree; "
                             "repeatable; adds to vmig-golden.toml's `ignore`")(func)
    return click.argument("paths", nargs=-1, required=True, metavar="PATHS...", type=click.Path())(func)


@click.group("golden", cls=SuggestingGroup)
def golden_cmd() -> None:
    """Golden-file checks for CI: compare streams with checked-in canonical summaries.

    \b
    vmig golden update captures/        # write captures/*.golden.txt; review and commit them
    vmig golden check captures/         # exit 1 and a diff by field path when the stream drifts
    vmig golden check --ignore 'timer/*' --ignore 'ram/*' out/new.bin

    `out.bin`'s golden is `out.golden.txt` beside it. Options also come from a
    vmig-golden.toml beside the streams (or in a parent up to PATH):
    `ignore = ["timer/*"]`, `offsets = false`, `order = false`.
    """


@golden_cmd.command("check")
@_content_options
@click.option("--limit", default=200, show_default=True, metavar="N",
              help="show at most N differences per stream (0: all; --json and --junit hold all)")
@click.option("-v", "--verbose", is_flag=True, help="also list the streams that match")
@click.option("--json", "as_json", is_flag=True,
              help="print the result as JSON instead of text: every stream's status and changes "
                   "(schemas/golden-check.schema.json)")
@click.option("--junit", metavar="FILE", type=FILE,
              help="also write a JUnit XML report for CI: a testcase per stream, a failure holds its differences")
@click.pass_obj
def check_cmd(app: App, paths: tuple[str, ...], ignore: tuple[str, ...], offsets: bool, order: bool,
              jobs: int | None, limit: int, verbose: bool, as_json: bool, junit: str | None) -> None:
    """Compare every stream under PATHS with its golden; print the differences.

    Exit 0: all match. 1: a difference, or a missing golden. 2: a stream or
    golden that cannot be read.
    """
    from .. import __version__  # start-up: see main's docstring
    from ..golden import GoldenOptions, check_paths
    from ..render.goldenview import show_check

    run = check_paths(paths, GoldenOptions(offsets=offsets, order=order, ignore=ignore), jobs)
    show_check(*_lines(app), run, limit=limit or None, verbose=verbose, as_json=as_json, junit=junit,
               version=__version__)
    if run.exit_status:
        raise SystemExit(run.exit_status)


@golden_cmd.command("update")
@_content_options
@click.option("--show", is_flag=True, help="show what changed in each updated golden")
@click.option("-v", "--verbose", is_flag=True, help="also list the goldens that did not change")
@click.pass_obj
def update_cmd(app: App, paths: tuple[str, ...], ignore: tuple[str, ...], offsets: bool, order: bool,
               jobs: int | None, show: bool, verbose: bool) -> None:
    """Write the golden of every stream under PATHS (never a .bin; only goldens whose text changes).

    Options given here, in vmig-golden.toml and in the golden being replaced
    are recorded in the golden's `# options:` line; to drop one, edit that
    line or delete the golden first.
    """
    from ..golden import GoldenOptions, update_paths
    from ..render.goldenview import show_update

    run = update_paths(paths, GoldenOptions(offsets=offsets, order=order, ignore=ignore), jobs)
    show_update(*_lines(app), run, show_changes=show, verbose=verbose)
    if run.exit_status:
        raise SystemExit(run.exit_status)
