"""Read a `qemu-system-* -dump-vmstate FILE` document into a schema index.

`-dump-vmstate` describes, statically, every device class that has a
`dc->vmsd` in one QEMU binary (wire-format.md §5.7): keyed by QOM type name,
each entry holds the vmsd (name, version_id, minimum_version_id, Fields,
Subsections, recursively). It is the same for every machine type of a binary
except the `vmschkmachine` line. What it lacks: types, real sizes, and all
state registered without `dc->vmsd` (`ram`, `timer`, `cpu`, `apic`,
`PCIBUS`, `globalstate`, `…/vfio`, ...).

`Schema` is the index the load verdict needs:

* `types`: QOM type -> `VmsdInfo` of its top-level vmsd;
* `vmsds`: vmsd name -> `VmsdInfo`, for top-level *and* nested descriptions
  (struct fields) *and* subsections, so a decoded `StructValue.vmsd_name` or a
  subsection name can be looked up directly.

`description()` turns a `VmsdInfo` into the package's `Description` model
(field types are unknown in a dump, so they are "unknown").

Imports: errors, vmstate.model.
References: migration/savevm.c (dump_vmstate_json_to_file, dump_vmstate_vmsd,
dump_vmstate_vmsf), scripts/vmstate-static-checker.py (the other reader of this format).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError
from .model import Description, FieldDesc

#: bundled dumps, by QEMU series (vfio_ramfb_mig/data/)
BUNDLED: Mapping[str, str] = {
    "10.0": "vmstate-qemu-10.0.2.json.gz",
    "7.2": "vmstate-qemu-7.2.22.json.gz",
}
#: the exact QEMU release each bundled dump came from
BUNDLED_RELEASE: Mapping[str, str] = {"10.0": "10.0.2", "7.2": "7.2.22"}

#: deeper than any real vmsd tree; a hostile file must not exhaust the stack
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class DumpField:
    """One VMStateField as the dump lists it (C sizes, not wire sizes)."""

    name: str
    version_id: int
    field_exists: bool
    size: int
    num: int | None = None
    description: VmsdInfo | None = None


@dataclass(frozen=True, slots=True)
class VmsdInfo:
    """One VMStateDescription: its name, versions, fields and subsections (recursively)."""

    name: str
    version_id: int
    minimum_version_id: int
    fields: tuple[DumpField, ...] = ()
    subsections: tuple[VmsdInfo, ...] = ()

    def subsection(self, name: str) -> VmsdInfo | None:
        return next((s for s in self.subsections if s.name == name), None)

    @property
    def subsection_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subsections)


@dataclass(frozen=True)
class Schema:
    """The -dump-vmstate of one QEMU binary, indexed by QOM type and by vmsd name."""

    machine: str | None
    types: Mapping[str, VmsdInfo]
    vmsds: Mapping[str, VmsdInfo] = field(repr=False)
    #: where it came from: a path, or "bundled QEMU 10.0.2"
    origin: str = ""

    def vmsd(self, name: str) -> VmsdInfo | None:
        """The description named `name` (top-level, nested or subsection), or None."""
        return self.vmsds.get(name)

    def vmsd_of_type(self, qom_type: str) -> VmsdInfo | None:
        return self.types.get(qom_type)

    def types_with_vmsd(self, vmsd_name: str) -> tuple[str, ...]:
        return tuple(t for t, info in self.types.items() if info.name == vmsd_name)


def read_dump(source: str | Path | bytes | Mapping[str, Any], *, origin: str | None = None) -> Schema:
    """Read a -dump-vmstate document.

    Args:
        source: a path (plain or .gz), the file's bytes, or the parsed JSON.
        origin: how to name it in messages (default: the path).

    Raises:
        InputError: the file cannot be read or is not a -dump-vmstate document.
    """
    if isinstance(source, Mapping):
        doc, name = source, origin or "-dump-vmstate document"
    else:
        if isinstance(source, (str, Path)):
            name = origin or str(source)
            try:
                raw = Path(source).read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read {source}: {exc.strerror}") from exc
        else:
            raw, name = bytes(source), origin or "-dump-vmstate document"
        if raw[:2] == b"\x1f\x8b":
            raw = _gunzip(raw, name)
        if len(raw) > MAX_DUMP_SIZE:
            raise InputError(f"{name} holds {len(raw):,} bytes of JSON; a -dump-vmstate file is a few MiB (at most "
                             f"{MAX_DUMP_SIZE >> 20} MiB is read)")
        from ..textin import parse_json

        doc = parse_json(raw, f"{name} is not a -dump-vmstate JSON file:")
    return _Reader(name).schema(doc)


#: a real -dump-vmstate is 1-2 MiB of JSON; more is not one (and would cost GiBs parsed)
MAX_DUMP_SIZE = 32 << 20


def _gunzip(raw: bytes, name: str) -> bytes:
    """gzip members back to back, never more than MAX_DUMP_SIZE out (a small gzip bomb stops
    there, before it takes the memory it claims)."""
    out, rest = bytearray(), raw
    while rest:
        d = zlib.decompressobj(31)
        try:
            out += d.decompress(rest, MAX_DUMP_SIZE + 1 - len(out))
        except zlib.error as exc:
            raise InputError(f"cannot read {name}: corrupt gzip data ({exc})") from exc
        if len(out) > MAX_DUMP_SIZE:
            raise InputError(f"{name} decompresses to more than {MAX_DUMP_SIZE >> 20} MiB; a -dump-vmstate file "
                             f"is a few MiB")
        if not d.eof:
            raise InputError(f"cannot read {name}: the gzip data is cut short")
        rest = d.unused_data
        if rest and rest[:2] != b"\x1f\x8b":
            raise InputError(f"cannot read {name}: trailing garbage after the gzip data")
    return bytes(out)


@cache
def bundled_schema(series: str) -> Schema:
    """The dump bundled for a QEMU series ("10.0" or "7.2")."""
    if series not in BUNDLED:
        raise InputError(f"no bundled -dump-vmstate for QEMU {series}; bundled: {', '.join(BUNDLED)}",
                         hint="give the destination's own dump with --schema FILE "
                              "(qemu-system-x86_64 -M <machine> -dump-vmstate FILE)")
    data = resources.files("vfio_ramfb_mig").joinpath("data", BUNDLED[series]).read_bytes()
    return read_dump(data, origin=f"bundled -dump-vmstate of QEMU {BUNDLED_RELEASE[series]}")


def description(info: VmsdInfo) -> Description:
    """A `Description` for a dumped vmsd. A dump has no wire types, so leaf types are "unknown"
    and sizes are C sizes; use it for names, versions and subsections, not to parse bytes."""
    fields = []
    for f in info.fields:
        if f.description is not None:
            fields.append(FieldDesc(f.name, "struct", count=f.num, struct=description(f.description)))
        else:
            fields.append(FieldDesc(f.name, "unknown", size=f.size, count=f.num))
    return Description(info.name, info.version_id, tuple(fields),
                       tuple(description(s) for s in info.subsections),
                       minimum_version=info.minimum_version_id, origin="dump")


class _Reader:
    def __init__(self, name: str) -> None:
        self.name = name
        self.vmsds: dict[str, VmsdInfo] = {}

    def fail(self, message: str) -> None:
        raise InputError(f"{self.name} is not a -dump-vmstate file: {message}")

    def schema(self, doc: Any) -> Schema:
        if not isinstance(doc, Mapping):
            self.fail("expected a JSON object at the top")
        machine = None
        chk = doc.get("vmschkmachine")
        if isinstance(chk, Mapping) and isinstance(chk.get("Name"), str):
            machine = chk["Name"]
        types: dict[str, VmsdInfo] = {}
        for key, entry in doc.items():
            if key == "vmschkmachine":
                continue
            if not isinstance(entry, Mapping) or not isinstance(entry.get("Description"), Mapping):
                self.fail(f"entry {key!r} has no Description object")
            types[key] = self.vmsd(entry["Description"], 0, key)
        if not types and machine is None:
            self.fail("no vmschkmachine and no device entries")
        return Schema(machine=machine, types=types, vmsds=dict(self.vmsds), origin=self.name)

    def number(self, obj: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
        value = obj.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"{where}: expected integer {key!r}")
        return value

    def vmsd(self, obj: Any, depth: int, where: str) -> VmsdInfo:
        if depth > MAX_DEPTH:
            self.fail(f"{where}: descriptions nested deeper than {MAX_DEPTH}")
        if not isinstance(obj, Mapping) or not isinstance(obj.get("name"), str):
            self.fail(f"{where}: expected a description with a 'name'")
        name = obj["name"]
        where = f"{where} -> {name}"
        fields = tuple(self.field(f, depth, where) for f in self.items(obj, "Fields", where))
        subsections = tuple(self.vmsd(s, depth + 1, where) for s in self.items(obj, "Subsections", where))
        info = VmsdInfo(name=name, version_id=self.number(obj, "version_id", where),
                        minimum_version_id=self.number(obj, "minimum_version_id", where, 0),
                        fields=fields, subsections=subsections)
        # one vmsd can appear many times (nested in several devices); the first one is kept
        self.vmsds.setdefault(name, info)
        return info

    def items(self, obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
        value = obj.get(key, [])
        if not isinstance(value, list):
            self.fail(f"{where}: {key!r} is not a list")
        return value

    def field(self, obj: Any, depth: int, where: str) -> DumpField:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("field"), str):
            self.fail(f"{where}: expected a field object with a 'field' name")
        name = obj["field"]
        nested = None
        if "Description" in obj:
            nested = self.vmsd(obj["Description"], depth + 1, f"{where}.{name}")
        num = obj.get("num")
        return DumpField(name=name, version_id=self.number(obj, "version_id", where, 0),
                         field_exists=bool(obj.get("field_exists", False)),
                         size=self.number(obj, "size", where, 0),
                         num=num if isinstance(num, int) and not isinstance(num, bool) else None,
                         description=nested)
