"""Golden options: what a golden holds besides content (ignore patterns, offsets, record order),
from the command line, a vmig-golden.toml next to the streams (or in a parent), and a golden's own
`# options:` line.

Imports: errors, textin (lazily).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GoldenError

CONFIG_NAME = "vmig-golden.toml"


@dataclass(frozen=True, slots=True)
class GoldenOptions:
    """What a golden holds besides content. `offsets` implies the record order."""

    offsets: bool = False
    order: bool = False
    ignore: tuple[str, ...] = ()

    def merge(self, other: GoldenOptions) -> GoldenOptions:
        return GoldenOptions(offsets=self.offsets or other.offsets, order=self.order or other.order,
                             ignore=tuple(dict.fromkeys(self.ignore + other.ignore)))

    @property
    def records_order(self) -> bool:
        return self.order or self.offsets

    def to_json(self) -> str:
        return json.dumps({"ignore": list(self.ignore), "offsets": self.offsets, "order": self.order})

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> GoldenOptions:
        if not isinstance(data, dict):
            raise GoldenError(f"{where}: expected a table of options, found {type(data).__name__}")
        unknown = sorted(set(data) - {"ignore", "offsets", "order"})
        if unknown:
            raise GoldenError(f"{where}: unknown option {', '.join(map(repr, unknown))}; "
                              f"expected ignore, offsets or order")
        ignore = data.get("ignore", [])
        if isinstance(ignore, str):
            ignore = [ignore]
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise GoldenError(f"{where}: 'ignore' must be a list of strings (fnmatch patterns)")
        flags = {}
        for key in ("offsets", "order"):
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise GoldenError(f"{where}: '{key}' must be true or false, found {value!r}")
            flags[key] = value
        return cls(ignore=tuple(ignore), **flags)


def find_config(start: Path, stop: Path | None = None) -> Path | None:
    """The nearest vmig-golden.toml in `start` or its parents, up to and including `stop`
    (only `start` itself when `stop` is None or not an ancestor)."""
    start, here = start.resolve(), start.resolve()
    top = stop.resolve() if stop is not None else start
    if top != here and top not in here.parents:
        top = here
    while True:
        candidate = here / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if here == top or here.parent == here:
            return None
        here = here.parent


def load_config(path: Path | None) -> GoldenOptions:
    """Options from a vmig-golden.toml (`ignore = [...]`, `offsets`, `order`); defaults when `path` is None."""
    if path is None:
        return GoldenOptions()
    from ..textin import read_toml

    return GoldenOptions.from_mapping(read_toml(path, GoldenError), str(path))
