"""File discovery: the streams under the paths given, the golden beside each, and goldens whose
stream is gone.

Imports: source (probe, qcow2 VM states; lazily), errors.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import GoldenError

GOLDEN_SUFFIX = ".golden.txt"
#: compressed raw streams (fixtures keep big ones xz'd): `x.bin.xz`'s golden is `x.golden.txt`
COMPRESSED_STREAM_SUFFIXES = (".bin.xz", ".bin.gz", ".bin.bz2", ".bin.zst")


def golden_path(stream: str | os.PathLike[str]) -> Path:
    """The golden beside a stream: `dir/out.bin` (or `dir/out.bin.xz`, ...) -> `dir/out.golden.txt`."""
    path = Path(stream)
    for suffix in COMPRESSED_STREAM_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name[:-len(suffix)] + GOLDEN_SUFFIX)
    return path.with_name(path.stem + GOLDEN_SUFFIX)


@dataclass(frozen=True, slots=True)
class Target:
    """A stream to check, its golden, and the directory its vmig-golden.toml search stops at."""

    stream: Path
    golden: Path
    root: Path
    #: a qcow2 image with several VM states has a target (and a golden) per snapshot: its id
    snapshot: str | None = None


def find_streams(paths: Iterable[str | os.PathLike[str]]) -> list[Target]:
    """Every stream under the paths: files as given; in directories (recursively, hidden ones
    skipped) every `*.bin` and every file whose content is a stream or a container vmig reads,
    whatever it is called (source.probe: `vm.save`, `vm.qcow2`, `x.bin.xz`)."""
    from ..source import probe

    targets: dict[tuple[Path, str | None], Target] = {}
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path).parts
                if any(part.startswith(".") for part in rel[:-1]) or found.name.endswith(GOLDEN_SUFFIX):
                    continue
                # *.bin is always a stream (a broken one is reported); any other name, by content
                kinds = probe(str(found)) if found.is_file() else None
                if found.is_file() and (found.suffix == ".bin" or kinds is not None):
                    for target in _targets_of(found, path, kinds):
                        targets.setdefault((target.stream, target.snapshot), target)
        elif path.is_file():
            for target in _targets_of(path, path.parent, probe(str(path))):
                targets.setdefault((target.stream, target.snapshot), target)
        else:
            raise GoldenError(f"no such file or directory: {path}")
    return list(targets.values())


def _targets_of(stream: Path, root: Path, kinds: tuple[str, ...] | None) -> list[Target]:
    """One target; a qcow2 image with several VM states: one per snapshot, its golden named
    `<stem>@<snapshot name>.golden.txt`."""
    from ..source import vm_state_snapshots

    snapshots = vm_state_snapshots(str(stream)) if kinds == ("qcow2",) else []
    if len(snapshots) < 2:
        return [Target(stream, golden_path(stream), root)]
    return [Target(stream, stream.with_name(f"{stream.stem}@{_file_word(name or sid)}{GOLDEN_SUFFIX}"), root, sid)
            for sid, name in snapshots]


def _file_word(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def orphan_goldens(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Golden files under directory arguments whose stream is gone."""
    found = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found += [g for g in sorted(path.rglob("*" + GOLDEN_SUFFIX)) if not _has_stream(g)]
    return found


def _has_stream(golden: Path) -> bool:
    """Is some file beside `golden` the stream it belongs to (`x.golden.txt`: `x`, `x.bin`, `x.save`...)?"""
    stem = golden.name[:-len(GOLDEN_SUFFIX)]
    candidates = [golden.with_name(stem), *golden.parent.glob(glob.escape(stem) + ".*")]
    if any(c != golden and c.is_file() and golden_path(c) == golden for c in candidates):
        return True
    image = stem.rpartition("@")[0]  # a snapshot's golden: `vm@first.golden.txt` of `vm.qcow2`
    return bool(image) and any(c.is_file() and not c.name.endswith(GOLDEN_SUFFIX)
                               for c in golden.parent.glob(glob.escape(image) + ".*"))
