"""The bundled destinations data (data/destinations.json.gz): what real captures show of each QEMU.

`build_destinations_data` derives it from real captures and their .meta.json sidecars;
`destinations_data` reads the bundled copy. Rebuild it with
``python -m vfio_ramfb_mig.compat.check OUT.json.gz CAPTURE.bin...``.

Imports: errors, model, compat.machines, vmstate.dump, compat.check.stream_facts (codec.decode
only when rebuilding from files).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import CompatError
from ...model import MigrationStream, VmstateBody
from ...vmstate.dump import BUNDLED, Schema, bundled_schema
from ..machines import machine_family
from .stream_facts import section_vmsd_name, subsection_names

DATA_FILE = "destinations.json.gz"
DATA_FORMAT = "vmig-destinations/1"


@lru_cache(maxsize=1)
def destinations_data() -> dict[str, Any]:
    """The bundled per-QEMU knowledge derived from real captures (see `build_destinations_data`)."""
    raw = resources.files("vfio_ramfb_mig").joinpath("data", DATA_FILE).read_bytes()
    doc = json.loads(gzip.decompress(raw))
    if doc.get("format") != DATA_FORMAT:
        raise CompatError(f"bundled {DATA_FILE} has format {doc.get('format')!r}, expected {DATA_FORMAT}")
    return doc


def build_destinations_data(captures: Iterable[tuple[str, MigrationStream, Mapping[str, Any]]],
                            schemas: Mapping[str, Schema]) -> dict[str, Any]:
    """Derive the bundled data from real captures (name, decoded stream, sidecar).

    Per QEMU series: the capability names in QAPI order (from a sidecar's
    query-migrate-capabilities); per machine family, the sections every device-less
    capture writes (their union); and for vmsds absent from the -dump-vmstate
    (registered without dc->vmsd), the version and the subsections seen in any capture.
    """
    out: dict[str, Any] = {"format": DATA_FORMAT,
                           "about": "derived by vfio_ramfb_mig.compat.check.build_destinations_data from real "
                                    "captures; do not edit by hand",
                           "qemu": {}}
    for name, stream, meta in captures:
        release = meta["qemu"]["version"]
        series = ".".join(release.split(".")[:2])
        entry = out["qemu"].setdefault(series, {"release": release, "capabilities": [], "families": {},
                                                "vmsds": {}})
        listed = meta.get("query_migrate_capabilities") or []
        listed = listed.get("return", []) if isinstance(listed, Mapping) else listed
        caps = [c["capability"] for c in listed]
        if caps and not entry["capabilities"]:
            entry["capabilities"] = caps
        schema = schemas[series]
        config = stream.configuration
        family = machine_family(config.machine) if config else None
        if family and not meta.get("devices"):
            fam = entry["families"].setdefault(family, {"from": [], "sections": []})
            fam["from"].append(name)
            for section in stream.sections:
                if not section.long_header:
                    continue
                row = [section.idstr, section.instance_id, section_vmsd_name(section), section.version_id]
                if row not in fam["sections"]:
                    fam["sections"].append(row)
        for section in stream.sections:
            if section.type != "section_full" or not isinstance(section.body, VmstateBody):
                continue
            vmsd = section.body.vmsd_name
            if schema.vmsd(vmsd) is not None:
                continue
            known = entry["vmsds"].setdefault(vmsd, {"version_id": section.version_id, "subsections_seen": []})
            for sub in subsection_names(section.body.fields, section.body.subsections):
                if sub not in known["subsections_seen"]:
                    known["subsections_seen"].append(sub)
    for entry in out["qemu"].values():
        for fam in entry["families"].values():
            fam["from"].sort()
        for known in entry["vmsds"].values():
            known["subsections_seen"].sort()
        entry["vmsds"] = dict(sorted(entry["vmsds"].items()))
    return out


def write_destinations_data(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Rebuild data/destinations.json.gz from captures (each .bin with its .meta.json sidecar)."""
    from ...codec.decode import decode

    captures = []
    for path in sorted(Path(p) for p in paths):
        meta = json.loads(path.with_suffix(".meta.json").read_text())
        captures.append((path.name, decode(str(path)), meta))
    doc = build_destinations_data(captures, {series: bundled_schema(series) for series in BUNDLED})
    text = json.dumps(doc, indent=1, sort_keys=False).encode() + b"\n"
    Path(out).write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    return doc
