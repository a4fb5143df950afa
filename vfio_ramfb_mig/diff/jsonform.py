"""The `vmig diff --json` document of a StreamDiff (schemas/diff.schema.json describes it).

Values the model keeps as bytes, blobs or nested vmsds are said in JSON's terms: short
buffers in hex, longer ones by length and sha256, a blob by its place in the input.

Imports: model, diff.changes; diff.compat with verdicts.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from ..model import Blob, StructValue
from .changes import StreamDiff

if TYPE_CHECKING:
    from ..compat.check import Verdict


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex() if len(value) <= 64 else {"length": len(value),
                                                      "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, Blob):
        return {"length": value.length, "offset": value.offset}
    if isinstance(value, StructValue):
        return {"vmsd_name": value.vmsd_name, "version": value.version}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


def diff_json(result: StreamDiff, verdicts: tuple[Verdict, Verdict] | None = None) -> dict[str, Any]:
    """The `vmig diff --json` document; with `verdicts` (diff.compat.judge_both), its "compat" member."""
    doc = {
        "a": result.a,
        "b": result.b,
        "same": result.same,
        "ignore": list(result.ignore),
        "ignored": result.ignored,
        "notes": list(result.notes),
        "changes": [
            {k: v for k, v in {
                "kind": c.kind, "group": c.group, "path": c.path, "text": c.text,
                "old": _jsonable(c.old), "new": _jsonable(c.new),
                "old_offset": c.old_offset, "new_offset": c.new_offset, "count": c.count,
            }.items() if v is not None}
            for c in result.changes
        ],
    }
    if verdicts is not None:
        from .compat import compat_json

        doc["compat"] = compat_json(verdicts)
    return doc
