"""Machine compat property arrays as data, and how a machine type stacks them.

Each ``hw_compat_X_Y`` (hw/core/machine.c), ``pc_compat_X_Y`` (hw/i386/pc.c) and board
array (``pc_q35_compat_defaults``, ``arm_virt_compat``) of QEMU 10.0.2 is one `CompatArray`
of (driver, property, value) triples in QEMU's order, read from QEMU's source by
tools/compat_from_source.py into data/compat-source.json.gz (which checks them against
what the 10.0 binaries report for every machine). A machine of version N gets its board's
base array, then hw_compat_V (and pc_compat_V on pc) for every V >= N, newest V first (each
``*_machine_X_Y_options()`` calls the next newer one, then appends its own). Globals are
applied in that order and a later entry overwrites an earlier one, so on a conflict the
oldest array wins.

Precedence for one property of one object, lowest first (hw/core/qdev.c device_post_init,
qom/object.c object_apply_compat_props, hw/core/qdev-properties.c qdev_prop_set_globals):
device default < accelerator compat (none for KVM/TCG on x86) < machine compat (this
module) < sugar globals < user ``-global`` < ``-device`` options. `resolve_property`
implements the parts vmig models: default, machine compat, ``-global``, ``-device``.

Driver names are spelled as QEMU expands the macros for qemu-system-x86_64
(TYPE_X86_CPU = "x86_64-cpu"; the i386 binary would use "i386-cpu").

Imports `vfio_ramfb_mig.errors` and sibling compat modules (catalog for the data).

References:
    hw/core/machine.c   hw_compat_2_4 ... hw_compat_9_2
    hw/i386/pc.c        pc_compat_2_4 ... pc_compat_9_2 (PC_CPU_MODEL_IDS expanded)
    hw/i386/pc_q35.c    pc_q35_compat_defaults, pc_q35_machine_options, pc_q35_machine_X_Y_options,
                        pc_q35_machine_4_0_1_options (4.0 and 4.0.1 share hw_compat_4_0)
    hw/i386/pc_piix.c   pc_i440fx_machine_X_Y_options
    include/hw/qdev-core.h  GlobalProperty, compat_props_add
    qom/object.c        object_apply_global_props, object_compat_props (slots 0..2)
    system/qdev-monitor.c   qemu_global_option (-global syntax)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vfio_ramfb_mig.compat.catalog import source_tree
from vfio_ramfb_mig.compat.machines import MachineType, resolve_machine
from vfio_ramfb_mig.compat.qom import PropValue, format_value, is_a, property_spec
from vfio_ramfb_mig.errors import CompatError



@dataclass(frozen=True, slots=True)
class CompatProp:
    """One GlobalProperty entry: set ``property`` to ``value`` on every object that is a ``driver``."""

    driver: str
    property: str
    value: str
    # GlobalProperty.optional: skipped silently on objects that lack the property.
    optional: bool = False


@dataclass(frozen=True, slots=True)
class CompatArray:
    """A named GlobalProperty array of QEMU, e.g. hw_compat_8_1 in hw/core/machine.c."""

    name: str
    file: str
    props: tuple[CompatProp, ...]

    @property
    def source(self) -> str:
        """Citation shown to users, e.g. ``hw_compat_8_1 (hw/core/machine.c)``."""
        return f"{self.name} ({self.file})"

    @property
    def version(self) -> tuple[int, int] | None:
        """(major, minor) of a versioned array; None for a base array such as pc_q35_compat_defaults."""
        match = re.fullmatch(r"(?:hw|pc)_compat_(\d+)_(\d+)", self.name)
        return (int(match[1]), int(match[2])) if match else None


def _load_arrays() -> tuple[CompatArray, ...]:
    """QEMU 10.0.2's arrays, as tools/compat_from_source.py read them from its source (and checked
    them against what the 10.0 binaries report for every machine)."""
    tree = source_tree(QEMU_RELEASE)
    return tuple(CompatArray(name, row["file"], tuple(CompatProp(d, p, v, opt) for d, p, v, opt in row["entries"]))
                 for name, row in tree["arrays"].items())


#: the release whose machines and arrays props.py applies (what `vmig encode` builds for)
QEMU_RELEASE = "10.0.2"
_ARRAYS: tuple[CompatArray, ...] = _load_arrays()
COMPAT_ARRAYS: dict[str, CompatArray] = {array.name: array for array in _ARRAYS}
"""Every array a QEMU 10.0 pc-i440fx, pc-q35 or virt machine applies, by name."""


@dataclass(frozen=True, slots=True)
class AppliedProp:
    """A compat entry as one machine applies it.

    ``position`` is the index in the machine's compat_props array: QEMU applies entries in
    that order, so among entries that reach the same object and property the highest
    position wins.
    """

    driver: str
    property: str
    value: str
    source: str
    array: str
    position: int
    optional: bool = False


def compat_arrays(machine: MachineType | str) -> tuple[CompatArray, ...]:
    """The arrays a machine appends to its compat_props, in QEMU's order.

    pc-q35-8.1 gets pc_q35_compat_defaults, hw_compat_9_2, pc_compat_9_2, hw_compat_9_1, ...,
    hw_compat_8_1, pc_compat_8_1; virt-8.1 arm_virt_compat, then hw_compat_9_2 ... hw_compat_8_1;
    a 10.0 machine only its family's base arrays (the order its options functions call them in).
    """
    machine = resolve_machine(machine)
    names = source_tree(QEMU_RELEASE)["machines"][machine.name]["arrays"]
    return tuple(COMPAT_ARRAYS[name] for name in names)


def compat_props(machine: MachineType | str) -> tuple[AppliedProp, ...]:
    """Every compat entry of the machine, in the order QEMU applies them (shadowed ones included)."""
    return _compat_props(resolve_machine(machine))


@functools.cache
def _compat_props(machine: MachineType) -> tuple[AppliedProp, ...]:
    applied: list[AppliedProp] = []
    for array in compat_arrays(machine):
        for entry in array.props:
            applied.append(AppliedProp(entry.driver, entry.property, entry.value, array.source, array.name,
                                       len(applied), entry.optional))
    return tuple(applied)


def effective_properties(machine: MachineType | str) -> list[AppliedProp]:
    """The compat entries still in force: one per (driver, property), the last one applied.

    Returned in application order of the winners. An entry on a parent type and one on a
    subclass are different keys here; `prop_for` resolves them for one concrete type.
    """
    winners: dict[tuple[str, str], AppliedProp] = {}
    for entry in compat_props(machine):
        winners[(entry.driver, entry.property)] = entry
    return sorted(winners.values(), key=lambda entry: entry.position)


def prop_for(machine: MachineType | str, driver: str, prop: str) -> AppliedProp | None:
    """The compat entry that sets ``prop`` on an object of QOM type ``driver``, or None.

    Matches entries for the type itself and for its parents and interfaces (a
    ``vfio-pci`` entry reaches ``vfio-pci-nohotplug``, not the other way round); the
    entry applied last wins.
    """
    found: AppliedProp | None = None
    for entry in compat_props(machine):
        if entry.property == prop and is_a(driver, entry.driver):
            found = entry
    return found


@dataclass(frozen=True, slots=True)
class GlobalProp:
    """A user ``-global driver.property=value`` option."""

    driver: str
    property: str
    value: str

    @classmethod
    def parse(cls, text: str) -> GlobalProp:
        """Parse ``driver.property=value`` or ``driver=D,property=P,value=V`` like qemu_global_option.

        Raises:
            CompatError: neither form matches.
        """
        short = re.fullmatch(r"([^.=]{1,63})\.([^=]{1,63})=(.*)", text, re.S)
        if short:
            return cls(short[1], short[2], short[3])
        fields = dict(part.partition("=")[::2] for part in text.split(","))
        if {"driver", "property", "value"} <= fields.keys():
            return cls(fields["driver"], fields["property"], fields["value"])
        raise CompatError("options 'driver', 'property', and 'value' are required",
                          hint=f"-global {text!r}: expected driver.property=value")

    def __str__(self) -> str:
        return f"{self.driver}.{self.property}={self.value}"


@dataclass(frozen=True, slots=True)
class ResolvedProperty:
    """The value one property of one object ends up with before realize, and which layer set it.

    ``rule`` is ``default``, a compat array name (``hw_compat_8_1``), ``-global`` or
    ``-device``. For a user option, ``overrides`` names the layer right below it, as
    ``rule prop=value``.
    """

    driver: str
    name: str  # the property; not called "property" so that @property still means the builtin here
    value: PropValue
    rule: str
    source: str
    overrides: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """``prop=value``, plus what it overrides when a user option beat a default or compat value."""
        base = f"{self.name}={format_value(self.value)}"
        return f"{base} (overrides {'; '.join(self.overrides)})" if self.overrides else base


def matching_globals(driver: str, global_props: Iterable[GlobalProp]) -> list[GlobalProp]:
    """The user globals that reach an object of QOM type ``driver``, in command-line order."""
    return [glob for glob in global_props if is_a(driver, glob.driver)]


def resolve_property(machine: MachineType | str, driver: str, prop: str, *,
                     global_props: Sequence[GlobalProp] = (),
                     device_value: PropValue | None = None) -> ResolvedProperty:
    """Resolve one property: device default < machine compat < ``-global`` < ``-device``.

    Args:
        machine: the machine type (or a name `resolve_machine` accepts).
        driver: the object's concrete QOM type, e.g. ``vfio-pci-nohotplug``.
        prop: the property name, e.g. ``x-ramfb-migrate``.
        global_props: user ``-global`` options; the last one that reaches the object wins.
        device_value: the ``-device`` option value, None when not given.

    Raises:
        CompatError: the object has no such property, or a user value is invalid (QEMU's
            messages; a bad ``-global`` gets QEMU's "can't apply global" prefix).
    """
    spec = property_spec(driver, prop)
    layers: list[ResolvedProperty] = [
        ResolvedProperty(driver, prop, spec.default, "default", spec.source)]
    compat = prop_for(machine, driver, prop)
    if compat is not None:
        layers.append(ResolvedProperty(driver, prop, spec.parse(compat.value), compat.array, compat.source))
    for glob in matching_globals(driver, global_props):
        if glob.property != prop:
            continue
        try:
            value = spec.parse(glob.value)
        except CompatError as exc:
            raise CompatError(f"can't apply global {glob}: {exc.message}") from exc
        layers.append(ResolvedProperty(driver, prop, value, "-global", f"-global {glob}"))
    if device_value is not None:
        layers.append(ResolvedProperty(driver, prop, spec.parse(device_value), "-device", "-device option"))
    winner = layers[-1]
    if winner.rule in ("-global", "-device"):
        # Say what the user's option beat: that is the surprising part ("explicit auto beats compat").
        below = layers[-2]
        return ResolvedProperty(driver, prop, winner.value, winner.rule, winner.source,
                                (f"{below.rule} {prop}={format_value(below.value)}",))
    return winner
