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
    from ..errors import CompatError
    from ..render.machines import build_table, machine_view

    builds = catalog.builds(arch, qemu)
    if not builds:
        raise CompatError(f"vmig bundles no QEMU build for {' '.join(filter(None, (arch, qemu)))}; it has "
                          + ", ".join(f"{b.arch} {b.qemu}" for b in catalog.all_builds()))
    if name is None:
        for build in builds:
            app.out.print(build_table(build, everything=everything))
        return
    from ..compat.machines import FAMILY_ARCH, MachineType, parse_machine_name

    parsed = parse_machine_name(name)
    wanted = MachineType(parsed.family, parsed.version).name if parsed and parsed.version else name
    if parsed is not None:  # a family vmig knows: only its architecture's builds
        builds = tuple(b for b in builds if b.arch == FAMILY_ARCH[parsed.family]) or builds
    found = [(b, b.find(wanted)) for b in builds]
    found = [(b, m) for b, m in found if m is not None]
    if not found:
        builds[0].machine(wanted)  # raises, listing close names
    for build, machine in found:
        if machine.name != name and len(found) == 1:
            app.out.print(f"{name} is {machine.name} on {build.describe()}")
        app.out.print(machine_view(build, machine, everything=everything))
