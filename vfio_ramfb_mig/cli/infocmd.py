"""`vmig info FILE`: what the file is (plain stream, compressed, libvirt save image, qcow2 with
snapshots) and a summary of the stream inside.

Exit status: 0; 2 trouble (not a stream or container, bad container, bad stream).

Imports: click at start-up; source, the codec and render when the verb runs.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from .inputs import open_stream, snapshot_option
from .main import QUIET_HELP

if TYPE_CHECKING:
    from .main import App


@click.command("info")
@click.argument("path", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="print the description as JSON (schemas/info.schema.json)")
@click.option("--xml", "show_xml", is_flag=True, help="libvirt save images: print the whole domain XML")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@snapshot_option
@click.pass_obj
def info_cmd(app: App, path: str, as_json: bool, show_xml: bool, quiet: bool, snapshot: str | None) -> None:
    """Say what FILE is and summarize the migration stream it holds.

    \b
    libvirt save images: header version, compression, XML length, was_running, the
      domain's name, machine type and devices (--xml: the whole XML);
    qcow2 images: the snapshot table (id, name, VM state size, date, guest clock)
      and which snapshot is read (--snapshot NAME|ID chooses);
    then the stream: header version, machine, sections, RAM blocks and pages.
    """
    from .. import __version__  # start-up: see main's docstring
    from ..codec.decode import decode
    from ..source.info import describe, describe_unread
    from ..source.qcow2 import SnapshotChoiceError

    try:
        src = open_stream(app, path, snapshot=snapshot, quiet=quiet, seek=False)
    except SnapshotChoiceError as exc:
        if snapshot is not None or show_xml:
            raise
        doc = describe_unread(path, _file_size(path), exc.image, exc.message, __version__)
        _show(app, doc, as_json)
        return
    with src:
        stream = decode(src, ram_runs=False, partial=True)
        doc = describe(src, stream, __version__)
    if show_xml:
        if "libvirt" not in doc:
            raise click.UsageError(f"--xml: {path} is not a libvirt save image")
        sys.stdout.write(doc["libvirt"]["xml"].rstrip("\n") + "\n")
        return
    _show(app, doc, as_json)
    if stream.error:
        sys.exit(2)


def _show(app: App, doc: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from ..render.info import info_view

    for renderable in info_view(doc):
        app.out.print(renderable, soft_wrap=False, markup=False, highlight=False)


def _file_size(path: str) -> int | None:
    import os

    try:
        return os.stat(path).st_size if path != "-" else None
    except OSError:
        return None
