"""Machine types, name resolution and compat-array stacking (vfio_ramfb_mig.compat.machines/props).

Expected values are facts read from QEMU 10.0.2 (hw/i386/pc_piix.c, hw/i386/pc_q35.c,
hw/core/machine.c, hw/i386/pc.c, include/hw/boards.h), written out here by hand.
"""

from __future__ import annotations

import pytest

from vfio_ramfb_mig.compat import (
    COMPAT_ARRAYS,
    MACHINES,
    GlobalProp,
    MachineType,
    compat_arrays,
    compat_props,
    effective_properties,
    machine_names,
    prop_for,
    resolve_machine,
    resolve_property,
)
from vfio_ramfb_mig.compat.machines import MachineName, machine_family, parse_machine_name, resolve_machine_for
from vfio_ramfb_mig.errors import CompatError, VmigError

VERSIONS = [
    "2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "3.0", "3.1", "4.0", "4.1", "4.2",
    "5.0", "5.1", "5.2", "6.0", "6.1", "6.2", "7.0", "7.1", "7.2", "8.0", "8.1", "8.2", "9.0", "9.1", "9.2", "10.0",
]


# --- the machine list --------------------------------------------------------------------

def test_every_qemu_10_0_machine_is_listed() -> None:
    i440fx = [f"pc-i440fx-{v}" for v in VERSIONS]
    q35 = [f"pc-q35-{v}" for v in VERSIONS[:11]] + ["pc-q35-4.0", "pc-q35-4.0.1"] + \
          [f"pc-q35-{v}" for v in VERSIONS[12:]]
    virt = [f"virt-{v}" for v in VERSIONS[2:]]
    assert machine_names() == tuple(i440fx + q35 + virt)
    assert len(MACHINES) == 61 + 28


@pytest.mark.parametrize(("name", "deprecated"), [
    ("pc-i440fx-2.4", True), ("pc-q35-4.0.1", True), ("pc-q35-6.2", True), ("pc-i440fx-7.0", True),
    ("pc-q35-7.0", True), ("pc-q35-7.1", False), ("pc-i440fx-7.2", False), ("pc-q35-10.0", False),
])
def test_deprecated_means_version_at_most_7_0(name: str, deprecated: bool) -> None:
    machine = resolve_machine(name)
    assert machine.deprecated is deprecated
    expected = (f"Machine type '{name}' is deprecated: machines more than 3 years old are subject to "
                "deletion after 6 years") if deprecated else None
    assert machine.deprecation_warning == expected


@pytest.mark.parametrize(("name", "deletable"), [
    ("pc-q35-3.1", True), ("pc-q35-4.0", True), ("pc-q35-4.0.1", True), ("pc-q35-4.1", False),
])
def test_subject_to_deletion_means_version_at_most_4_0(name: str, deletable: bool) -> None:
    assert resolve_machine(name).subject_to_deletion is deletable


def test_machine_type_fields() -> None:
    machine = MachineType("pc-q35", (4, 0, 1))
    assert machine.name == str(machine) == "pc-q35-4.0.1"
    assert machine.compat_version == (4, 0)
    assert resolve_machine("pc-i440fx-10.0").is_default
    assert not resolve_machine("pc-q35-10.0").is_default
    assert resolve_machine("pc-q35-10.0").alias == "q35"
    assert resolve_machine("pc-i440fx-10.0").alias == "pc"
    assert resolve_machine("pc-i440fx-9.2").alias is None


# --- names and aliases -------------------------------------------------------------------

@pytest.mark.parametrize(("given", "canonical"), [
    ("pc-q35-8.1", "pc-q35-8.1"),
    ("pc-i440fx-2.10", "pc-i440fx-2.10"),
    ("pc-q35-4.0.1", "pc-q35-4.0.1"),
    ("pc", "pc-i440fx-10.0"),
    ("q35", "pc-q35-10.0"),
    ("pc-8.1", "pc-i440fx-8.1"),
    ("pc-7.2", "pc-i440fx-7.2"),
    ("q35-8.1", "pc-q35-8.1"),
    ("q35-4.0.1", "pc-q35-4.0.1"),
    (" q35-9.2 ", "pc-q35-9.2"),
])
def test_resolve_machine_accepts_names_and_aliases(given: str, canonical: str) -> None:
    assert resolve_machine(given).name == canonical


def test_resolve_machine_passes_machine_types_through() -> None:
    machine = MACHINES[0]
    assert resolve_machine(machine) is machine


def test_unknown_machine_lists_close_names() -> None:
    with pytest.raises(CompatError) as info:
        resolve_machine("pc-q35-8.3")
    assert info.value.message.startswith("unknown machine type 'pc-q35-8.3'; close: pc-q35-8.2, pc-q35-8.1, ")
    assert isinstance(info.value, VmigError)


@pytest.mark.parametrize(("given", "first_suggestion"), [
    ("q35-8.3", "pc-q35-8.2"),        # the short spelling is suggested in canonical form
    ("pc-8.3", "pc-i440fx-8.2"),
    ("pc-i440fx-11.0", "pc-i440fx-10.0"),
    ("pc-4.0.1", "pc-i440fx-4.1"),    # 4.0.1 exists only for q35
])
def test_unknown_machine_suggestions(given: str, first_suggestion: str) -> None:
    with pytest.raises(CompatError, match=rf"^unknown machine type '{given}'; close: {first_suggestion}, "):
        resolve_machine(given)


def test_unknown_machine_without_close_names() -> None:
    with pytest.raises(CompatError, match=r"^unknown machine type 'raspi3b'; valid: "):
        resolve_machine("raspi3b")


# --- the one machine-name parser ---------------------------------------------------------

@pytest.mark.parametrize(("given", "parsed"), [
    ("pc-q35-8.1", MachineName("pc-q35", (8, 1))),
    ("pc-i440fx-2.10", MachineName("pc-i440fx", (2, 10))),
    ("pc-q35-4.0.1", MachineName("pc-q35", (4, 0, 1))),
    ("q35-7.2", MachineName("pc-q35", (7, 2))),          # vmig's short spelling
    ("pc-9.2", MachineName("pc-i440fx", (9, 2))),
    ("pc", MachineName("pc-i440fx", None)),              # QEMU's aliases: the newest machine of that QEMU
    ("q35", MachineName("pc-q35", None)),
    ("pc-q35-11.0", MachineName("pc-q35", (11, 0))),     # a name; whether a QEMU has it is not the parser's
    ("pc-q35-8", None), ("pc-q35-8.1.2.3", None), ("pc-q35-08.1", None), ("isapc", None), ("microvm", None),
    ("pc-q35", None), ("", None),
])
def test_parse_machine_name(given: str, parsed: MachineName | None) -> None:
    assert parse_machine_name(given) == parsed
    assert machine_family(given) == (parsed.family if parsed else None)


@pytest.mark.parametrize(("given", "qemu", "canonical"), [
    ("q35", (7, 2), "pc-q35-7.2"),             # the alias names that QEMU's newest
    ("pc", (9, 1, 3), "pc-i440fx-9.1"),
    ("pc-q35-7.2", (7, 2), "pc-q35-7.2"),
    ("q35-5.0", (7, 2), "pc-q35-5.0"),
    ("pc-q35-9.0", None, "pc-q35-9.0"),        # version unknown: taken as written
    ("q35", (10, 0), "pc-q35-10.0"),           # QEMU 10.0: the machine list of resolve_machine
])
def test_resolve_machine_for_a_qemu_version(given: str, qemu: tuple[int, ...] | None, canonical: str) -> None:
    assert resolve_machine_for(given, qemu).name == canonical


@pytest.mark.parametrize(("given", "qemu", "message"), [
    ("pc-q35-8.2", (7, 2), "^QEMU 7.2 has no machine type 'pc-q35-8.2'; its newest is pc-q35-7.2$"),
    ("q35", None, "^machine alias 'q35' needs the QEMU version"),
    ("raspi3b", (8, 2), "^unknown machine type 'raspi3b'; vmig judges"),
    ("pc-q35-2.3", (10, 0), "^unknown machine type 'pc-q35-2.3'; close: "),  # 10.0 no longer has 2.3
])
def test_resolve_machine_for_refuses(given: str, qemu: tuple[int, ...] | None, message: str) -> None:
    with pytest.raises(CompatError, match=message):
        resolve_machine_for(given, qemu)


# --- compat arrays and their stacking --------------------------------------------------------

def test_transcription_counts() -> None:
    # 29 versions (2.4 ... 9.2) x (hw_compat + pc_compat), plus pc_q35_compat_defaults and arm_virt_compat;
    # QEMU 10.0.2 has 237 entries in the versioned arrays (pc_compat_2_4's PC_CPU_MODEL_IDS expands to 3).
    assert len(COMPAT_ARRAYS) == 60
    versioned = [array for array in COMPAT_ARRAYS.values() if array.version is not None]
    assert sum(len(array.props) for array in versioned) == 237
    assert [len(COMPAT_ARRAYS[f"hw_compat_{v}"].props) for v in ("9_2", "9_1", "9_0", "8_2", "8_1", "8_0", "7_2")] \
        == [8, 1, 6, 4, 7, 2, 4]
    assert [len(COMPAT_ARRAYS[f"pc_compat_{v}"].props) for v in ("9_2", "9_1", "9_0", "8_2", "8_1", "8_0", "7_2")] \
        == [0, 4, 5, 0, 0, 1, 1]
    assert COMPAT_ARRAYS["hw_compat_3_0"].props == ()


def test_pc_q35_8_1_stacks_9_2_down_to_8_1() -> None:
    names = [array.name for array in compat_arrays("pc-q35-8.1")]
    assert names == [
        "pc_q35_compat_defaults",
        "hw_compat_9_2", "pc_compat_9_2",
        "hw_compat_9_1", "pc_compat_9_1",
        "hw_compat_9_0", "pc_compat_9_0",
        "hw_compat_8_2", "pc_compat_8_2",
        "hw_compat_8_1", "pc_compat_8_1",
    ]
    assert [array.name for array in compat_arrays("pc-i440fx-8.2")] == [
        "hw_compat_9_2", "pc_compat_9_2", "hw_compat_9_1", "pc_compat_9_1",
        "hw_compat_9_0", "pc_compat_9_0", "hw_compat_8_2", "pc_compat_8_2",
    ]


def test_latest_machines_get_no_versioned_arrays() -> None:
    assert compat_arrays("pc") == ()
    assert [array.name for array in compat_arrays("q35")] == ["pc_q35_compat_defaults"]
    assert effective_properties("pc-i440fx-10.0") == []


def test_q35_4_0_and_4_0_1_share_hw_compat_4_0() -> None:
    # pc_q35_machine_4_0_1_options applies the 4.0 arrays; 4.0 inherits them and adds none.
    assert compat_arrays("pc-q35-4.0") == compat_arrays("pc-q35-4.0.1")
    names = [array.name for array in compat_arrays("pc-q35-3.1")]
    assert names.count("hw_compat_4_0") == 1
    assert names[-4:] == ["hw_compat_4_0", "pc_compat_4_0", "hw_compat_3_1", "pc_compat_3_1"]


def test_positions_follow_application_order() -> None:
    applied = compat_props("pc-q35-8.1")
    assert [entry.position for entry in applied] == list(range(len(applied)))
    assert applied[0].array == "pc_q35_compat_defaults"
    assert applied[-1].array == "hw_compat_8_1"  # pc_compat_8_1 is empty


@pytest.mark.parametrize(("machine", "driver", "prop", "value", "array"), [
    # the vmig-relevant entries
    ("pc-q35-8.1", "vfio-pci-nohotplug", "x-ramfb-migrate", "off", "hw_compat_8_1"),
    ("pc-i440fx-7.2", "ramfb", "x-migrate", "off", "hw_compat_8_1"),
    ("pc-q35-9.2", "migration", "send-switchover-start", "off", "hw_compat_9_2"),
    ("pc-q35-9.2", "migration", "multifd-clean-tls-termination", "false", "hw_compat_9_2"),
    ("pc-q35-8.2", "migration", "zero-page-detection", "legacy", "hw_compat_8_2"),
    ("pc-q35-8.0", "migration", "multifd-flush-after-each-section", "on", "hw_compat_8_0"),
    ("pc-q35-7.2", "migration", "x-preempt-pre-7-2", "true", "hw_compat_7_2"),
    ("pc-q35-9.2", "vfio-pci", "x-migration-multifd-transfer", "off", "hw_compat_9_2"),
    ("pc-q35-9.0", "vfio-pci", "skip-vsc-check", "false", "hw_compat_9_0"),
    ("pc-i440fx-2.4", "fw_cfg_io", "dma_enabled", "off", "hw_compat_2_4"),
    # a global on a parent type reaches the subclass
    ("pc-q35-9.2", "vfio-pci-nohotplug", "x-migration-multifd-transfer", "off", "hw_compat_9_2"),
    ("pc-q35-9.1", "vfio-pci-nohotplug", "x-pcie-ext-tag", "false", "hw_compat_9_1"),
    ("pc-q35-8.0", "vfio-pci", "x-pcie-ari-nextfn-1", "on", "hw_compat_8_0"),
    ("pc-q35-7.2", "vfio-pci", "x-pcie-err-unc-mask", "off", "hw_compat_7_2"),
    ("pc-q35-2.8", "vfio-pci", "x-pcie-extcap-init", "off", "hw_compat_2_8"),
    # conflicts: the array applied last (the oldest) wins
    ("pc-q35-8.2", "virtio-iommu-pci", "aw-bits", "64", "hw_compat_8_2"),
    ("pc-q35-9.0", "virtio-iommu-pci", "aw-bits", "39", "pc_q35_compat_defaults"),
    ("pc-i440fx-2.8", "pci-bridge", "shpc", "on", "hw_compat_2_8"),
    ("pc-i440fx-2.9", "pci-bridge", "shpc", "off", "hw_compat_2_9"),
    ("pc-q35-6.0", "nvme-ns", "eui64-default", "off", "hw_compat_6_0"),
    ("pc-q35-6.1", "nvme-ns", "eui64-default", "on", "hw_compat_7_0"),
    ("pc-q35-6.2", "virtio-mem", "unplugged-inaccessible", "off", "pc_compat_6_2"),
    ("pc-q35-7.0", "virtio-mem", "unplugged-inaccessible", "auto", "pc_compat_8_0"),
    ("pc-q35-6.0", "ICH9-LPC", "x-keep-pci-slot-hpc", "true", "pc_compat_6_0"),
    ("pc-q35-3.1", "virtio-balloon-device", "qemu-4-0-config-size", "false", "hw_compat_3_1"),
    ("pc-q35-4.0.1", "virtio-balloon-device", "qemu-4-0-config-size", "true", "hw_compat_4_0"),
    ("pc-i440fx-2.4", "qemu64-x86_64-cpu", "model-id", "QEMU Virtual CPU version 2.4.0", "pc_compat_2_4"),
])
def test_prop_for(machine: str, driver: str, prop: str, value: str, array: str) -> None:
    entry = prop_for(machine, driver, prop)
    assert entry is not None
    assert (entry.value, entry.array) == (value, array)
    file = "hw/i386/pc_q35.c" if array.startswith("pc_q35") else \
        "hw/i386/pc.c" if array.startswith("pc_") else "hw/core/machine.c"
    assert entry.source == f"{array} ({file})"


@pytest.mark.parametrize(("machine", "driver", "prop"), [
    ("pc-q35-8.2", "vfio-pci-nohotplug", "x-ramfb-migrate"),  # 8.2 is past hw_compat_8_1
    ("pc-q35-8.2", "ramfb", "x-migrate"),
    ("pc-q35-8.1", "vfio-pci", "x-ramfb-migrate"),  # a subclass global never reaches the parent
    ("pc-q35-10.0", "migration", "send-switchover-start"),
    ("pc-i440fx-9.0", "virtio-iommu-pci", "aw-bits"),  # the 39-bit default is q35-only
    ("pc-i440fx-2.5", "fw_cfg_io", "dma_enabled"),
])
def test_prop_for_absent(machine: str, driver: str, prop: str) -> None:
    assert prop_for(machine, driver, prop) is None


def test_effective_properties_keep_one_winner_per_key() -> None:
    effective = effective_properties("pc-q35-8.1")
    keys = [(entry.driver, entry.property) for entry in effective]
    assert len(keys) == len(set(keys))
    by_key = {(entry.driver, entry.property): entry for entry in effective}
    assert by_key[("vfio-pci-nohotplug", "x-ramfb-migrate")].source == "hw_compat_8_1 (hw/core/machine.c)"
    assert by_key[("ramfb", "x-migrate")].value == "off"
    assert by_key[("migration", "zero-page-detection")].value == "legacy"
    assert by_key[("virtio-iommu-pci", "aw-bits")].array == "hw_compat_8_2"
    assert [entry.position for entry in effective] == sorted(entry.position for entry in effective)


def test_optional_entries_are_marked() -> None:
    optional = [(p.driver, p.property) for p in COMPAT_ARRAYS["hw_compat_2_6"].props if p.optional]
    assert optional == [("virtio-pci", "disable-modern"), ("virtio-pci", "disable-legacy")]


# --- property resolution layers ----------------------------------------------------------------

def test_resolve_property_layers() -> None:
    default = resolve_property("pc-q35-8.2", "vfio-pci-nohotplug", "x-ramfb-migrate")
    assert (default.value, default.rule, default.text) == ("auto", "default", "x-ramfb-migrate=auto")
    compat = resolve_property("pc-q35-8.1", "vfio-pci-nohotplug", "x-ramfb-migrate")
    assert (compat.value, compat.rule, compat.text) == ("off", "hw_compat_8_1", "x-ramfb-migrate=off")
    glob = resolve_property("pc-q35-8.1", "vfio-pci-nohotplug", "x-ramfb-migrate",
                            global_props=[GlobalProp.parse("vfio-pci-nohotplug.x-ramfb-migrate=auto")])
    assert (glob.value, glob.rule) == ("auto", "-global")
    assert glob.overrides == ("hw_compat_8_1 x-ramfb-migrate=off",)
    device = resolve_property("pc-q35-8.1", "vfio-pci-nohotplug", "x-ramfb-migrate", device_value="on",
                              global_props=[GlobalProp("vfio-pci-nohotplug", "x-ramfb-migrate", "auto")])
    assert (device.value, device.rule, device.overrides) == ("on", "-device", ("-global x-ramfb-migrate=auto",))


def test_last_global_wins_and_globals_match_subclasses() -> None:
    globals_ = [GlobalProp.parse("vfio-pci.display=auto"), GlobalProp.parse("vfio-pci-nohotplug.display=on")]
    assert resolve_property("q35", "vfio-pci-nohotplug", "display", global_props=globals_).value == "on"
    assert resolve_property("q35", "vfio-pci", "display", global_props=globals_).value == "auto"


def test_global_prop_parse() -> None:
    assert GlobalProp.parse("ramfb.x-migrate=on") == GlobalProp("ramfb", "x-migrate", "on")
    assert GlobalProp.parse("driver=ramfb,property=x-migrate,value=off") == GlobalProp("ramfb", "x-migrate", "off")
    assert str(GlobalProp("migration", "send-section-footer", "off")) == "migration.send-section-footer=off"
    with pytest.raises(CompatError, match="options 'driver', 'property', and 'value' are required"):
        GlobalProp.parse("ramfb")


@pytest.mark.parametrize(("driver", "prop", "value", "message"), [
    ("ramfb", "x-migrate", "maybe", "Parameter 'x-migrate' expects 'on' or 'off'"),
    ("vfio-pci-nohotplug", "x-ramfb-migrate", "yes", "Parameter 'x-ramfb-migrate' does not accept value 'yes'"),
])
def test_invalid_values_use_qemu_messages(driver: str, prop: str, value: str, message: str) -> None:
    with pytest.raises(CompatError, match=f"^{message}$"):
        resolve_property("q35", driver, prop, device_value=value)
    with pytest.raises(CompatError, match=f"^can't apply global {driver}.{prop}={value}: {message}$"):
        resolve_property("q35", driver, prop, global_props=[GlobalProp(driver, prop, value)])


@pytest.mark.parametrize("spelling", ["on", "yes", "true", "y", True])
def test_bool_spellings(spelling: str | bool) -> None:
    assert resolve_property("pc-q35-8.1", "ramfb", "x-migrate", device_value=spelling).value is True


def test_plain_vfio_pci_has_no_ramfb_property() -> None:
    with pytest.raises(CompatError, match=r"^Property 'vfio-pci.x-ramfb-migrate' not found$"):
        resolve_property("q35", "vfio-pci", "x-ramfb-migrate")
