"""`vmig screenshot` and `vmig report`: the guest's screen, and the one-page HTML report.

Imports: click; screen, render (screenview, report), outfile inside the commands.
"""

from __future__ import annotations

import sys

import click

from .inputs import SNAPSHOT_HELP, open_stream, snapshots_for
from .main import App, write_text


def _save_png(image: object, output: str) -> None:
    from ..errors import InputError
    from ..outfile import output_file

    if output == "-":
        if sys.stdout.isatty():
            raise InputError("refusing to write a PNG to a terminal; use -o FILE or a pipe")
        image.save(sys.stdout.buffer, format="PNG")  # type: ignore[attr-defined]
        sys.stdout.flush()
        return
    with output_file(output) as out:
        image.save(out, format="PNG")  # type: ignore[attr-defined]


@click.command("screenshot")
@click.argument("streams", nargs=-1, required=True, metavar="STREAM [B]", type=click.Path(allow_dash=True))
@click.option("-o", "--output", metavar="FILE", type=click.Path(allow_dash=True), help="write the picture as PNG (atomically; '-' for stdout)")
@click.option("--device", metavar="NAME", help="the display to draw when there are several: ramfb-dev, or a "
                                                "VFIO device's idstr (glob or substring)")
@click.option("--snapshot", "snapshots", multiple=True, metavar="NAME|ID",
              help=SNAPSHOT_HELP + "; once for every stream, or once per stream in order")
@click.pass_obj
def screenshot_cmd(app: App, streams: tuple[str, ...], output: str | None, device: str | None,
                   snapshots: tuple[str, ...]) -> None:
    """Draw the guest's screen from the ramfb state and guest RAM a migration stream carries.

    The picture is what QEMU's screendump shows on a destination that loaded the stream.
    With two streams, A and B side by side with their differences marked. On a terminal
    and without -o, a preview in the terminal.

    \b
    vmig screenshot vm.bin -o screen.png
    vmig screenshot before.bin after.bin -o diff.png
    """
    from ..render.screenview import ScreenPreview, geometry_line
    from ..screen import screenshot
    from ..screen.compare import screens_picture

    if len(streams) > 2:
        raise click.UsageError("give one stream, or two to compare")
    if output is None and not sys.stdout.isatty():
        raise click.UsageError("give -o FILE (or -o - for the PNG on stdout); the preview is for terminals")
    if output is None and app.out.color_system is None:
        raise click.UsageError("the preview needs colours, and this terminal shows none (NO_COLOR, or TERM=dumb); "
                               "give -o FILE")
    screens = []
    for path, snapshot in zip(streams, snapshots_for(streams, snapshots)):
        with open_stream(app, path, snapshot=snapshot) as src:
            screens.append(screenshot(src, device=device))
    lines = [geometry_line(s.display.name, s.cfg.words(), s.missing_words()) for s in screens]
    picture, diff = screens_picture([s.image for s in screens])
    if diff is not None:
        lines.append(diff.words())
    info = app.err if output == "-" else app.out
    for line in lines:
        info.print(line)
    if output is None:
        app.out.print(ScreenPreview(picture, reserve=len(lines) + 1))
        return
    _save_png(picture, output)
    if output != "-":
        info.print(f"wrote {output} ({picture.width}x{picture.height})", style="vmig.dim", markup=False)


@click.command("report")
@click.argument("stream", metavar="STREAM", type=click.Path(allow_dash=True))
@click.argument("other", required=False, metavar="[B]", type=click.Path(allow_dash=True))
@click.option("-o", "--output", required=True, metavar="FILE", type=click.Path(allow_dash=True), help="the HTML file to write (atomically; '-': stdout)")
@click.option("--device", metavar="NAME", help="the display to draw when there are several")
@click.option("--snapshot", "snapshots", multiple=True, metavar="NAME|ID",
              help=SNAPSHOT_HELP + "; once for both streams, or twice: STREAM's then B's")
@click.pass_obj
def report_cmd(app: App, stream: str, other: str | None, output: str, device: str | None,
               snapshots: tuple[str, ...]) -> None:
    """Write one self-contained HTML page about STREAM (and its differences with B).

    The page needs no network: header and machine, the record tree with offsets and a
    search box, a hexdump of the selected record with its fields marked, a map of each
    RAM block, the VFIO and ramfb state in words, the screen, and with B the diff.
    """
    from ..outfile import refuse_same_file
    from ..render.report.collect import build_report

    refuse_same_file(output, tuple(p for p in (stream, other) if p))
    paths = tuple(p for p in (stream, other) if p)
    page = build_report(stream, other, device=device, snapshots=snapshots_for(paths, snapshots))
    write_text(app, page, output)
    if output != "-":
        app.err.print(f"vmig: wrote {output} ({len(page.encode()):,} bytes)", style="vmig.dim", markup=False)
