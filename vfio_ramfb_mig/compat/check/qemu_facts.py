"""What a QEMU release has from which version on, for the facts a -dump-vmstate does not show.

Imports nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass

VFIO_DISPLAY = "VFIOPCIDevice/VFIODisplay"


@dataclass(frozen=True, slots=True)
class VersionFact:
    """Something a QEMU release has from `since` on, with where QEMU defines it."""

    name: str
    since: tuple[int, int]
    source: str


VERSION_FACTS: tuple[VersionFact, ...] = (
    VersionFact("VFIOPCIDevice/VFIODisplay", (8, 2),
                "hw/vfio/pci.c vmstate_vfio_pci_config .subsections = vmstate_vfio_display (added in 8.2 with "
                "ramfb migration; 7.2's VFIOPCIDevice has no subsections)"),
    VersionFact("ramfb-dev", (8, 2),
                "hw/display/ramfb-standalone.c ramfb_dev_vmstate (added in 8.2; not in QEMU 7.2.22's -dump-vmstate)"),
    VersionFact("vfio-migration-by-default", (8, 1),
                "hw/vfio/pci.c enable-migration (OnOffAuto, default auto) since 8.1; before it the experimental "
                "x-enable-migration (bool, default off: no savevm entry; checked on 7.2.22 -device vfio-pci,help)"),
    VersionFact("command:SWITCHOVER_START", (10, 0),
                "migration/savevm.c mig_cmd_args MIG_CMD_SWITCHOVER_START (cmd 11, new in 10.0; 7.2.22 refuses it: "
                "checked)"),
    VersionFact("validate:x-ignore-shared", (4, 2),
                "migration/savevm.c should_validate_capability (checked on 7.2.22 and 10.0.2)"),
    VersionFact("no-block-migration", (9, 1),
                "migration/block.c (blk_mig_init: the \"block\" savevm entry of the block capability, "
                "registered at start-up by 7.2.22's migration_object_init) was removed in 9.1"),
    VersionFact("validate:mapped-ram", (9, 0),
                "migration/savevm.c should_validate_capability; mapped-ram exists from 9.0 (qapi/migration.json)"),
)


def has_fact(version: tuple[int, ...] | None, name: str) -> bool | None:
    """Does QEMU `version` have it? None when the version is unknown."""
    if version is None:
        return None
    fact = next(f for f in VERSION_FACTS if f.name == name)
    return tuple(version[:2]) >= fact.since
