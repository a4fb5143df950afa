"""Validate a JSON output against the schema vmig ships for it (vfio_ramfb_mig/schemas/).

    assert_schema("decode", json.loads(out))

tests/test_schemas.py checks that every shipped schema is used by some test through
this function (it looks for `assert_schema(` and a quoted name in tests/), so a new output's
schema is never shipped unchecked.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from vfio_ramfb_mig import schemas


@cache
def validator(name: str) -> Draft202012Validator:
    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema)) for uri, schema in schemas.registry().items())
    return Draft202012Validator(schemas.load(name), registry=registry)


def schema_errors(name: str, doc: Any) -> list[str]:
    """Every place `doc` breaks the schema, as 'JSON path: message' (at most 10)."""
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message[:300]}" for e in errors[:10]]


def assert_schema(name: str, doc: Any) -> None:
    errors = schema_errors(name, doc)
    assert not errors, f"output does not match schemas/{name}.schema.json:\n" + "\n".join(errors)
