"""Realize rules for vfio-pci-nohotplug/vfio-pci and the standalone ramfb (vfio_ramfb_mig.compat.realize).

The big table's expected outcomes come from docs/wire-format.md §10.3, written below as
`SECTION_10_3` (first matching row wins), never from the code under test.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from vfio_ramfb_mig.compat import Decision, GlobalProp, realize_ramfb, realize_vfio_pci
from vfio_ramfb_mig.errors import CompatError, MigrationBlockedError

FAMILIES = ("pc-i440fx", "pc-q35")
VERSIONS = ("7.2", "8.1", "8.2", "9.0", "10.0")
NOT_GIVEN = "default"

WARNING = "x-ramfb-migrate=on but ramfb=off. Forcing x-ramfb-migrate to off."

EMITTED = "emitted"
ABSENT = "absent"
ABSENT_WARNED = "absent, with the forcing-off warning"
BLOCKED = "migration blocked"
ERR_NEEDS_MIGRATION = "error: x-ramfb-migrate requires enable-migration"

ANY = None

# §10.3 "Is VFIOPCIDevice/VFIODisplay emitted?" for vfio-pci-nohotplug with display=on whenever
# ramfb=on; host device supports migration. Columns: machine group, ramfb, x-ramfb-migrate as
# given, enable-migration as given, outcome. The first matching row wins.
SECTION_10_3: tuple[tuple[str | None, bool | None, frozenset[str] | None, frozenset[str] | None, str], ...] = (
    (ANY, True, frozenset({"on"}), frozenset({"off"}), ERR_NEEDS_MIGRATION),
    # enable-migration=off otherwise: the device adds a migration blocker, so there is no stream
    # (with ramfb=off and x-ramfb-migrate=on QEMU warns first, then blocks).
    (ANY, ANY, ANY, frozenset({"off"}), BLOCKED),
    (ANY, False, frozenset({"on"}), ANY, ABSENT_WARNED),
    (ANY, False, ANY, ANY, ABSENT),
    (ANY, True, frozenset({"off"}), ANY, ABSENT),
    (ANY, True, frozenset({"on", "auto"}), ANY, EMITTED),  # an explicit auto beats hw_compat_8_1
    (">=8.2", True, frozenset({NOT_GIVEN}), ANY, EMITTED),
    ("<=8.1", True, frozenset({NOT_GIVEN}), ANY, ABSENT),  # hw_compat_8_1: x-ramfb-migrate=off
)


def machine_group(version: str) -> str:
    major, minor = (int(part) for part in version.split("."))
    return "<=8.1" if (major, minor) <= (8, 1) else ">=8.2"


def expected_outcome(version: str, ramfb: bool, ramfb_migrate: str, migration: str) -> str:
    for group, want_ramfb, migrates, migrations, outcome in SECTION_10_3:
        if group not in (ANY, machine_group(version)):
            continue
        if want_ramfb not in (ANY, ramfb):
            continue
        if migrates is not ANY and ramfb_migrate not in migrates:
            continue
        if migrations is not ANY and migration not in migrations:
            continue
        return outcome
    raise AssertionError("SECTION_10_3 does not cover the case")


@dataclass(frozen=True)
class Case:
    machine: str
    ramfb: bool
    ramfb_migrate: str
    migration: str

    @property
    def id(self) -> str:
        return f"{self.machine}-ramfb={'on' if self.ramfb else 'off'}-xrm={self.ramfb_migrate}-em={self.migration}"


CASES = [
    Case(f"{family}-{version}", ramfb, ramfb_migrate, migration)
    for family, version, ramfb, ramfb_migrate, migration in itertools.product(
        FAMILIES, VERSIONS, (True, False), ("on", "off", "auto", NOT_GIVEN), ("on", "off", "auto", NOT_GIVEN))
]


def actual_outcome(case: Case) -> str:
    try:
        result = realize_vfio_pci(
            case.machine,
            ramfb=case.ramfb,
            x_ramfb_migrate=None if case.ramfb_migrate == NOT_GIVEN else case.ramfb_migrate,
            enable_migration=None if case.migration == NOT_GIVEN else case.migration,
            display="on" if case.ramfb else None,
        )
    except MigrationBlockedError:
        return BLOCKED
    except CompatError as exc:
        return f"error: {exc.message}"
    assert result.warnings in ((), (WARNING,))
    if result.vfio_display_subsection:
        assert not result.warnings
        return EMITTED
    return ABSENT_WARNED if result.warnings else ABSENT


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_section_10_3_decision_table(case: Case) -> None:
    version = case.machine.rsplit("-", 1)[1]
    assert actual_outcome(case) == expected_outcome(version, case.ramfb, case.ramfb_migrate, case.migration)


def test_table_covers_every_outcome() -> None:
    outcomes = {expected_outcome(c.machine.rsplit("-", 1)[1], c.ramfb, c.ramfb_migrate, c.migration) for c in CASES}
    assert outcomes == {EMITTED, ABSENT, ABSENT_WARNED, BLOCKED, ERR_NEEDS_MIGRATION}
    assert len(CASES) == 2 * 5 * 2 * 4 * 4


# --- decisions and effective values ----------------------------------------------------------

def test_compat_decides_off_on_8_1() -> None:
    result = realize_vfio_pci("pc-q35-8.1", ramfb=True, display="on")
    assert Decision("hw_compat_8_1", "x-ramfb-migrate=off") in result.decisions
    assert (result.ramfb, result.x_ramfb_migrate, result.enable_migration, result.display) == (
        True, "off", "auto", "on")
    assert result.vfio_display_subsection is False
    assert result.section_present is None


def test_default_decides_auto_on_8_2() -> None:
    result = realize_vfio_pci("pc-q35-8.2", ramfb=True, display="on")
    assert Decision("default", "x-ramfb-migrate=auto") in result.decisions
    assert result.decisions[-1] == Decision(
        "vfio_display_migration_needed", "x-ramfb-migrate=auto and ramfb=on: VFIOPCIDevice/VFIODisplay is sent")
    assert result.vfio_display_subsection is True


def test_explicit_auto_beats_compat() -> None:
    result = realize_vfio_pci("pc-i440fx-8.1", ramfb=True, display="on", x_ramfb_migrate="auto")
    assert Decision("-device", "x-ramfb-migrate=auto (overrides hw_compat_8_1 x-ramfb-migrate=off)") \
        in result.decisions
    assert result.vfio_display_subsection is True


def test_forcing_off_warning_is_a_decision_and_a_warning() -> None:
    result = realize_vfio_pci("pc-q35-10.0", x_ramfb_migrate="on")
    assert result.warnings == (WARNING,)
    assert Decision("vfio_realize", WARNING) in result.decisions
    assert result.x_ramfb_migrate == "off"
    assert result.vfio_display_subsection is False


def test_resolved_layers_are_reported() -> None:
    result = realize_vfio_pci("pc-q35-8.1", ramfb="on", display="on")
    assert [(r.name, r.rule) for r in result.resolved] == [
        ("ramfb", "-device"), ("x-ramfb-migrate", "hw_compat_8_1"), ("enable-migration", "default"),
        ("display", "-device")]


# --- display -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("display", ["off", "auto", None])
def test_ramfb_requires_display_on(version: str, display: str | None) -> None:
    # display=auto: vmig assumes no display method, so there is no display.
    with pytest.raises(CompatError, match=r"^ramfb=on requires display=on$") as info:
        realize_vfio_pci(f"pc-q35-{version}", ramfb=True, display=display)
    assert not isinstance(info.value, MigrationBlockedError)


@pytest.mark.parametrize("display", ["off", "auto", "on", None])
def test_display_without_ramfb_never_emits(display: str | None) -> None:
    result = realize_vfio_pci("pc-q35-10.0", display=display)
    assert result.vfio_display_subsection is False
    assert result.warnings == ()


def test_display_error_comes_before_enable_migration_error() -> None:
    with pytest.raises(CompatError, match=r"^ramfb=on requires display=on$"):
        realize_vfio_pci("q35", ramfb=True, x_ramfb_migrate="on", enable_migration="off")


# --- -global precedence ------------------------------------------------------------------------

def test_user_global_beats_compat_and_device_beats_global() -> None:
    auto = [GlobalProp.parse("vfio-pci-nohotplug.x-ramfb-migrate=auto")]
    assert realize_vfio_pci("pc-q35-8.1", ramfb=True, display="on", global_props=auto).vfio_display_subsection
    result = realize_vfio_pci("pc-q35-8.1", ramfb=True, display="on", global_props=auto, x_ramfb_migrate="off")
    assert result.vfio_display_subsection is False
    assert Decision("-device", "x-ramfb-migrate=off (overrides -global x-ramfb-migrate=auto)") in result.decisions


def test_global_on_parent_type_reaches_nohotplug() -> None:
    globals_ = [GlobalProp.parse("vfio-pci.display=on"), GlobalProp.parse("vfio-pci.x-ramfb-migrate=auto")]
    result = realize_vfio_pci("pc-q35-8.1", ramfb=True, global_props=globals_)
    assert (result.display, result.x_ramfb_migrate, result.vfio_display_subsection) == ("on", "auto", True)


def test_global_enable_migration_off_blocks() -> None:
    with pytest.raises(MigrationBlockedError):
        realize_vfio_pci("q35", ramfb=True, display="on",
                         global_props=[GlobalProp.parse("vfio-pci.enable-migration=off")])


# --- plain vfio-pci ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_plain_vfio_pci_never_sends_vfio_display(version: str) -> None:
    result = realize_vfio_pci(f"pc-q35-{version}", driver="vfio-pci", display="on")
    assert (result.ramfb, result.x_ramfb_migrate, result.vfio_display_subsection) == (False, "auto", False)


@pytest.mark.parametrize(("kwargs", "prop"), [
    ({"ramfb": True}, "ramfb"),
    ({"x_ramfb_migrate": "on"}, "x-ramfb-migrate"),
])
def test_plain_vfio_pci_rejects_ramfb_options(kwargs: dict[str, str | bool], prop: str) -> None:
    with pytest.raises(CompatError, match=rf"^Property 'vfio-pci.{prop}' not found$"):
        realize_vfio_pci("q35", driver="vfio-pci", **kwargs)  # type: ignore[arg-type]


def test_plain_vfio_pci_rejects_ramfb_global() -> None:
    message = r"^can't apply global vfio-pci.ramfb=on: Property 'vfio-pci.ramfb' not found$"
    with pytest.raises(CompatError, match=message):
        realize_vfio_pci("q35", driver="vfio-pci", global_props=[GlobalProp.parse("vfio-pci.ramfb=on")])
    # a global for the subclass does not reach a plain vfio-pci, so it is harmless there
    result = realize_vfio_pci("q35", driver="vfio-pci",
                              global_props=[GlobalProp.parse("vfio-pci-nohotplug.ramfb=on")])
    assert result.vfio_display_subsection is False


def test_unknown_driver() -> None:
    with pytest.raises(CompatError, match="unknown VFIO PCI driver 'vfio-platform'"):
        realize_vfio_pci("q35", driver="vfio-platform")


def test_invalid_on_off_auto() -> None:
    with pytest.raises(CompatError, match=r"^Parameter 'enable-migration' does not accept value 'maybe'$"):
        realize_vfio_pci("q35", enable_migration="maybe")


# --- fw_cfg DMA (hw_compat_2_4) --------------------------------------------------------------

@pytest.mark.parametrize("machine", ["pc-i440fx-2.4", "pc-q35-2.4"])
def test_ramfb_needs_fw_cfg_dma(machine: str) -> None:
    with pytest.raises(CompatError, match=r"^ramfb device requires fw_cfg with DMA$"):
        realize_vfio_pci(machine, ramfb=True, display="on")
    with pytest.raises(CompatError, match=r"^ramfb device requires fw_cfg with DMA$"):
        realize_ramfb(machine)
    assert realize_ramfb("pc-q35-2.5").section_present is False  # 2.5 has DMA; x-migrate still off


# --- standalone ramfb ----------------------------------------------------------------------------

@pytest.mark.parametrize(("machine", "x_migrate", "present", "rule"), [
    ("pc-q35-7.2", None, False, "hw_compat_8_1"),
    ("pc-i440fx-8.1", None, False, "hw_compat_8_1"),
    ("pc-q35-8.2", None, True, "default"),
    ("pc-i440fx-9.0", None, True, "default"),
    ("q35", None, True, "default"),
    ("pc-q35-8.1", True, True, "-device"),
    ("pc-i440fx-7.2", "on", True, "-device"),
    ("pc-q35-8.2", False, False, "-device"),
    ("pc-q35-10.0", "off", False, "-device"),
])
def test_ramfb_x_migrate(machine: str, x_migrate: bool | str | None, present: bool, rule: str) -> None:
    result = realize_ramfb(machine, x_migrate=x_migrate)
    assert result.section_present is present
    assert result.x_migrate is present
    assert result.vfio_display_subsection is None
    assert result.resolved[0].rule == rule
    verb = "is" if present else "is not"
    assert result.decisions[-1] == Decision(
        "migrate_needed", f"x-migrate={'on' if present else 'off'}: the ramfb-dev section {verb} sent")


def test_ramfb_global() -> None:
    assert realize_ramfb("pc-q35-8.1", global_props=[GlobalProp.parse("ramfb.x-migrate=on")]).section_present
    assert not realize_ramfb("q35", global_props=[GlobalProp.parse("ramfb.x-migrate=off")]).section_present
    assert realize_ramfb("q35", x_migrate=True,
                         global_props=[GlobalProp.parse("ramfb.x-migrate=off")]).section_present


def test_ramfb_invalid_value() -> None:
    with pytest.raises(CompatError, match=r"^Parameter 'x-migrate' expects 'on' or 'off'$"):
        realize_ramfb("q35", x_migrate="auto")
