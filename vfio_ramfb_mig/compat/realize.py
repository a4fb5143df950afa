"""What QEMU 10.0 decides when it creates a VFIO or ramfb device, and what that puts in the stream.

Given a machine type and the user's options, `realize_vfio_pci` and `realize_ramfb`
resolve each property (device default < machine compat < ``-global`` < ``-device``),
then replay the realize-time rules in QEMU's order. The result says whether the
``VFIOPCIDevice/VFIODisplay`` subsection (VFIO) or the ``ramfb-dev`` section
(standalone ramfb) is in the stream, with one `Decision` per step that decided
something, and QEMU's warnings verbatim. Configurations QEMU refuses raise
`CompatError` with QEMU's message; a device that blocks migration raises
`MigrationBlockedError`, because then QEMU writes no stream at all.

vmig cannot probe the host device, so it assumes (see `ASSUMPTIONS`):

* the host device supports migration, so enable-migration=auto/on adds no blocker
  (a device without support would be blocked with auto, or fail realize with on);
* display=on finds a display method (region or dmabuf with OpenGL), so the probe
  succeeds; without one QEMU fails realize with "vfio: device doesn't support any
  (known) display method" and there is no stream either;
* display=auto finds no display method, as on the emulated device vmig models, so it
  silently gives no display, and ramfb=on then fails;
* failover_pair_id is not set (it would skip vfio_migration_realize), and there is no
  ``-only-migratable`` (which turns a blocker into a realize error).

Imports `vfio_ramfb_mig.errors` and sibling compat modules.

References:
    hw/vfio/pci.c        vfio_realize (display probe, ramfb, x-ramfb-migrate, enable-migration checks),
                         vfio_display_migration_needed, vmstate_vfio_display, vfio_pci_nohotplug_dev_info
    hw/vfio/display.c    vfio_display_probe, vfio_display_dmabuf_init, vfio_display_region_init
    hw/vfio/migration.c  vfio_migration_realize, vfio_block_migration
    hw/display/ramfb.c   ramfb_setup ("ramfb device requires fw_cfg with DMA")
    hw/display/ramfb-standalone.c  ramfb_realizefn, migrate_needed, ramfb_dev_vmstate
    hw/core/machine.c    hw_compat_8_1 (ramfb x-migrate=off, vfio-pci-nohotplug x-ramfb-migrate=off),
                         hw_compat_2_4 (fw_cfg_io dma_enabled=off)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from vfio_ramfb_mig.compat.machines import MachineType, resolve_machine
from vfio_ramfb_mig.compat.props import GlobalProp, ResolvedProperty, matching_globals, resolve_property
from vfio_ramfb_mig.compat.qom import OnOffAuto, PropValue, lacks_property, property_spec
from vfio_ramfb_mig.errors import CompatError, MigrationBlockedError

VFIO_DISPLAY_SUBSECTION = "VFIOPCIDevice/VFIODisplay"
RAMFB_SECTION = "ramfb-dev"

VFIO_DRIVERS: tuple[str, ...] = ("vfio-pci", "vfio-pci-nohotplug")
# x86 creates its fw_cfg as fw_cfg_io (hw/i386/fw_cfg.c fw_cfg_arch_create -> fw_cfg_init_io_dma).
FW_CFG_DRIVER = "fw_cfg_io"

ASSUMPTIONS: tuple[str, ...] = (
    "the host VFIO device supports migration: enable-migration=auto/on adds no migration blocker",
    "display=on: the host device has a display method, so vfio_display_probe succeeds",
    "display=auto: the device has no display method (as the emulated device vmig models), so there is no display",
    "failover_pair_id is not set and QEMU runs without -only-migratable",
)

# QEMU's texts, verbatim (hw/vfio/pci.c vfio_realize, hw/display/ramfb.c ramfb_setup).
WARN_RAMFB_MIGRATE_FORCED_OFF = "x-ramfb-migrate=on but ramfb=off. Forcing x-ramfb-migrate to off."
ERR_RAMFB_NEEDS_DISPLAY = "ramfb=on requires display=on"
ERR_RAMFB_MIGRATE_NEEDS_MIGRATION = "x-ramfb-migrate requires enable-migration"
ERR_RAMFB_NEEDS_FW_CFG_DMA = "ramfb device requires fw_cfg with DMA"
MSG_MIGRATION_BLOCKED = "enable-migration=off: the device blocks migration, so QEMU writes no stream"


@dataclass(frozen=True, slots=True)
class Decision:
    """One step that decided something: ``rule`` is a QEMU array/function or a vmig layer name."""

    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.text}"


@dataclass(frozen=True, slots=True)
class RealizeResult:
    """Effective property values after realize, how they came about, and what the stream carries.

    VFIO results fill ``ramfb`` ... ``display`` and ``vfio_display_subsection``; standalone
    ramfb results fill ``x_migrate`` and ``section_present``. Unused fields are None.
    """

    machine: MachineType
    driver: str
    decisions: tuple[Decision, ...]
    warnings: tuple[str, ...]
    resolved: tuple[ResolvedProperty, ...]
    ramfb: bool | None = None
    x_ramfb_migrate: OnOffAuto | None = None
    enable_migration: OnOffAuto | None = None
    display: OnOffAuto | None = None
    x_migrate: bool | None = None
    vfio_display_subsection: bool | None = None
    section_present: bool | None = None


class _Trace:
    """Collects decisions and warnings while the rules run."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.warnings: list[str] = []

    def decide(self, rule: str, text: str) -> None:
        self.decisions.append(Decision(rule, text))

    def warn(self, rule: str, text: str) -> None:
        self.decisions.append(Decision(rule, text))
        self.warnings.append(text)

    def resolved(self, resolved: ResolvedProperty) -> ResolvedProperty:
        self.decide(resolved.rule, resolved.text)
        return resolved


def _reject_missing_properties(driver: str, device_props: dict[str, PropValue | None],
                               global_props: Sequence[GlobalProp]) -> None:
    """A plain vfio-pci has no ramfb/x-ramfb-migrate: QEMU fails on -device and on a -global that reaches it."""
    for name, value in device_props.items():
        if value is not None:
            property_spec(driver, name)  # raises "Property 'vfio-pci.ramfb' not found"
    for glob in matching_globals(driver, global_props):
        if lacks_property(driver, glob.property):
            raise CompatError(f"can't apply global {glob}: Property '{driver}.{glob.property}' not found")


def _check_fw_cfg_dma(machine: MachineType, global_props: Sequence[GlobalProp], trace: _Trace) -> None:
    """ramfb_setup needs a DMA-capable fw_cfg; hw_compat_2_4 turns DMA off on the 2.4 machines."""
    dma = resolve_property(machine, FW_CFG_DRIVER, "dma_enabled", global_props=global_props)
    if dma.value is not True:
        raise CompatError(ERR_RAMFB_NEEDS_FW_CFG_DMA,
                          hint=f"{dma.rule} sets {FW_CFG_DRIVER}.{dma.text}")
    trace.decide("ramfb_setup", "fw_cfg has DMA: adds vgabios-ramfb.bin and etc/ramfb")


def realize_vfio_pci(machine: MachineType | str, *, driver: str = "vfio-pci-nohotplug",
                     ramfb: PropValue | None = None, x_ramfb_migrate: str | None = None,
                     enable_migration: str | None = None, display: str | None = None,
                     global_props: Sequence[GlobalProp] = ()) -> RealizeResult:
    """Replay vfio_realize's property and migration rules for one VFIO PCI device.

    Args:
        machine: machine type or a name `resolve_machine` accepts.
        driver: ``vfio-pci-nohotplug`` (the only type with ``ramfb`` and ``x-ramfb-migrate``)
            or plain ``vfio-pci``.
        ramfb: ``-device ...,ramfb=`` (bool or on/off spelling); None = not given.
        x_ramfb_migrate: ``on``/``off``/``auto``; None = not given.
        enable_migration: ``on``/``off``/``auto``; None = not given.
        display: ``on``/``off``/``auto``; None = not given (default off).
        global_props: user ``-global`` options, in command-line order.

    Returns:
        The effective values, decisions, warnings and whether VFIOPCIDevice/VFIODisplay is sent.

    Raises:
        MigrationBlockedError: enable-migration=off (QEMU adds a migration blocker; no stream).
        CompatError: QEMU fails realize (QEMU's message, without its "vfio <host>: " prefix),
            or an option is unknown or invalid for the type.
    """
    machine = resolve_machine(machine)
    if driver not in VFIO_DRIVERS:
        raise CompatError(f"unknown VFIO PCI driver {driver!r}; expected one of {', '.join(VFIO_DRIVERS)}")
    _reject_missing_properties(driver, {"ramfb": ramfb, "x-ramfb-migrate": x_ramfb_migrate}, global_props)
    trace = _Trace()
    layered: list[ResolvedProperty] = []

    def resolve(prop: str, device_value: PropValue | None) -> PropValue:
        resolved = resolve_property(machine, driver, prop, global_props=global_props, device_value=device_value)
        layered.append(trace.resolved(resolved))
        return resolved.value

    if driver == "vfio-pci-nohotplug":
        ramfb_on = resolve("ramfb", ramfb) is True
        ramfb_migrate = str(resolve("x-ramfb-migrate", x_ramfb_migrate))
    else:
        # The fields exist in VFIOPCIDevice but no property sets them: zero means ramfb off and
        # x-ramfb-migrate auto (OnOffAuto 0), so a plain vfio-pci never sends VFIODisplay.
        ramfb_on, ramfb_migrate = False, "auto"
        trace.decide("vfio-pci", "no ramfb/x-ramfb-migrate properties: fields stay zero (ramfb=off, "
                                 "x-ramfb-migrate=auto)")
    migration_mode = str(resolve("enable-migration", enable_migration))
    display_mode = str(resolve("display", display))

    # Steps as numbered in docs/wire-format.md §10.2, in vfio_realize order.
    # Step 1: vfio_display_probe runs unless display=off; it creates the display and, with ramfb=on, the ramfb.
    has_display = False
    if display_mode == "off":
        trace.decide("vfio_realize", "display=off: no display probe, so no display")
    elif display_mode == "on":
        has_display = True
        trace.decide("assumption", "display=on: vmig assumes the device has a display method, so the probe succeeds")
        if ramfb_on:
            _check_fw_cfg_dma(machine, global_props, trace)
    else:
        trace.decide("assumption", "display=auto: vmig assumes the probe finds no display method; "
                                   "not an error in auto mode, but there is no display")

    # Step 2
    if ramfb_on and not has_display:
        raise CompatError(ERR_RAMFB_NEEDS_DISPLAY,
                          hint="add display=on (QEMU prefixes the message with 'vfio <host>: ')")
    # Step 3 runs before step 4, so x-ramfb-migrate=on with ramfb=off only warns.
    if ramfb_migrate == "on" and not ramfb_on:
        trace.warn("vfio_realize", WARN_RAMFB_MIGRATE_FORCED_OFF)
        ramfb_migrate = "off"
    # Step 4
    if migration_mode == "off":
        if ramfb_migrate == "auto":
            ramfb_migrate = "off"
            trace.decide("vfio_realize", "enable-migration=off: x-ramfb-migrate=auto becomes off")
        elif ramfb_migrate == "on":
            raise CompatError(ERR_RAMFB_MIGRATE_NEEDS_MIGRATION,
                              hint="drop x-ramfb-migrate=on or enable migration "
                                   "(QEMU prefixes the message with 'vfio <host>: ')")
    # Step 5: vfio_migration_realize
    if migration_mode == "off":
        raise MigrationBlockedError(
            MSG_MIGRATION_BLOCKED,
            hint="QEMU's blocker reason is '<host>: Migration is disabled for VFIO device'; "
                 "migrate and savevm refuse to run. Use enable-migration=auto or on",
        )
    trace.decide("assumption", f"enable-migration={migration_mode}: vmig assumes the host device supports "
                               "migration, so no blocker is added")

    needed = ramfb_migrate == "on" or (ramfb_migrate == "auto" and ramfb_on)
    why = (f"x-ramfb-migrate={ramfb_migrate}" if ramfb_migrate != "auto"
           else f"x-ramfb-migrate=auto and ramfb={'on' if ramfb_on else 'off'}")
    trace.decide("vfio_display_migration_needed",
                 f"{why}: {VFIO_DISPLAY_SUBSECTION} {'is' if needed else 'is not'} sent")
    return RealizeResult(
        machine=machine, driver=driver, decisions=tuple(trace.decisions), warnings=tuple(trace.warnings),
        resolved=tuple(layered), ramfb=ramfb_on, x_ramfb_migrate=_on_off_auto(ramfb_migrate),
        enable_migration=_on_off_auto(migration_mode), display=_on_off_auto(display_mode),
        vfio_display_subsection=needed,
    )


def realize_ramfb(machine: MachineType | str, *, x_migrate: PropValue | None = None,
                  global_props: Sequence[GlobalProp] = ()) -> RealizeResult:
    """Replay the standalone ``-device ramfb``: is its ``ramfb-dev`` section in the stream?

    Args:
        machine: machine type or a name `resolve_machine` accepts.
        x_migrate: ``-device ramfb,x-migrate=`` (bool or on/off spelling); None = not given.
        global_props: user ``-global`` options, in command-line order.

    Raises:
        CompatError: ramfb_setup fails (no fw_cfg DMA on the 2.4 machines), or a bad value.
    """
    machine = resolve_machine(machine)
    trace = _Trace()
    resolved = trace.resolved(resolve_property(machine, "ramfb", "x-migrate", global_props=global_props,
                                               device_value=x_migrate))
    _check_fw_cfg_dma(machine, global_props, trace)
    present = resolved.value is True
    trace.decide("migrate_needed",
                 f"x-migrate={'on' if present else 'off'}: the {RAMFB_SECTION} section "
                 f"{'is' if present else 'is not'} sent")
    return RealizeResult(
        machine=machine, driver="ramfb", decisions=tuple(trace.decisions), warnings=tuple(trace.warnings),
        resolved=(resolved,), x_migrate=present, section_present=present,
    )


def _on_off_auto(value: str) -> OnOffAuto:
    # Values were validated against the OnOffAuto choices when they were parsed.
    return cast(OnOffAuto, value)
