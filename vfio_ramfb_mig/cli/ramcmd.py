"""`vmig ram extract DUMP DIR`: the guest RAM a stream carries, one sparse file per RAM block.

Exit status: 0 written; 2 trouble (bad input, a file in the way, the disk), from the
group's error boundary, with nothing left behind in DIR.

Imports: click at start-up; ram.extract, the codec and the source when the verb runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .inputs import open_stream, snapshot_option
from .main import QUIET_HELP, SuggestingGroup

if TYPE_CHECKING:
    from .main import App


@click.group("ram", cls=SuggestingGroup)
def ram_group() -> None:
    """Work with the guest RAM a migration stream carries."""


@ram_group.command("extract")
@click.argument("dump", metavar="DUMP", type=click.Path(allow_dash=True))
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--block", "blocks", multiple=True, metavar="NAME",
              help="extract only this RAM block (its idstr, e.g. pc.ram); repeatable")
@click.option("--force", is_flag=True, help="replace files of the same names already in DIR")
@click.option("--max-ram", metavar="SIZE", help="write blocks claiming up to SIZE bytes of RAM (e.g. 256G) even "
              "when the stream cannot hold that many pages; default 64G, or $VMIG_MAX_RAM")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@snapshot_option
@click.pass_obj
def extract_cmd(app: App, dump: str, directory: str, blocks: tuple[str, ...], force: bool, max_ram: str | None,
                quiet: bool, snapshot: str | None) -> None:
    """Write each RAM block of DUMP to a sparse file in DIR, as a destination would load it.

    A page's last record wins (iterative streams resend pages), ZERO records clear,
    XBZRLE records apply to the page so far, compressed records (QEMU <= 9.0's compress)
    are inflated; pages no record sets are holes; each file is the block's used_length
    long. mapped-ram streams are read through their bitmaps.

    \b
    File names are made safe from the idstrs:
      pc.ram -> pc.ram.bin, /rom@etc/acpi/tables -> rom@etc_acpi_tables.bin
    DIR/manifest.json maps each block to its file, with used_length and the records
    applied. DIR is created if missing. On any error nothing is left in DIR; existing
    files are kept unless --force. DUMP is any input `vmig decode` reads (compressed,
    a libvirt save image, a qcow2 snapshot with --snapshot, '-' for stdin).

    Blocks that claim more RAM than the stream can hold pages for (a hostile or
    x-ignore-shared stream) are written only up to --max-ram.
    """
    from ..text import printable  # start-up: see main's docstring
    from ..ram.extract import MANIFEST, extract_ram
    from ..ram.limits import parse_size
    from .main import refuse_terminal_stdin

    refuse_terminal_stdin(dump)

    try:
        limit = parse_size(max_ram) if max_ram is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-ram") from None
    with open_stream(app, dump, snapshot=snapshot, quiet=quiet) as src, \
            app.progress(f"extract {dump}", src.size, quiet=quiet) as progress:
        result = extract_ram(src, directory, blocks=blocks, force=force, progress=progress, max_ram=limit)
    for block in result.blocks:
        counts = ", ".join(f"{n} {'normal' if kind == 'page' else kind}" for kind, n in block.records.items() if n)
        app.out.print(f"{printable(block.idstr)} -> {printable(block.file)}  {block.used_length:,} bytes"
                      f"{'  (' + counts + ')' if counts else ''}", markup=False, highlight=False)
    app.out.print(f"wrote {len(result.blocks)} block file(s) and {MANIFEST} in {printable(directory)}",
                  markup=False, highlight=False)
