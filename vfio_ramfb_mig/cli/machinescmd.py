"""`vmig machines [NAME] [--arch A] [--qemu V]`: the machine types of every bundled QEMU build,
or what one of them is: its compat properties and where each came from, and what a stock VM of
it has (sections, RAM blocks, page size)."""

from __future__ import annotations

import click

from .main import complete_machine


@click.command("machines")
@click.argument("name", required=False, shell_complete=complete_machine)
@click.option("--arch", metavar="ARCH", help="only this target: x86_64 or aarch64")
@click.option("--qemu", metavar="VERSION", help="only this QEMU: 10.0 or 7.2")
@click.option("--all", "everything", is_flag=True,
              help="every machine type (not only pc-i440fx, pc-q35, virt); with NAME every compat entry")
@click.pass_obj
def machines_cmd(app, name: str | None, arch: str | None, qemu: str | None, everything: bool) -> None:
    """List machine types, or show NAME's effective compat properties and where each came from."""
    from ..compat import catalog  # start-up: see main's docstring
    from ..render.machines import build_table, machine_view

    builds = catalog.bundled_builds(arch, qemu)
    if name is None:
        for build in builds:
            app.out.print(build_table(build, everything=everything))
        return
    found = catalog.machine_on(name, builds)
    for build, machine in found:
        if machine.name != name and len(found) == 1:
            app.out.print(f"{name} is {machine.name} on {build.describe()}")
        app.out.print(machine_view(build, machine, everything=everything))
