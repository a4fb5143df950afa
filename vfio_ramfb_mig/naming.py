"""How vmig names a place in a stream: one spelling for diff, golden files, `vmig check`,
ignore patterns and the JSON documents.

    dma#1                                  a section: its idstr, ``#N`` when the instance id N is not 0
    ramfb-dev/state/cfg/width              a field under its section; struct members nest
    fw_cfg/acpi_mr                         a subsection, named without its parent's prefix
                                           (QEMU's ``fw_cfg/acpi_mr`` under ``fw_cfg``)
    0000:00:1f.2/ich9_ahci/ahci/dev[5]     an array element
    configuration/machine                  the configuration record
    stream/vmdesc                          facts about the whole stream
    ram/pc.ram                             a RAM block

A section is never named by its section id or by its position: QEMU's loader finds it by
idstr and instance (savevm.c find_se). When one level has two fields of one name (a vmdesc
may list a name twice), the later ones are ``name~2``, ``name~3``. QEMU >= 8.0 writes the last
element of a non-compressible array without its vmdesc index (``dev[0]`` ... ``dev[4]``,
then ``dev``), older QEMU as ``dev[5]``: the bare name after ``name[0..n-1]`` is ``name[n]``,
so the same field has the same path whichever QEMU wrote it. Golden files add their own
keys below a path, each starting with ``@`` (``@version``, ``@length``, ``@start`` for the
START record of an iterative section); no QEMU name starts with ``@``.

An ignore pattern is an fnmatch pattern (``*`` also matches ``/``) that ignores a path when
it matches the path or one of its ancestors (cut at ``/``): ``ram`` ignores all RAM,
``timer`` the timer section, ``cpu/env.tsc*`` the TSC fields.

Imports: text.
References: migration/savevm.c (find_se), migration/vmstate.c (vmstate_subsection_load:
subsections are named "<parent>/<name>"), migration/savevm.c vmstate_save_state_v
(vmdesc "index" of array elements).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache

from .text import printable

#: what golden files call the records of an iterative section below its path (FULL records have none)
RECORD_KEYS = {"section_full": "", "section_start": "@start", "section_part": "@part", "section_end": "@end"}


def section_name(idstr: str, instance_id: int | None) -> str:
    """``dma`` for instance 0, ``dma#1`` for instance 1; undecodable bytes of the idstr escaped."""
    name = printable(idstr)
    return f"{name}#{instance_id}" if instance_id else name


def element(path: str, index: int) -> str:
    """An array element: ``irq_state[2]``."""
    return f"{path}[{index}]"


def subsection_name(parent: str, name: str) -> str:
    """A subsection's name under its parent vmsd: QEMU's ``cpu/tsc_khz`` under ``cpu`` is ``tsc_khz``."""
    return name[len(parent) + 1:] if name.startswith(parent + "/") else name


def level_names(names: Sequence[str], arrays: Collection[int] = ()) -> list[str]:
    """The names of one level (its fields, then its subsections' `subsection_name`s), as paths
    spell them (see the module docstring): the bare name of one element after ``name[0..n-1]``
    becomes ``name[n]``; a name already taken at the level becomes ``name~2``, ``name~3``, ....

    `arrays` are the positions of fields that hold an array of their own: such a bare name is
    another field, not the last element (arm's ``env.vfp.xregs[0]`` is one register, then
    ``env.vfp.xregs`` a sub-array of 14 from index 2: target/arm/machine.c vmstate_vfp)."""
    present = set(names)
    out: list[str] = []
    taken: set[str] = set()
    for i, raw in enumerate(names):
        key = printable(raw)
        if "[" not in raw and f"{raw}[0]" in present and i not in arrays:
            n = 0
            while f"{raw}[{n}]" in present:
                n += 1
            key = element(key, n)
        if key in taken:
            n = 2
            while f"{key}~{n}" in taken:
                n += 1
            key = f"{key}~{n}"
        taken.add(key)
        out.append(key)
    return out


class IgnorePatterns:
    """Ignore patterns, compiled once; calling it with a path says whether the path is ignored."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = tuple(dict.fromkeys(patterns))
        self._regex = (re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns))
                       if self.patterns else None)

    def __bool__(self) -> bool:
        return self._regex is not None

    def __call__(self, path: str) -> bool:
        regex = self._regex
        if regex is None:
            return False
        if regex.match(path):
            return True
        cut = path.rfind("/")
        while cut > 0:
            if regex.match(path, 0, cut):  # the ancestor path[:cut]
                return True
            cut = path.rfind("/", 0, cut)
        return False


@lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> IgnorePatterns:
    return IgnorePatterns(patterns)


def section_selected(idstr: str, patterns: Sequence[str]) -> bool:
    """`decode --section` patterns: none select every section; else an idstr that a pattern matches
    as a glob (fnmatch, case-sensitive) or contains."""
    return not patterns or any(fnmatch.fnmatchcase(idstr, p) or p in idstr for p in patterns)


def unmatched_patterns(idstrs: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The `--section` patterns that select none of `idstrs`."""
    idstrs = list(idstrs)
    return [p for p in patterns if not any(section_selected(i, (p,)) for i in idstrs)]


def is_ignored(path: str, patterns: Sequence[str]) -> bool:
    """True when a pattern matches `path` or one of its ancestors."""
    return _compiled(tuple(patterns))(path) if patterns else False
