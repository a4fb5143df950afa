"""The golden file: `# options:` line, `[group]` headers, one `path = value` line per value
(docs/golden.md); written by Golden.text(), read back by Golden.parse() and read_golden().

Imports: errors, textin (lazily), golden.options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..errors import GoldenError
from .options import GoldenOptions

FORMAT = 1
_FORMAT_LINE = re.compile(r"# vmig golden file \(format (\d+)\)")


class Entry(NamedTuple):
    group: str
    path: str
    value: str


@dataclass(frozen=True, slots=True)
class Golden:
    """A golden: its options and its `path = value` entries, in file order."""

    options: GoldenOptions
    entries: tuple[Entry, ...]
    format: int = FORMAT

    def text(self) -> str:
        lines = [f"# vmig golden file (format {FORMAT}). `vmig golden update` writes it, "
                 f"`vmig golden check` compares it; see docs/golden.md.",
                 f"# options: {self.options.to_json()}"]
        group = None
        for entry in self.entries:
            if entry.group != group:
                group = entry.group
                lines += ["", f"[{group}]"]
            lines.append(f"{entry.path} = {entry.value}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, name: str = "golden file") -> Golden:
        options, entries, group, version = GoldenOptions(), [], "", FORMAT
        for number, line in enumerate(text.splitlines(), 1):
            found = _FORMAT_LINE.match(line) if number == 1 else None
            if found:
                version = int(found.group(1))
            elif line.startswith("# options:"):
                from ..textin import TextInputError, loads

                try:
                    options = GoldenOptions.from_mapping(loads(line.partition(":")[2]), f"{name}:{number}")
                except TextInputError as exc:
                    raise GoldenError(f"{name}:{number}: the options line is not JSON: {exc.reason}") from None
            elif not line.strip() or line.startswith("#"):
                continue
            elif line.startswith("[") and line.endswith("]") and " = " not in line:
                group = line[1:-1]
            else:
                path, sep, value = line.partition(" = ")
                if not sep:
                    raise GoldenError(f"{name}:{number}: expected 'path = value', a [group] or a # comment, "
                                      f"found {line[:60]!r}")
                entries.append(Entry(group, path, value))
        return cls(options, tuple(entries), version)


def read_golden(path: Path) -> Golden | None:
    from ..textin import read_text

    if not path.exists():
        return None
    return Golden.parse(read_text(path, f"golden file {path}", GoldenError), str(path))
