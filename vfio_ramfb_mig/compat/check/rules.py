"""The rules QEMU's loader applies, as data: one `Rule` per check, in QEMU's order, each citing
where QEMU makes it (style.md section 6).

Imports: compat.check.{findings, config_rules, section_rules}.
"""

from __future__ import annotations

from collections.abc import Mapping

from .config_rules import (
    rule_architecture,
    rule_capability_mismatch,
    rule_capability_unknown,
    rule_configuration_missing,
    rule_machine_type,
    rule_target_page_bits,
    rule_uuid,
)
from .findings import Rule
from .load_rules import rule_compressed_pages, rule_cpregs, rule_illegal_ram_offset, rule_postcopy_advise, rule_ram_blocks
from .section_rules import (
    rule_command_unknown,
    rule_opaque_sections,
    rule_section_footer,
    rule_section_minimum_version,
    rule_section_version,
    rule_subsections,
    rule_unknown_section,
    rule_vmdesc,
)

_SAVEVM = "migration/savevm.c"


RULES: tuple[Rule, ...] = (
    Rule("configuration-missing", "the configuration record must follow the header",
         f"{_SAVEVM} qemu_loadvm_state_header (\"Configuration section missing\")", rule_configuration_missing),
    Rule("capability-unknown", "every capability in configuration/capabilities must exist at the destination",
         f"{_SAVEVM} get_capability (\"Received unknown capability %s\"), then migration/vmstate.c "
         f"vmstate_load_state (\"Failed to load %s:%s\")", rule_capability_unknown),
    Rule("machine-type", "the machine type must match (strncmp over the received length)",
         f"{_SAVEVM} configuration_post_load (\"Machine type received is '%.*s' and local is '%s'\")",
         rule_machine_type),
    Rule("architecture", "the stream's target (machine type, target-page-bits, sections) is the destination's",
         "vmig (compat.catalog.guess_arch); QEMU refuses such a stream by its machine type or page bits",
         rule_architecture),
    Rule("target-page-bits", "TARGET_PAGE_BITS must match",
         f"{_SAVEVM} configuration_post_load (\"Received TARGET_PAGE_BITS is %d but local is %d\")",
         rule_target_page_bits),
    Rule("capability-mismatch", "validated capabilities (x-ignore-shared, mapped-ram) must be set alike",
         f"{_SAVEVM} configuration_validate_capabilities (\"Capability %s is %s, but received capability is %s\")",
         rule_capability_mismatch),
    Rule("uuid", "configuration/uuid must equal the destination's -uuid",
         f"{_SAVEVM} vmstate_uuid_post_load (\"UUID received is %s and local is %s\")", rule_uuid),
    Rule("unknown-section", "every section needs a savevm entry with its idstr and instance at the destination",
         f"{_SAVEVM} qemu_loadvm_section_start_full, find_se (\"Unknown savevm section or instance '%s' %u. ...\")",
         rule_unknown_section),
    Rule("section-version-too-new", "a section's version must not exceed the destination entry's version",
         f"{_SAVEVM} qemu_loadvm_section_start_full (\"savevm: unsupported version %d for '%s' v%d\")",
         rule_section_version),
    Rule("section-version-too-old", "a section's version must not be below the vmsd's minimum_version_id",
         "migration/vmstate.c vmstate_load_state (\"%s: incoming version_id %d is too old for local minimum "
         "version_id  %d\")", rule_section_minimum_version),
    Rule("command-unknown", "every COMMAND must exist at the destination (SWITCHOVER_START only from 10.0)",
         f"{_SAVEVM} loadvm_process_command (\"MIG_CMD 0x%x unknown (len 0x%x)\")", rule_command_unknown),
    Rule("postcopy-advise", "a stream made with postcopy-ram needs it at the destination, and only then",
         f"{_SAVEVM} loadvm_postcopy_handle_advise (\"RAM postcopy is disabled but have 16 byte advise\", "
         "\"RAM postcopy is enabled but have 0 byte advise\", \"Postcopy needs matching target page sizes "
         "(s=%d d=%zd)\")", rule_postcopy_advise),
    Rule("ram-blocks", "every RAM block the stream lists must exist at the destination with the same used length "
         "(or one it can resize to)",
         "migration/ram.c parse_ramblocks (\"Unknown ramblock \\\"%s\\\", cannot accept migration\"), parse_ramblock -> "
         "system/physmem.c qemu_ram_resize (\"Size mismatch: %s: 0x%x != 0x%x\", \"Size too large: %s: 0x%x > 0x%x\")",
         rule_ram_blocks),
    Rule("compressed-page", "COMPRESS_PAGE records load only into QEMU <= 9.0 with the compress capability on",
         "migration/ram.c ram_load_precopy: QEMU <= 9.0 (\"Received an unexpected compressed page\" with "
         "compress off), QEMU >= 9.1 (\"Unknown combination of migration flags: 0x%x\"), then "
         f"{_SAVEVM} qemu_loadvm_section_part_end (\"error while loading state section id %d(%s)\")",
         rule_compressed_pages),
    Rule("illegal-ram-offset", "every page record must lie inside its block's used length",
         "migration/ram.c ram_load_precopy -> host_from_ram_block_offset (\"Illegal RAM offset %x\"), "
         f"{_SAVEVM} qemu_loadvm_section_part_end (\"error while loading state section id %d(%s)\")",
         rule_illegal_ram_offset),
    Rule("cpu-registers", "arm: the incoming cpreg list may be no longer than the destination's and may name no "
         "register it lacks",
         "target/arm/machine.c vmstate_arm_cpu VMSTATE_INT32_POSITIVE_LE(cpreg_vmstate_array_len) "
         "(migration/vmstate-types.c \"Invalid value %d expecting positive value <= %d\"), cpu_post_load "
         "(returns -1: \"Operation not permitted\")", rule_cpregs),
    Rule("unknown-subsection", "every subsection must be listed in the destination vmsd's subsections "
         "(and its version within range)",
         "migration/vmstate.c vmstate_subsection_load (-ENOENT, no message of its own) and vmstate_load_state; "
         "hw/vfio/migration.c vfio_load_device_config_state (\"%s: Failed to load device config space\")",
         rule_subsections),
    Rule("section-footer", "sections end in a footer exactly when the destination's send-section-footer is on",
         f"{_SAVEVM} check_section_footer (\"Missing section footer for %s\"); qemu_loadvm_state_main "
         f"(\"Unknown savevm section type %d\" for the 0x7e of an unexpected footer)", rule_section_footer),
    Rule("opaque-section", "sections vmig could not decode are checked by header only", "vmig", rule_opaque_sections),
    Rule("vmdesc", "QEMU expects a vmdesc after EOF unless its suppress-vmdesc is on",
         f"{_SAVEVM} qemu_loadvm_state (\"Expected vmdescription section, but got %d\")", rule_vmdesc),
)


RULES_BY_ID: Mapping[str, Rule] = {r.rule_id: r for r in RULES}


#: configuration checks run in this order inside the configuration record (get_capability, then post_load)
CONFIG_ORDER = ("configuration-missing", "capability-unknown", "machine-type", "architecture", "target-page-bits",
                 "capability-mismatch", "uuid")
