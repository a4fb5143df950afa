"""`vmig profile -o FILE -- QEMU ARGS...`: describe a real destination QEMU by running it."""

from __future__ import annotations

import json

import click


@click.command("profile", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-o", "--output", required=True, metavar="FILE", type=click.Path(allow_dash=True), help="where to write the profile (JSON, atomically)")
@click.option("--timeout", type=click.FloatRange(min=1), default=60, show_default=True, metavar="SECONDS",
              help="the longest vmig waits for each of the QEMU runs")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True, metavar="-- QEMU [ARGS]...")
@click.pass_obj
def profile_cmd(app, output: str, timeout: float, command: tuple[str, ...]) -> None:
    """Describe a destination by running it: vmig profile -o dest.json -- qemu-system-aarch64 -M virt-8.2 ...

    The QEMU command is the destination's own (without -incoming: vmig adds -incoming defer,
    -S and a private QMP socket to ask it, and -display none unless the command chooses a
    display; it lets QEMU save its own paused state to learn the sections and RAM blocks it
    has, and runs it with -dump-vmstate for its schema). Every
    QEMU vmig starts is killed before vmig exits. Use the profile with
    `vmig check STREAM --against dest.json` and `vmig diff --compat --against-a/-b`.
    """
    from ..compat.profile import profile_destination  # start-up: see main's docstring
    from ..outfile import output_file

    doc = profile_destination(command, timeout=timeout)
    with output_file(output) as out:
        out.write(json.dumps(doc, indent=1).encode() + b"\n")
    app.err.print(f"vmig: {output}: QEMU {doc['qemu']['version']} {doc['qemu']['arch']}, machine "
                  f"{doc['machine']['name']}: {len(doc['sections'])} sections, {len(doc['ram_blocks'])} RAM blocks",
                  markup=False, highlight=False)
