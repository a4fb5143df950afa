"""Check and update one stream: compare it with its golden (options from the caller,
vmig-golden.toml and the golden itself), or write its golden atomically when its text changes.

Imports: errors, outfile, golden (options, goldenfile, summary, compare, discovery).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GoldenError, VmigError
from ..outfile import output_file
from .compare import Change, compare
from .discovery import golden_path
from .goldenfile import FORMAT, read_golden
from .options import GoldenOptions, find_config, load_config
from .summary import golden_of_path


@dataclass(frozen=True, slots=True)
class CheckResult:
    """`status`: ok, different, missing (no golden), stale (the golden lacks options asked for),
    error (`message` says why). `snapshot`: the VM state of a qcow2 image checked, if it has several."""

    stream: Path
    golden: Path
    status: str
    changes: tuple[Change, ...] = ()
    message: str = ""
    snapshot: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != "ok"


CHECK_STATUSES = ("ok", "different", "missing", "stale", "error")
UPDATE_STATUSES = ("created", "updated", "unchanged", "error")


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """`status`: created, updated (with the changes it made), unchanged, or error (`message` says why)."""

    stream: Path
    golden: Path
    status: str
    changes: tuple[Change, ...] = ()
    message: str = ""


def _refuse_stream_as_golden(stream: Path, golden: Path) -> None:
    if golden.suffix == ".bin" or (golden.exists() and stream.exists() and os.path.samefile(golden, stream)):
        raise GoldenError(f"refusing to use {golden} as a golden file: it is a stream (.bin), and goldens "
                          f"never overwrite streams")


def check_stream(stream: str | os.PathLike[str], golden: str | os.PathLike[str] | None = None, *,
                 options: GoldenOptions = GoldenOptions(), config_root: str | os.PathLike[str] | None = None,
                 snapshot: str | None = None) -> CheckResult:
    """Compare a stream with its golden. Options: `options` (the caller's), vmig-golden.toml
    (searched from the golden's directory up to `config_root`) and the golden's own header.
    Decode errors and unusable goldens raise VmigError; everything else is a result."""
    stream, golden = Path(stream), Path(golden) if golden is not None else golden_path(stream)
    _refuse_stream_as_golden(stream, golden)
    expected = read_golden(golden)
    if expected is None:
        return CheckResult(stream, golden, "missing", snapshot=snapshot,
                           message=f"no golden file {golden}; a missing golden fails the check "
                                   f"(write it with `vmig golden update {stream}`, review, commit)")
    if expected.format != FORMAT:
        return CheckResult(stream, golden, "stale", snapshot=snapshot,
                           message=f"{golden} is in golden format {expected.format}; this vmig writes format "
                                   f"{FORMAT}: regenerate it with `vmig golden update {stream}` and review the diff")
    wanted = options.merge(load_config(find_config(golden.parent, Path(config_root) if config_root else None)))
    have = expected.options
    lacking = [name for name, asked, kept in (("--offsets", wanted.offsets, have.offsets),
                                             ("--order", wanted.records_order, have.records_order))
               if asked and not kept]
    if lacking:
        return CheckResult(stream, golden, "stale", snapshot=snapshot,
                           message=f"{golden} was written without {' and '.join(lacking)}, so it cannot be "
                                   f"compared with them; regenerate it with `vmig golden update "
                                   f"{' '.join(lacking)} {stream}`")
    effective = have.merge(wanted)
    actual = golden_of_path(stream, effective, snapshot)
    changes = compare(expected, actual, effective.ignore)
    return CheckResult(stream, golden, "different" if changes else "ok", tuple(changes), snapshot=snapshot)


def update_stream(stream: str | os.PathLike[str], golden: str | os.PathLike[str] | None = None, *,
                  options: GoldenOptions = GoldenOptions(), config_root: str | os.PathLike[str] | None = None,
                  snapshot: str | None = None) -> UpdateResult:
    """Write the golden of a stream (atomically), only if its text changes; never writes the stream.
    Options: the caller's, vmig-golden.toml, and those of the golden being replaced (they stick)."""
    stream, golden = Path(stream), Path(golden) if golden is not None else golden_path(stream)
    _refuse_stream_as_golden(stream, golden)
    try:
        previous = read_golden(golden)
        old_text = golden.read_text(encoding="utf-8") if previous is not None else None
    except VmigError:
        previous, old_text = None, None  # a broken golden is simply replaced
    effective = options.merge(load_config(find_config(golden.parent, Path(config_root) if config_root else None)))
    if previous is not None:
        effective = previous.options.merge(effective)
    actual = golden_of_path(stream, effective, snapshot)
    text = actual.text()
    if old_text == text:
        return UpdateResult(stream, golden, "unchanged")
    changes = tuple(compare(previous, actual)) if previous is not None else ()
    mode = 0o666 & ~_umask()
    with output_file(str(golden)) as out:
        out.write(text.encode("utf-8"))
        os.fchmod(out.fileno(), mode)
    return UpdateResult(stream, golden, "updated" if old_text is not None else "created", changes)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
