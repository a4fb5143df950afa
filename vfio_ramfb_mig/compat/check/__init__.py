"""Would a destination QEMU load this stream? The load verdict, rule by rule, with QEMU's own words.

A destination is a QEMU version (its `-dump-vmstate`, bundled for 10.0 and 7.2,
or given as a file), a machine type, the devices it has beyond the machine's
own (`-device`), its validated migration capabilities and, optionally, its RAM
size. `check_stream` replays what QEMU's loader does with the stream, in stream
order, and returns a `Verdict`: one `Finding` per rule that fails, each naming
the rule, where in the stream (record index, offset, path), and the lines QEMU
prints; `Verdict.qemu_output` is exactly what QEMU would print for the first
failure (and, when the stream loads, its warnings).

Which savevm entries a destination has (QEMU's `find_se`):

* the machine's own: the sections a stock pc/q35 machine of that QEMU writes,
  taken from real captures (bundled as data/destinations.json.gz; a section is
  matched by idstr and instance, e.g. ``dma`` 0 and 1, ``0000:00:1f.0/ICH9LPC``);
* always-present `SaveVMHandlers` entries (``ram``);
* one per ``--device TYPE``: its vmsd from the dump (``ramfb`` -> ``ramfb-dev``,
  ``virtio-rng-pci`` -> ``virtio-rng`` of ``virtio-rng-device``), ``vfio-pci`` ->
  the ``…/vfio`` handler; a type without a vmsd adds nothing. A device's section
  may sit at any PCI path (vmig does not know the destination's slots).

Versions and subsections come from the dump (``version_id``, ``minimum_version_id``,
``Subsections``, recursively, looked up by vmsd name); for state registered without
``dc->vmsd`` (``cpu``, ``timer``, ...) from the captures (version, and the
subsections seen, which can only confirm a subsection, never refute one); for
VFIO from `VERSION_FACTS` (``VFIOPCIDevice/VFIODisplay`` exists from QEMU 8.2).

Modules, each named for what it holds:

* ``destination``: the destination model (`Destination`, `Entry`, `VmsdKnowledge`) and
  `destination`/`destination_of`, which build one;
* ``destination_data``: the bundled per-QEMU data derived from real captures, and its builder;
* ``qemu_facts``: what a QEMU release has from which version on (`VERSION_FACTS`);
* ``stream_facts``: what the rules read off a decoded stream;
* ``findings``: `Finding`, `Rule` and the context the rules read;
* ``config_rules``, ``section_rules``: the rule functions; ``rules``: `RULES`, the rules as data;
* ``verdict``: `check_stream`, `Verdict` and the `vmig check --json` document.

Imports: errors, model, compat.machines, vmstate.dump, text.
References: migration/savevm.c (qemu_loadvm_state_header, configuration_post_load,
configuration_validate_capabilities, get_capability, qemu_loadvm_section_start_full,
find_se, check_section_footer, qemu_loadvm_state), migration/vmstate.c
(vmstate_load_state, vmstate_subsection_load), migration/migration.c
(process_incoming_migration_co: "load of migration failed"), migration/ram.c
(ram_load_precopy, parse_ramblock), system/physmem.c (qemu_ram_resize),
hw/vfio/migration.c (vfio_load_device_config_state), hw/vfio/pci.c (vmstate_vfio_pci_config).
"""

from __future__ import annotations

from .destination import (
    DEVICE_EXTRA_VMSDS,
    Destination,
    Entry,
    VmsdKnowledge,
    destination,
    destination_for,
    destination_of,
    device_vmsd,
    parse_size,
    parse_version,
)
from .destination_data import (
    DATA_FILE,
    DATA_FORMAT,
    build_destinations_data,
    destinations_data,
    write_destinations_data,
)
from .findings import EINVAL, ENOENT, Finding, Rule
from .qemu_facts import VERSION_FACTS, VFIO_DISPLAY, VersionFact, has_fact
from .rules import RULES, RULES_BY_ID
from .stream_facts import section_vmsd_name
from .verdict import Verdict, check_stream, verdict_json

__all__ = [
    "DATA_FILE",
    "DATA_FORMAT",
    "DEVICE_EXTRA_VMSDS",
    "EINVAL",
    "ENOENT",
    "RULES",
    "RULES_BY_ID",
    "VERSION_FACTS",
    "VFIO_DISPLAY",
    "Destination",
    "Entry",
    "Finding",
    "Rule",
    "Verdict",
    "VersionFact",
    "VmsdKnowledge",
    "build_destinations_data",
    "check_stream",
    "destination",
    "destination_for",
    "destination_of",
    "destinations_data",
    "device_vmsd",
    "has_fact",
    "parse_size",
    "parse_version",
    "section_vmsd_name",
    "verdict_json",
    "write_destinations_data",
]
