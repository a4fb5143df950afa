"""Output files: the one place every verb that writes a FILE (-o, goldens, manifests) opens it.

    with output_file("dump.bin") as out:     # '-' is stdout
        encode(stream, out, source)

A regular file (or a name that does not exist yet) is written atomically: the bytes go
to a hidden temporary file beside the target, which replaces the target only when the
block ends without an exception, so a failed or interrupted run (Ctrl-C, SIGTERM: the
CLI turns both into exceptions) never leaves a partial or temporary file. The new file
gets the mode an ordinary `open()` would give it (0666 less the umask), or keeps the
mode of the file it replaces.

What is not a regular file is written through, never replaced: `/dev/null`, `/dev/stdout`,
a FIFO, a socket, a terminal. A symbolic link is followed: the file it points to is
replaced (atomically), the link stays. A name ending in '/', a directory, or a name in a
directory that does not exist is refused with one clear line. A full disk is an
OutputError naming the target, not a crash.

Imports: errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import InputError, OutputError

#: errors only the output gives while it is written (a full disk, a file too big for it): said as
#: "cannot write TARGET: ..."; errors of opening it are said the same way where it is opened
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def refuse_same_file(target: str, inputs: tuple[str, ...]) -> None:
    """Fail if `target` is (a link to) one of the inputs."""
    if target == "-":
        return
    for src in inputs:
        if src == "-" or not os.path.exists(src) or not os.path.exists(target):
            continue
        if os.path.samefile(src, target):
            raise InputError(f"refusing to overwrite the input {src} with the output")


def check_output(target: str, inputs: tuple[str, ...] = ()) -> None:
    """Before any work: refuse a target that cannot be written (a directory, a missing directory)
    or that is one of the inputs, so a long run does not end on that error."""
    if target != "-":
        _where(target)
        refuse_same_file(target, inputs)


def new_file_mode() -> int:
    """The mode `open(name, "w")` gives a new file: 0666 less the process's umask."""
    mask = os.umask(0o022)  # os.umask both reads and sets; put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _where(target: str) -> tuple[Path | None, os.stat_result | None]:
    """The file to replace atomically (None: write through) and the stat of what is there now."""
    if target.endswith(os.sep) or target in (".", ".."):
        raise OutputError(f"cannot write {target}: that names a directory; give a file name")
    try:
        st = os.stat(target)  # follows symbolic links: a link to /dev/null is /dev/null
    except (FileNotFoundError, NotADirectoryError):  # said below, naming the directory
        st = None
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write {target}: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return None, st  # a device, a FIFO, a socket: write through
    # a link (or a chain of them) to a file, or to a name that does not exist yet: replace what it points to
    path = Path(os.path.realpath(target)) if os.path.islink(target) else Path(target)
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise OutputError(f"cannot write {target}: the directory {parent} {what}",
                          hint="create the directory first" if what == "does not exist" else None)
    return path, st


def _failed(target: str, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {target}: {exc.strerror or exc}")


@contextlib.contextmanager
def output_file(target: str) -> Iterator[BinaryIO]:
    """Yield a binary file for `target` ('-': stdout); see the module docstring."""
    if target == "-":
        out = sys.stdout.buffer
        try:
            yield out
            out.flush()
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS:
                raise _failed("stdout", exc) from exc
            raise
        return
    path, st = _where(target)
    if path is None:
        try:
            handle = open(target, "wb")
        except OSError as exc:
            raise _failed(target, exc) from exc
        try:
            with handle:
                yield handle
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS:
                raise _failed(target, exc) from exc
            raise
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _failed(target, exc) from exc
    try:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else new_file_mode())
        with os.fdopen(fd, "wb") as out:
            try:
                yield out
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                if exc.errno in WRITE_ERRNOS:
                    raise _failed(target, exc) from exc
                raise
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _failed(target, exc) from exc
    except BaseException:  # an error, Ctrl-C, SIGTERM (the CLI raises for it): no partial file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_output(target: str, data: bytes) -> None:
    """Write `data` to `target` ('-': stdout) as output_file does."""
    with output_file(target) as out:
        out.write(data)
