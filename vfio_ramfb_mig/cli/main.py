"""The `vmig` command: the click group, the error boundary, and the decode/encode verbs.

The group turns every error into one line on stderr and an exit status
(diff(1)'s convention: 0 same/ok, 1 different/refused, 2 trouble); a
traceback is shown only with --debug.

Imports: click, rich, and the package's public layers.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import click
from rich.console import Console

from .. import __version__
from ..codec import jsonform
from ..codec.decode import decode
from ..codec.encode import encode
from ..codec.source import Source
from ..errors import InputError, VmigError
from ..outfile import atomic_output, refuse_same_file
from ..render.errors import error_text
from ..render.theme import THEME
from ..render.tree import stream_tree, summary_table


class ExitStatus(IntEnum):
    OK = 0
    DIFFERENT = 1  # diff found changes / check found a refusal / golden mismatch
    TROUBLE = 2  # usage errors, bad input, cannot encode: one clear line on stderr
    INTERNAL = 70  # a bug; rerun with --debug and report it


def make_console(stderr: bool = False) -> Console:
    """Colour only on a terminal and never with NO_COLOR; a fixed width when not a terminal so
    piped output does not depend on the caller's environment."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, theme=THEME, highlight=False, soft_wrap=not tty,
                   no_color=bool(os.environ.get("NO_COLOR")) or not tty,
                   width=None if tty else int(os.environ.get("COLUMNS", "120")))


@dataclass
class App:
    debug: bool = False
    out: Console = field(default_factory=make_console)
    err: Console = field(default_factory=lambda: make_console(stderr=True))


class VmigGroup(click.Group):
    """The one error boundary: errors become a message on stderr plus an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # `vmig decode big.bin | head`: the reader went away; that is not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(ExitStatus.OK)
        except Exception as err:  # noqa: BLE001 - this is the boundary
            app = ctx.obj if isinstance(ctx.obj, App) else App()
            if app.debug:
                raise
            app.err.print(error_text(err))
            ctx.exit(ExitStatus.TROUBLE if isinstance(err, VmigError) else ExitStatus.INTERNAL)


@click.group(cls=VmigGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmig")
@click.option("--debug", is_flag=True, help="show a traceback for errors")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Decode, encode and diff QEMU migration streams (VFIO and ramfb aware)."""
    ctx.obj = App(debug=debug)


def write_text(app: App, text: str, output: str | None) -> None:
    if output and output != "-":
        with atomic_output(output) as out:
            out.write(text.encode())
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


@cli.command("decode")
@click.argument("source", default="-", metavar="STREAM")
@click.option("--json", "as_json", is_flag=True, help="print the JSON form (see README: JSON contract)")
@click.option("--summary", is_flag=True, help="one table: a row per record")
@click.option("--section", "sections", multiple=True, metavar="NAME",
              help="only sections whose idstr matches (glob or substring); repeatable")
@click.option("--embed", is_flag=True, help="--json: carry RAM pages and big buffers inline (base64), "
                                             "so the JSON rebuilds the stream without the source file")
@click.option("--strict", is_flag=True, help="sections vmig cannot describe are errors, not opaque ranges")
@click.option("--partial", is_flag=True, help="on an error, still show what was decoded before it (exit 2)")
@click.option("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
@click.pass_obj
def decode_cmd(app: App, source: str, as_json: bool, summary: bool, sections: tuple[str, ...], embed: bool,
               strict: bool, partial: bool, output: str | None) -> None:
    """Decode a migration stream: every record, section, subsection and field, with offsets.

    STREAM is a file written by `migrate file:...` / `exec:cat > ...` (gzip, xz and bzip2
    are undone transparently) or '-' for stdin.
    """
    with Source.open(source) as src:
        stream = decode(src, strict=strict, partial=partial)
        # a JSON document of a stream that cannot be re-read (stdin, compressed) must carry its bytes
        embed = embed or source == "-" or not _plain_file(source)
        if as_json:
            records = stream
            if sections:
                from ..render.tree import selected  # noqa: PLC0415

                records = type(stream)(tuple(r for r in stream.records if getattr(r, "section_id", None) is None
                                             or selected(r, sections)), stream.size, stream.source,
                                       stream.warnings, stream.error)
            text = jsonform.dumps(records, embed=embed, source=src)
            write_text(app, text, output)
        else:
            renderable = summary_table(stream, sections=sections) if summary else stream_tree(stream, sections=sections)
            if output:
                console = Console(record=True, width=120, theme=THEME, no_color=True, file=open(os.devnull, "w"))
                console.print(renderable)
                write_text(app, console.export_text(), output)
            else:
                app.out.print(renderable)
        for warning in stream.warnings:
            if not as_json:
                app.err.print(f"vmig: warning: {warning}", style="vmig.warn", markup=False)
        if stream.error:
            app.err.print(f"vmig: error: {stream.error}", style="vmig.error", markup=False)
            sys.exit(ExitStatus.TROUBLE)


def _plain_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return False
    return not (head.startswith(b"\x1f\x8b") or head.startswith(b"\xfd7zXZ") or head.startswith(b"BZh"))


@cli.command("encode")
@click.option("--from-json", "from_json", metavar="FILE", help="a `vmig decode --json` document ('-' for stdin)")
@click.option("--source", "source_path", metavar="STREAM",
              help="the stream the JSON refers to for RAM pages and big buffers (default: its source.path)")
@click.option("-o", "--output", required=True, metavar="FILE", help="where to write the stream ('-' for stdout)")
@click.pass_obj
def encode_cmd(app: App, from_json: str | None, source_path: str | None, output: str) -> None:
    """Build a migration stream from a decoded JSON document."""
    if from_json is None:
        raise click.UsageError("give --from-json FILE (or, for device state, --machine; see `vmig encode-device`)")
    if output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write a binary stream to a terminal; use -o FILE or a pipe")
    try:
        text = sys.stdin.read() if from_json == "-" else open(from_json, encoding="utf-8").read()  # noqa: SIM115
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {from_json}: {exc}") from exc
    stream = jsonform.loads(text)
    source_path = source_path or stream.source
    inputs = tuple(p for p in (from_json, source_path) if p)
    refuse_same_file(output, inputs)
    source = Source.open(source_path) if source_path and source_path != "-" and os.path.exists(source_path) else None
    if source is not None and stream.size and source.size != stream.size:
        raise InputError(f"source {source_path} has {source.size} bytes, but the JSON was decoded from "
                         f"{stream.size} bytes", hint="give the stream it was decoded from with --source")
    try:
        if output == "-":
            encode(stream, sys.stdout.buffer, source)
        else:
            with atomic_output(output) as out:
                encode(stream, out, source)
    finally:
        if source is not None:
            source.close()


def main() -> None:
    cli(prog_name="vmig")
