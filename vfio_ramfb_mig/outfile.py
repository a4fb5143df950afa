"""Atomic output: write to a temporary file beside the target, rename on success.

A failed or interrupted run never leaves a partial output file, and the target
is never one of the inputs.

Imports: errors.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import InputError


def refuse_same_file(target: str, inputs: tuple[str, ...]) -> None:
    """Fail if `target` is (a link to) one of the inputs."""
    if target == "-":
        return
    for src in inputs:
        if src == "-" or not os.path.exists(src) or not os.path.exists(target):
            continue
        if os.path.samefile(src, target):
            raise InputError(f"refusing to overwrite the input {src} with the output")


@contextlib.contextmanager
def atomic_output(target: str) -> Iterator[BinaryIO]:
    """Yield a binary file; it replaces `target` only if the block finishes without error."""
    path = Path(target)
    if path.is_dir():
        raise InputError(f"cannot write {target}: it is a directory")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
