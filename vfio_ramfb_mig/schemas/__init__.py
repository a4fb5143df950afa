"""JSON Schemas (draft 2020-12) of vmig's JSON outputs: one file per output, NAME.schema.json.

    from vfio_ramfb_mig import schemas
    schemas.names()          # ['check', 'decode', 'decode-pages', 'diff', 'ram-manifest', ...]
    schemas.load("decode")   # the schema as a dict; `vmig schema decode` prints it

Each schema's `$id` is `urn:vmig:schema:NAME`; a schema that embeds another output (diff
--compat embeds check's verdict) refers to it by that id, so a validator needs them all:
`registry()` maps every id to its schema. The tests validate every output of every
bundled capture against these files; a change of an output changes its schema in the
same commit. vmig itself never validates (jsonschema is a test dependency only).

Imports: the standard library only.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

_SUFFIX = ".schema.json"


def names() -> list[str]:
    """The outputs that have a schema, sorted."""
    return sorted(p.name[:-len(_SUFFIX)] for p in files(__name__).iterdir() if p.name.endswith(_SUFFIX))


@cache
def _text(name: str) -> str:
    if name not in names():
        raise KeyError(f"no schema named {name!r}; there are {', '.join(names())}")
    return files(__name__).joinpath(name + _SUFFIX).read_text(encoding="utf-8")


def text(name: str) -> str:
    """The schema file's text, as shipped."""
    return _text(name)


def load(name: str) -> dict[str, Any]:
    """The schema of output `name` (a fresh dict: callers may change it)."""
    return json.loads(_text(name))


def schema_id(name: str) -> str:
    return f"urn:vmig:schema:{name}"


def registry() -> dict[str, dict[str, Any]]:
    """Every schema by its `$id`, for validators that resolve references between them."""
    return {schema_id(name): load(name) for name in names()}
