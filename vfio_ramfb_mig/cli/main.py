"""The `vmig` command: the click group, the error boundary, and the decode/encode verbs.

The group turns every error into one line on stderr and an exit status
(diff(1)'s convention: 0 same/ok, 1 different/refused, 2 trouble); a
traceback is shown only with --debug.

Start-up is kept short: this module imports only click, the standard library and the
library's small modules (version, errors, notices).
The other verbs are imported when one of them runs (LazyGroup, COMMANDS), every
verb imports what it uses when it runs, and the consoles (rich) are made on first
use, so `vmig --help` and `vmig decode --help` load neither rich, construct nor
the codec.

Imports: click; the package's layers inside the commands.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import IO, TYPE_CHECKING, Any

import click

from .. import notices
from ..version import __version__
from ..errors import VmigError
from .inputs import open_stream, snapshot_option

if TYPE_CHECKING:
    from rich.console import Console

    from ..devstream import DeviceRequest


#: a copy into temp space this large is said on stderr (App.say_copied)
SPOOL_NOTICE = 64 << 20
#: RAM page runs `decode --json` keeps from its decode (~250 bytes each: 16 MiB). A stream with
#: fewer (a GiB guest has some 30,000) is written from them; the RAM sections past them are walked
#: again as the document is written: a second walk costs time, keeping millions costs memory.
JSON_RUNS_KEPT = 1 << 16


class ExitStatus(IntEnum):
    OK = 0
    DIFFERENT = 1  # diff found changes / check found a refusal / golden mismatch
    TROUBLE = 2  # usage errors, bad input, cannot encode: one clear line on stderr
    INTERNAL = 70  # a bug; rerun with --debug and report it
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it; SIGTERM gives 143


@dataclass
class App:
    """What every verb gets (click's ctx.obj): the options of the group and the two consoles."""

    debug: bool = False
    quiet: bool = False
    color: bool | None = None  # --color / --no-color; None: cli.console decides
    _out: Console | None = field(default=None, repr=False)
    _err: Console | None = field(default=None, repr=False)

    @property
    def out(self) -> Console:
        if self._out is None:
            from .console import make_console

            self._out = make_console(color=self.color)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            from .console import make_console

            self._err = make_console(stderr=True, color=self.color)
        return self._err

    def styles(self, stream: IO[str]) -> bool:
        """Whether what goes to `stream` is printed through rich (a terminal, or colour asked
        for); else as plain text, the same characters, without loading rich."""
        from .console import color_wanted, is_terminal

        return is_terminal(stream) or color_wanted(stream, self.color)

    @property
    def out_is_terminal(self) -> bool:
        from .console import is_terminal

        return is_terminal(sys.stdout)

    def say_copied(self, name: str, copied: int, limit: int) -> None:
        """notices.copied: an input a verb goes back over was copied whole into temp space; a copy
        of SPOOL_NOTICE or more is said in one line (smaller ones are quick and unremarkable)."""
        if copied >= SPOOL_NOTICE:
            from ..source.limits import SPOOL_ENV, size_text

            self.err.print(f"vmig: {name} was copied into a temporary file to be read by offset "
                           f"({size_text(copied)} of at most {size_text(limit)}: {SPOOL_ENV})",
                           style="vmig.dim", markup=False, highlight=False)

    def progress(self, description: str, total: int | None, *, quiet: bool = False
                 ) -> AbstractContextManager[Callable[..., None]]:
        """A progress bar on stderr (render.progress.progress_bar): only when stderr is a
        terminal and neither `vmig --quiet` nor the verb's own --quiet was given."""
        from ..render.progress import progress_bar

        enabled = not (self.quiet or quiet) and stderr_is_terminal()
        return progress_bar(lambda: self.err, total, description, enabled=enabled)


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (a function, so tests can say it is one)."""
    from .console import is_terminal

    return is_terminal(sys.stderr)


#: the verbs that live in their own modules: name -> ("module:attribute", the one-line help
#: `vmig --help` shows for it without importing the module; the docstring's first sentence,
#: tests/test_cli_startup.py keeps the two the same)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("vfio_ramfb_mig.cli.diffcmd:check_cmd",
              "Would a destination QEMU load STREAM? If not, which rule fails and what QEMU prints."),
    "diff": ("vfio_ramfb_mig.cli.diffcmd:diff_cmd",
             "Show what differs between two migration streams A (old) and B (new)."),
    "golden": ("vfio_ramfb_mig.cli.goldencmd:golden_cmd",
               "Golden-file checks for CI: compare streams with checked-in canonical summaries."),
    "info": ("vfio_ramfb_mig.cli.infocmd:info_cmd",
             "Say what FILE is and summarize the migration stream it holds."),
    "machines": ("vfio_ramfb_mig.cli.machinescmd:machines_cmd",
                 "List machine types, or show NAME's effective compat properties and where each came from."),
    "profile": ("vfio_ramfb_mig.cli.profilecmd:profile_cmd",
                "Describe a destination by running it: vmig profile -o dest.json -- qemu-system-aarch64 -M virt-8.2 ..."),
    "ram": ("vfio_ramfb_mig.cli.ramcmd:ram_group", "Work with the guest RAM a migration stream carries."),
    "report": ("vfio_ramfb_mig.cli.screencmd:report_cmd",
               "Write one self-contained HTML page about STREAM (and its differences with B)."),
    "screenshot": ("vfio_ramfb_mig.cli.screencmd:screenshot_cmd",
                   "Draw the guest's screen from the ramfb state and guest RAM a migration stream carries."),
    "schema": ("vfio_ramfb_mig.cli.schemacmd:schema_cmd",
               "Print the JSON Schema of a --json output (NAME), or list the outputs that have one."),
}


class SuggestingGroup(click.Group):
    """A group that answers a mistyped command with the commands it has, closest first."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            known = self.list_commands(ctx)
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise click.UsageError(f"No such command {name!r}.{hint} Commands: {', '.join(known)}.", ctx)
        return super().resolve_command(ctx, args)


class LazyGroup(SuggestingGroup):
    """A group whose commands in `lazy` are imported only when one of them is looked up
    to run (or for its own --help); listing them and `--help` use the table's help."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def load(self, cmd_name: str) -> click.Command:
        module_name, _, attr = self.lazy[cmd_name][0].partition(":")
        # __import__, not importlib.import_module: `python -X importtime` then shows the import
        command = getattr(__import__(module_name, fromlist=(attr,)), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attr} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own layout, with the short help of commands not loaded yet from the table."""
        names = [n for n in self.list_commands(ctx) if n in self.lazy or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:
                # a stand-in shortens the table's help exactly as click shortens a docstring
                rows.append((name, click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised in the main thread like Ctrl-C's KeyboardInterrupt, so
    the work unwinds (output files remove their temporary file) before vmig exits."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


#: signals that end vmig the way Ctrl-C does (exit 128 + the signal's number)
_ENDING_SIGNALS = ("SIGTERM", "SIGHUP")


#: options of the group that may also be given after the verb (`vmig decode x.bin --debug`)
GLOBAL_FLAGS = ("--debug", "--color", "--no-color")


class VmigGroup(LazyGroup):
    """The one error boundary: errors become a message on stderr plus an exit status."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # a global flag after the verb is moved before it (not past '--', where it is an argument)
        end = args.index("--") if "--" in args else len(args)
        lifted = [a for a in args[:end] if a in GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in GLOBAL_FLAGS] + args[end:]
        return super().parse_args(ctx, lifted + rest)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        import signal
        import threading

        from .console import fit_streams

        fit_streams()

        previous = {}
        if threading.current_thread() is threading.main_thread():
            for name in _ENDING_SIGNALS:
                number = getattr(signal, name)
                previous[number] = signal.signal(number, _terminate)
        try:
            try:
                return super().main(*args, **kwargs)
            finally:
                # what is still buffered goes out now, where a full disk can be said in one line
                # (the interpreter's own flush at exit would print a traceback-like warning)
                sys.stdout.flush()
        except OSError as err:
            if not _write_failed(err):
                raise
            sys.exit(ExitStatus.TROUBLE)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            # Ctrl-C: the work has unwound (no partial output file); one line, the shell's status
            sys.stderr.write("vmig: interrupted\n")
            ctx.exit(ExitStatus.INTERRUPTED)
        except Terminated as stop:
            import signal

            sys.stderr.write(f"vmig: stopped by {signal.Signals(stop.signum).name}\n")
            ctx.exit(128 + stop.signum)
        except BrokenPipeError:
            # `vmig decode big.bin | head`: the reader went away; that is not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(ExitStatus.OK)
        except Exception as err:
            from ..render.errors import error_text

            app = ctx.obj if isinstance(ctx.obj, App) else App()
            if app.debug:
                raise
            if _write_failed(err):
                ctx.exit(ExitStatus.TROUBLE)
            app.err.print(error_text(err))
            ctx.exit(ExitStatus.TROUBLE if isinstance(err, VmigError) else ExitStatus.INTERNAL)


def _write_failed(err: BaseException) -> bool:
    """If `err` is a write that failed for want of space (stdout redirected to a full disk or
    /dev/full): say so in one line and return True. That is the environment, not a bug in vmig;
    the files vmig writes itself (-o, goldens) say it through outfile, naming the file."""
    from ..outfile import WRITE_ERRNOS

    if not isinstance(err, OSError) or err.errno not in WRITE_ERRNOS:
        return False
    try:
        sys.stdout.flush()
        what = "the output"
    except OSError:  # what stdout still holds cannot go out either: it was stdout
        what = "stdout"
        # nothing more can reach it; the interpreter's last flush must not fail again at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    sys.stderr.write(f"vmig: error: cannot write {what}: {err.strerror}\n")
    return True


QUIET_HELP = "no progress bar on stderr (drawn only on a terminal)"
#: a file name argument: no check here (vmig's own errors say what is wrong with it), but shells
#: complete it as a file name (click's completion; see README, Shell completion)
FILE = click.Path(allow_dash=True)


def refuse_terminal_stdin(*paths: str | None) -> None:
    """'-' (stdin) with nothing piped in: usage, not a silent wait on the keyboard."""
    from .console import is_terminal

    if "-" in paths and is_terminal(sys.stdin):
        raise click.UsageError("'-' reads the stream from stdin, but stdin is a terminal: pipe one in or give a file")


def complete_machine(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of a machine type name (pc-q35-8.2, pc-i440fx-7.2, ...)."""
    from ..compat.machines import machine_names

    return [name for name in machine_names() if name.startswith(incomplete)]


@click.group(cls=VmigGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, _, on: _version(ctx, on),
              help="show vmig's version and the QEMU builds whose knowledge it bundles, and exit")
@click.option("--debug", is_flag=True, help="show a traceback for errors (also after the command)")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@click.option("--color/--no-color", "color", default=None,
              help="colour even when piped / never colour (default: on a terminal, unless NO_COLOR; "
                   "FORCE_COLOR forces it)")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool, color: bool | None) -> None:
    """Decode, encode and diff QEMU migration streams (VFIO and ramfb aware)."""
    ctx.obj = App(debug=debug, quiet=quiet, color=color)
    notices.copied = ctx.obj.say_copied  # every verb, whichever layer opens its inputs


def version_text() -> str:
    """`vmig --version`: the version, and which QEMU builds the bundled data came from."""
    import gzip
    import json
    from importlib.resources import files

    lines = [f"vmig {__version__}"]
    try:
        data = json.loads(gzip.decompress(files("vfio_ramfb_mig").joinpath("data", "machines.json.gz").read_bytes()))
        builds = data["builds"]
    except (OSError, ValueError, KeyError):  # a broken install: say so, do not fail --version
        return "\n".join(lines + ["bundled QEMU knowledge: unreadable (data/machines.json.gz)"])
    lines.append("bundled QEMU knowledge (machine types, compat properties, stock sections, -dump-vmstate):")
    for build in builds:
        lines.append(f"  QEMU {build['qemu']} {build['arch']}  {build.get('package') or 'upstream build'}")
    return "\n".join(lines)


def _version(ctx: click.Context, on: bool) -> None:
    if on and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


def write_text(app: App, text: str, output: str | None) -> None:
    if output and output != "-":
        from ..outfile import write_output

        write_output(output, text.encode())
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def write_chunks(chunks: Iterable[str], output: str | None) -> None:
    """Write text made piece by piece (decode --json: a record at a time), so what is held at
    once is a piece, not the whole text; a file is still written whole or not at all."""
    from ..outfile import output_file

    sys.stdout.flush()
    with output_file(output or "-") as out:
        for chunk in chunks:
            out.write(chunk.encode())


@cli.command("decode")
@click.argument("source", default="-", metavar="STREAM", type=FILE)
@click.option("--json", "as_json", is_flag=True, help="print the JSON form (see README: JSON contract)")
@click.option("--summary", is_flag=True, help="one table: a row per record")
@click.option("--pages", is_flag=True, help="one line per RAM page record: its offset, section, block, page offset "
                                             "and kind (with --json: JSON lines)")
@click.option("--section", "sections", multiple=True, metavar="NAME",
              help="only sections whose idstr matches (glob or substring); repeatable")
@click.option("--embed", is_flag=True, help="--json: carry RAM pages and big buffers inline (base64), "
                                             "so the JSON rebuilds the stream without the source file")
@click.option("--full", is_flag=True, help="show every array item and byte (the tree shows the first 8 items "
                                            "and 16 bytes of each, and says how many more there are)")
@click.option("--strict", is_flag=True, help="sections vmig cannot describe are errors, not opaque ranges")
@click.option("--partial", is_flag=True, help="on an error, still show what was decoded before it (exit 2)")
@click.option("-o", "--output", metavar="FILE", type=FILE, help="write to FILE (atomically) instead of stdout")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@snapshot_option
@click.pass_obj
def decode_cmd(app: App, source: str, as_json: bool, summary: bool, pages: bool, sections: tuple[str, ...],
               embed: bool, full: bool, strict: bool, partial: bool, output: str | None, quiet: bool,
               snapshot: str | None) -> None:
    """Decode a migration stream: every record, section, subsection and field, with offsets.

    STREAM is a file written by `migrate file:...` / `exec:cat > ...`, a libvirt save
    image (`virsh save`), a qcow2 image with internal snapshots (`savevm`; --snapshot
    picks one), any of these compressed (gzip, xz, bzip2, zstd, lzop), or '-' for stdin.
    """
    from ..codec.decode import decode  # see the module docstring: start-up
    from ..outfile import check_output
    from .console import is_terminal

    if source == "-" and is_terminal(sys.stdin):
        # nothing piped in: a user who typed `vmig decode` wants to know how, not a silent wait
        raise click.UsageError("give a STREAM file, or pipe one in ('-' reads stdin, but stdin is a terminal)")
    if output:
        check_output(output, (source,))
    if pages:
        _page_list(app, source, as_json, output, quiet, snapshot, summary=summary, sections=sections,
                   strict=strict, partial=partial, full=full)
        return
    # the tree and the summary read the stream once, forward: a pipe or compressed input is read
    # through a window of temp space; --json may go back for page bytes (--embed, stdin)
    with open_stream(app, source, snapshot=snapshot, quiet=quiet, seek=as_json) as src:
        with app.progress(f"decode {source}", src.size if src.complete else None, quiet=quiet) as progress:
            # the tree and the summary need only page counts per block, so RAM page runs are
            # kept only for --json (which lists them), and only up to JSON_RUNS_KEPT: the JSON
            # writer walks the sections past them again (RamBody.every_item), so memory stays flat
            stream = decode(src, strict=strict, partial=partial, ram_runs=as_json, ram_runs_limit=JSON_RUNS_KEPT,
                            progress=progress)
        if sections:
            _refuse_unmatched(stream, sections)
        # a JSON document of a stream that cannot be read again (stdin, a pipe) must carry its bytes
        embed = embed or src.file_size is None
        if as_json:
            from ..codec import jsonform

            write_chunks(jsonform.iter_dumps(stream, embed=embed, source=src, sections=sections), output)
        elif not summary and (output or not app.styles(sys.stdout)):
            # the tree as plain text: exactly what rich prints without styles, without loading rich
            from ..render.tree import stream_tree
            from .console import unicode_ok

            tree = stream_tree(stream, sections=sections, full=full)
            write_text(app, tree.plain(ascii_only=not output and not unicode_ok(sys.stdout)), output)
        else:
            from ..render.tree import stream_tree, summary_table

            renderable = (summary_table(stream, sections=sections) if summary
                          else stream_tree(stream, sections=sections, full=full))
            if output:
                from ..render.tree import plain_text
                from .console import UNWRAPPED

                write_text(app, plain_text(renderable, UNWRAPPED), output)
            else:
                app.out.print(renderable)
        for warning in stream.warnings:
            if not as_json:
                app.err.print(f"vmig: warning: {warning}", style="vmig.warn", markup=False)
        if stream.error:
            app.err.print(f"vmig: error: {stream.error}", style="vmig.error", markup=False)
            sys.exit(ExitStatus.TROUBLE)


def _refuse_unmatched(stream: Any, patterns: tuple[str, ...]) -> None:
    """--section that matches no section: exit 1 (like grep), naming the sections the stream has."""
    from ..naming import unmatched_patterns
    from ..text import printable

    idstrs = [s.idstr for s in stream.sections]
    unmatched = unmatched_patterns(idstrs, patterns)
    if unmatched:
        names = list(dict.fromkeys(printable(i) for i in idstrs))
        sys.stderr.write(f"vmig: no section matches {', '.join(map(repr, unmatched))}; the stream has: "
                         f"{', '.join(names) or 'no sections'}\n")
        sys.exit(ExitStatus.DIFFERENT)


def _page_list(app: App, source: str, as_json: bool, output: str | None, quiet: bool, snapshot: str | None,
               **others: Any) -> None:
    """`vmig decode --pages`: pages.write_page_list, to stdout or atomically to -o FILE."""
    from ..outfile import output_file
    from ..ram.listing import write_page_list

    given = [f"--{name}" for name, value in others.items() if value]
    if given:
        raise click.UsageError(f"--pages lists every page record; it does not take {', '.join(given)}")
    with open_stream(app, source, snapshot=snapshot, quiet=quiet) as src, \
            app.progress(f"decode --pages {source}", 2 * src.size, quiet=quiet) as progress:
        if output and output != "-":
            with output_file(output) as out:
                write_page_list(src, out, as_json, progress)
        else:
            write_page_list(src, sys.stdout, as_json, progress)


@cli.command("encode")
@click.option("--from-json", "from_json", metavar="FILE", type=FILE, help="rebuild a stream from a `vmig decode --json` document")
@click.option("--source", "source_path", metavar="STREAM", type=FILE,
              help="--from-json: the stream the JSON refers to for RAM pages and big buffers "
                   "(default: its source.path)")
@click.option("--machine", metavar="TYPE", shell_complete=complete_machine, help="build device state for this machine type (pc-q35-8.2, pc-8.1, q35...)")
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
@click.option("--state", "state_path", metavar="FILE", type=FILE,
              help="device state: the JSON `vmig decode --json` prints for the device's section (or a whole "
                   "decode document); missing values take documented defaults")
@click.option("--addr", metavar="DDDD:BB:SS.F", help="vfio-pci: PCI address in the idstr (default: first free slot)")
@click.option("-o", "--output", required=True, metavar="FILE", type=FILE, help="where to write the stream ('-' for stdout)")
@click.option("--bare", is_flag=True, help="--from-json: write only the migration stream, without the container "
                                            "(libvirt save image, compression) the JSON says it came in")
@click.option("-q", "--quiet", is_flag=True, help="--machine: do not list the rules that decided each property "
                                                   "(QEMU's warnings are still shown)")
@click.pass_obj
def encode_cmd(app: App, from_json: str | None, source_path: str | None, machine: str | None, device: str,
               ramfb: bool | None, x_ramfb_migrate: str | None, enable_migration: str | None, display: str | None,
               x_migrate: str | None, global_props: tuple[str, ...], state_path: str | None, addr: str | None,
               output: str, bare: bool, quiet: bool) -> None:
    """Build a migration stream: from a decoded JSON document, or device state for a machine type.

    From JSON, the container the stream was decoded from is rebuilt around it: a libvirt
    save image (the same header and XML; the payload compressed as it was), gzip/xz/...
    compression; a qcow2 snapshot's stream is written bare. --bare writes only the stream.

    \b
    vmig encode --from-json dump.json -o dump.bin
    vmig encode --machine pc-q35-8.2 --ramfb -o vfio.bin           # carries VFIODisplay
    vmig encode --machine pc-8.1 --ramfb -o vfio.bin               # compat: x-ramfb-migrate=off
    vmig encode --machine pc-q35-8.2 --device ramfb --state ramfb.json -o ramfb.bin
    """
    from ..errors import InputError  # see the module docstring: start-up
    from ..outfile import check_output

    if (from_json is None) == (machine is None):
        raise click.UsageError("give exactly one of --from-json FILE or --machine TYPE")
    if output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write a binary stream to a terminal; use -o FILE or a pipe")
    check_output(output, tuple(p for p in (from_json, state_path, source_path) if p))
    refuse_terminal_stdin(from_json, state_path)
    if machine is not None:
        from ..devstream import DeviceRequest

        _encode_device(app, DeviceRequest(
            machine=machine, device=device, ramfb=ramfb, x_ramfb_migrate=x_ramfb_migrate,
            enable_migration=enable_migration, display=display,
            x_migrate=None if x_migrate is None else x_migrate == "on", global_props=global_props,
            state=_read_json(state_path) if state_path else None, addr=addr), output, quiet=quiet or app.quiet)
        return
    assert from_json is not None
    from ..codec.fromjson import encode_document

    encode_document(from_json, output, source_path=source_path, bare=bare,
                    note=lambda text: app.err.print(f"vmig: {text}", style="vmig.dim", markup=False),
                    check_output=lambda inputs: check_output(output, inputs))


def _read_json(path: str) -> Any:
    from ..errors import JsonFormError
    from ..textin import read_json

    return read_json(path, error=JsonFormError)


def _encode_device(app: App, request: DeviceRequest, output: str, *, quiet: bool) -> None:
    from ..devstream import build_device_stream
    from ..outfile import write_output

    built = build_device_stream(request)
    for decision in () if quiet else (*built.notes, *built.realize.decisions):
        # a rule's name says where a property came from; vmig's own notes need no second "vmig:"
        where = "" if decision.rule == "vmig" else f"{decision.rule}: "
        app.err.print(f"vmig: {where}{decision.text}", style="vmig.dim", markup=False)
    for warning in built.realize.warnings:
        app.err.print(f"vmig: warning (as QEMU prints it): {warning}", style="vmig.warn", markup=False)
    write_output(output, built.data)
    if quiet:
        return
    names = [f"{s.type.removeprefix('section_').upper()} {s.idstr}" for s in built.stream.sections]
    app.err.print(f"vmig: wrote {len(built.data)} bytes for {built.realize.machine.name}: "
                  f"{', '.join(names) or 'no device section'}", markup=False)


def main() -> None:
    cli(prog_name="vmig")

