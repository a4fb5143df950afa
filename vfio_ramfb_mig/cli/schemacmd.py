"""`vmig schema [NAME]`: the JSON Schemas of vmig's JSON outputs (vfio_ramfb_mig/schemas/).

Imports: click; schemas when the verb runs.
"""

from __future__ import annotations

import sys

import click


def _names() -> list[str]:
    from .. import schemas

    return schemas.names()


@click.command("schema")
@click.argument("name", required=False,
                shell_complete=lambda ctx, param, incomplete: [n for n in _names() if n.startswith(incomplete)])
@click.pass_obj
def schema_cmd(app, name: str | None) -> None:  # noqa: ANN001
    """Print the JSON Schema of a --json output (NAME), or list the outputs that have one.

    \b
    vmig schema                       # decode, decode-pages, diff, check, ram-manifest, ...
    vmig schema decode > decode.schema.json
    """
    from .. import schemas

    if name is None:
        sys.stdout.write("".join(f"{n}\n" for n in schemas.names()))
        return
    if name not in schemas.names():
        from ..errors import InputError

        raise InputError(f"no schema named {name!r}; there are: {', '.join(schemas.names())}")
    sys.stdout.write(schemas.text(name))
