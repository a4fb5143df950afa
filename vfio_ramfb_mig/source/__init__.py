"""Where the bytes of a stream come from: a plain file, a pipe, a compressed file.

`Source` is the one view of an input every verb reads through: a seekable buffer with
absolute offsets, and the single place construct parses report offsets and paths.

Imports: construct, errors, wire (the bounded stream construct parses read from).
"""

from __future__ import annotations

from .buffer import Source

__all__ = ["Source"]
