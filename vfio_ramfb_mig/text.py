"""Names on the wire are bytes; vmig keeps them as str with surrogate escapes, so a
name that is not UTF-8 survives decode -> JSON -> encode unchanged and prints escaped.

Every layer names things (wire schemas, the codec, diff, the renderers), so this sits at the
bottom with model and errors. Imports nothing from the package.
"""

from __future__ import annotations


def from_wire(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def to_wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def printable(text: str) -> str:
    """For display: undecodable bytes as \\xNN, control characters escaped."""
    shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
