"""The `vmig` command: the click group, the error boundary, and the decode/encode verbs.

The group turns every error into one line on stderr and an exit status
(diff(1)'s convention: 0 same/ok, 1 different/refused, 2 trouble); a
traceback is shown only with --debug.

Imports: click, rich, and the package's public layers.
"""

from __future__ import annotations

import json
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
from ..devstream import DeviceRequest, build_device_stream
from ..errors import InputError, JsonFormError, VmigError
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
    plain = bool(os.environ.get("NO_COLOR")) or not tty
    return Console(file=stream, theme=THEME, highlight=False, soft_wrap=not tty, no_color=plain,
                   color_system=None if plain else "auto",
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
    if output:
        refuse_same_file(output, (source,))
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
@click.option("--from-json", "from_json", metavar="FILE", help="rebuild a stream from a `vmig decode --json` document")
@click.option("--source", "source_path", metavar="STREAM",
              help="--from-json: the stream the JSON refers to for RAM pages and big buffers "
                   "(default: its source.path)")
@click.option("--machine", metavar="TYPE", help="build device state for this machine type (pc-q35-8.2, pc-8.1, q35...)")
@click.option("--device", type=click.Choice(["vfio-pci", "ramfb"]), default="vfio-pci", show_default=True,
              help="vfio-pci means vfio-pci-nohotplug (the type with ramfb); ramfb is the standalone -device ramfb")
@click.option("--ramfb/--no-ramfb", default=None, help="vfio-pci: the ramfb property (QEMU default off)")
@click.option("--x-ramfb-migrate", "x_ramfb_migrate", type=click.Choice(["on", "off", "auto"]),
              help="vfio-pci: default auto, which machine compat sets to off on <= 8.1")
@click.option("--enable-migration", type=click.Choice(["on", "off", "auto"]), help="vfio-pci: default auto")
@click.option("--display", type=click.Choice(["on", "off", "auto"]),
              help="vfio-pci: default off in QEMU; --ramfb implies on unless given")
@click.option("--x-migrate", type=click.Choice(["on", "off"]), help="ramfb: default on, off by compat on <= 8.1")
@click.option("--global", "global_props", multiple=True, metavar="DRIVER.PROP=VALUE",
              help="like QEMU's -global; repeatable")
@click.option("--state", "state_path", metavar="FILE",
              help="device state: the JSON `vmig decode --json` prints for the device's section (or a whole "
                   "decode document); missing values take documented defaults")
@click.option("--addr", metavar="DDDD:BB:SS.F", help="vfio-pci: PCI address in the idstr (default: first free slot)")
@click.option("-o", "--output", required=True, metavar="FILE", help="where to write the stream ('-' for stdout)")
@click.pass_obj
def encode_cmd(app: App, from_json: str | None, source_path: str | None, machine: str | None, device: str,
               ramfb: bool | None, x_ramfb_migrate: str | None, enable_migration: str | None, display: str | None,
               x_migrate: str | None, global_props: tuple[str, ...], state_path: str | None, addr: str | None,
               output: str) -> None:
    """Build a migration stream: from a decoded JSON document, or device state for a machine type.

    \b
    vmig encode --from-json dump.json -o dump.bin
    vmig encode --machine pc-q35-8.2 --ramfb -o vfio.bin           # carries VFIODisplay
    vmig encode --machine pc-8.1 --ramfb -o vfio.bin               # compat: x-ramfb-migrate=off
    vmig encode --machine pc-q35-8.2 --device ramfb --state ramfb.json -o ramfb.bin
    """
    if (from_json is None) == (machine is None):
        raise click.UsageError("give exactly one of --from-json FILE or --machine TYPE")
    if output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write a binary stream to a terminal; use -o FILE or a pipe")
    if machine is not None:
        _encode_device(app, DeviceRequest(
            machine=machine, device=device, ramfb=ramfb, x_ramfb_migrate=x_ramfb_migrate,
            enable_migration=enable_migration, display=display,
            x_migrate=None if x_migrate is None else x_migrate == "on", global_props=global_props,
            state=_read_json(state_path) if state_path else None, addr=addr), output, state_path)
        return
    assert from_json is not None
    stream = jsonform.loads(_read_text(from_json))
    source_path = source_path or stream.source
    refuse_same_file(output, tuple(p for p in (from_json, source_path) if p))
    source = Source.open(source_path) if source_path and source_path != "-" and os.path.exists(source_path) else None
    try:
        if source is not None and stream.size and source.size != stream.size:
            raise InputError(f"source {source_path} has {source.size} bytes, but the JSON was decoded from "
                             f"{stream.size} bytes", hint="give the stream it was decoded from with --source")
        if output == "-":
            encode(stream, sys.stdout.buffer, source)
        else:
            with atomic_output(output) as out:
                encode(stream, out, source)
    finally:
        if source is not None:
            source.close()


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _read_json(path: str) -> Any:
    try:
        return json.loads(_read_text(path))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise JsonFormError(f"{path} is not valid JSON: {exc}") from exc


def _encode_device(app: App, request: DeviceRequest, output: str, state_path: str | None) -> None:
    if state_path:
        refuse_same_file(output, (state_path,))
    built = build_device_stream(request)
    for decision in (*built.notes, *built.realize.decisions):
        app.err.print(f"vmig: {decision.rule}: {decision.text}", style="vmig.dim", markup=False)
    for warning in built.realize.warnings:
        app.err.print(f"vmig: warning (as QEMU prints it): {warning}", style="vmig.warn", markup=False)
    if output == "-":
        sys.stdout.buffer.write(built.data)
        sys.stdout.flush()
    else:
        with atomic_output(output) as out:
            out.write(built.data)
    names = [f"{s.type.removeprefix('section_').upper()} {s.idstr}" for s in built.stream.sections]
    app.err.print(f"vmig: wrote {len(built.data)} bytes for {built.realize.machine.name}: "
                  f"{', '.join(names) or 'no device section'}", markup=False)


def main() -> None:
    cli(prog_name="vmig")


# verbs that live in their own modules register here
from .machinescmd import machines_cmd  # noqa: E402

cli.add_command(machines_cmd)

from .goldencmd import golden_cmd  # noqa: E402

cli.add_command(golden_cmd)

from .diffcmd import check_cmd, diff_cmd  # noqa: E402

cli.add_command(diff_cmd)
cli.add_command(check_cmd)
