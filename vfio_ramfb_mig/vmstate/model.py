"""One model of QEMU's VMStateDescription, whichever way a description arrives.

A `Description` is a name, a version, an ordered list of `FieldDesc` and a
list of subsection descriptions. It comes from the stream's own vmdesc JSON
(vmstate/vmdesc.py), from a built-in schema (vmstate/builtin.py) or from a
`-dump-vmstate` file, and compiles to construct (vmstate/compile.py).

Imports: nothing from the package but errors.
References: include/migration/vmstate.h (VMStateDescription, VMStateField, VMS_* flags).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: vmig's name for the 28 big-endian RAMFBCfg bytes (vmstate/builtin.py); a raw buffer to QEMU,
#: and never taken from a stream's vmdesc (vmdesc.py)
RAMFB_CFG_TYPE = "ramfb cfg"


@dataclass(frozen=True, slots=True)
class FieldDesc:
    """One field as it is on the wire.

    `type` is the vmdesc type name (`uint32`, `buffer`, `pci config`, ...) or
    `struct` (nested description, inline, no marker). `size` is the byte size of
    one element for fixed-size leaf types; `count` the static element count
    (`array_len`), `count_from` the earlier field holding a VARRAY count and
    `size_from` the earlier field holding a VBUFFER length.
    """

    name: str
    type: str
    size: int | None = None
    count: int | None = None
    count_from: str | None = None
    size_from: str | None = None
    struct: Description | None = None
    index: int | None = None
    #: a built-in interpretation of a raw buffer, e.g. "ramfb cfg" (render and diff use it)
    view: str | None = None

    @property
    def key(self) -> str:
        """Name as the decoded model shows it: vmdesc's `index` makes repeated objects distinct."""
        return self.name if self.index is None else f"{self.name}[{self.index}]"


@dataclass(frozen=True, slots=True)
class Description:
    """A VMStateDescription: what QEMU writes for one vmsd, in order."""

    name: str
    version: int
    fields: tuple[FieldDesc, ...]
    subsections: tuple[Description, ...] = ()
    minimum_version: int | None = None
    #: where it came from: "vmdesc", "builtin" or "dump"
    origin: str = field(default="vmdesc", compare=False)

    def subsection(self, name: str) -> Description | None:
        return next((s for s in self.subsections if s.name == name), None)
