"""`vmig machines [NAME]`: the machine types and the compat properties each one applies."""

from __future__ import annotations

import click


@click.command("machines")
@click.argument("name", required=False)
@click.option("--all", "everything", is_flag=True, help="with NAME: every compat entry, not only vmig's drivers")
@click.pass_obj
def machines_cmd(app, name: str | None, everything: bool) -> None:
    """List machine types, or show NAME's effective compat properties and where each came from."""
    from ..compat.machines import resolve_machine  # start-up: see main's docstring
    from ..render.machines import machine_props_table, machines_table

    if name is None:
        app.out.print(machines_table())
        return
    machine = resolve_machine(name)
    if machine.name != name:
        app.out.print(f"{name} is {machine.name}")
    app.out.print(machine_props_table(machine, everything=everything))
