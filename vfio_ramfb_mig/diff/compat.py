"""Compat input of `vmig diff --compat`: each stream judged where the other was made.

Where a stream was made is its `Origin`: the QEMU version (given, or the one its capture's
.meta.json sidecar records), optionally that QEMU's -dump-vmstate, or a `vmig profile` of
the whole VM. `judge_both` asks compat.check whether A would load on B's origin and B on A's.

Imports: errors, model, textin, compat.check (destinations, verdicts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compat.check import Destination, Verdict, check_stream, destination_for, destination_of, verdict_json
from ..errors import InputError
from ..model import MigrationStream


@dataclass(frozen=True)
class Origin:
    """Where one stream was made: a QEMU version (and its -dump-vmstate), or a `vmig profile` file."""

    qemu: str | None = None
    schema: str | None = None
    profile: str | None = None

    @classmethod
    def of(cls, path: str, *, qemu: str | None = None, schema: str | None = None,
           profile: str | None = None) -> Origin:
        """The origin of the stream at `path`: what was given, else the QEMU its sidecar records.

        Raises:
            InputError: nothing says which QEMU made it.
        """
        origin = cls(qemu or sidecar_qemu(path), schema, profile)
        if origin.qemu is None and schema is None and profile is None:
            raise InputError("--compat needs the QEMU version that made each stream: give --qemu (both), "
                             "--qemu-a/--qemu-b, --profile-a/--profile-b, or keep the .meta.json sidecars next "
                             "to the streams")
        return origin

    def destination(self, stream: MigrationStream, devices: Sequence[str]) -> Destination:
        """This origin as a destination: the profile's VM, or the VM that wrote `stream` on this QEMU."""
        if self.profile is not None:
            return destination_for(stream, profile=self.profile, devices=devices)
        return destination_of(stream, qemu=self.qemu, schema=self.schema, devices=devices)


def sidecar_qemu(path: str) -> str | None:
    """The QEMU version a capture's .meta.json sidecar records (vfio_ramfb_mig.qemu writes them)."""
    from ..textin import read_json

    sidecar = Path(path).with_suffix(".meta.json")
    if not sidecar.is_file():
        return None
    meta = read_json(sidecar)  # a sidecar that is there but broken is an error, with its place
    try:
        version = meta["qemu"]["version"]
        return version if isinstance(version, str) else None
    except (KeyError, TypeError):
        return None


def judge_both(a: MigrationStream, b: MigrationStream, origin_a: Origin, origin_b: Origin, *,
               devices: Sequence[str] = ()) -> tuple[Verdict, Verdict]:
    """(A where B was made, B where A was made); `devices` are devices both VMs have whose state
    their streams do not carry."""
    where_b = origin_b.destination(b, devices)
    where_a = origin_a.destination(a, devices)
    return check_stream(a, where_b), check_stream(b, where_a)


def compat_json(verdicts: tuple[Verdict, Verdict]) -> dict[str, Any]:
    """The "compat" member of `vmig diff --compat --json`."""
    return {"a_where_b_was_made": verdict_json(verdicts[0]), "b_where_a_was_made": verdict_json(verdicts[1])}
