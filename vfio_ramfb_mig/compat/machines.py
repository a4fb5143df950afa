"""The machine types vmig encodes for (QEMU 10.0's pc-i440fx, pc-q35 and aarch64 virt): names, aliases, versions.

Every versioned ``pc-i440fx-X.Y`` and ``pc-q35-X.Y`` machine that QEMU 10.0 registers
is one `MachineType` value in `MACHINES`. `parse_machine_name` is vmig's one reader of
machine names (canonical, QEMU alias, or vmig's short spelling); on top of it
`resolve_machine` turns a user-given name into one of `MACHINES`, or raises `CompatError`
listing the closest valid names, and `resolve_machine_for` does the same for a destination
of any QEMU version.

Imports only `vfio_ramfb_mig.errors`.

References:
    hw/i386/pc_piix.c   DEFINE_I440FX_MACHINE, DEFINE_I440FX_MACHINE_AS_LATEST (alias "pc", default)
    hw/i386/pc_q35.c    DEFINE_Q35_MACHINE, DEFINE_Q35_MACHINE_AS_LATEST (alias "q35"),
                        DEFINE_Q35_MACHINE_BUGFIX(4, 0, 1)
    include/hw/i386/pc.h  DEFINE_PC_VER_MACHINE (is_default, alias, MACHINE_VER_DEPRECATION)
    include/hw/boards.h   MACHINE_VER_DEPRECATION_MAJOR, MACHINE_VER_DELETION_MAJOR,
                          MACHINE_VER_IS_DEPRECATED, MACHINE_VER_SHOULD_DELETE, MACHINE_VER_DELETION
    system/vl.c           find_machine (QEMU itself matches only the name or the alias),
                          machine_help_func, the "Machine type '%s' is deprecated: %s" warning
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from vfio_ramfb_mig.errors import CompatError

Family = Literal["pc-i440fx", "pc-q35", "virt"]
MachineVersion = tuple[int, ...]

FAMILIES: tuple[Family, ...] = ("pc-i440fx", "pc-q35", "virt")
#: the target each family belongs to (qemu-system-x86_64 / qemu-system-aarch64)
FAMILY_ARCH: dict[Family, str] = {"pc-i440fx": "x86_64", "pc-q35": "x86_64", "virt": "aarch64"}

# The QEMU release whose machine list and compat arrays this package transcribes.
QEMU_VERSION: tuple[int, int] = (10, 0)

# include/hw/boards.h: a machine is deprecated once it is this many years (major
# releases) old, counting the same minor, and deletable after MACHINE_VER_DELETION_MAJOR.
MACHINE_VER_DEPRECATION_MAJOR = 3
MACHINE_VER_DELETION_MAJOR = 6
DEPRECATION_REASON = (
    f"machines more than {MACHINE_VER_DEPRECATION_MAJOR} years old are subject to deletion "
    f"after {MACHINE_VER_DELETION_MAJOR} years"
)

# (major, minor) of every DEFINE_I440FX_MACHINE / DEFINE_Q35_MACHINE in QEMU 10.0. The
# deletion rule (>= 6 years old) only removes machines from 10.1 on, so 2.4 still exists.
_PC_VERSIONS: tuple[MachineVersion, ...] = (
    (2, 4), (2, 5), (2, 6), (2, 7), (2, 8), (2, 9), (2, 10), (2, 11), (2, 12),
    (3, 0), (3, 1),
    (4, 0), (4, 1), (4, 2),
    (5, 0), (5, 1), (5, 2),
    (6, 0), (6, 1), (6, 2),
    (7, 0), (7, 1), (7, 2),
    (8, 0), (8, 1), (8, 2),
    (9, 0), (9, 1), (9, 2),
    (10, 0),
)
# hw/arm/virt.c DEFINE_VIRT_MACHINE(_AS_LATEST): virt-2.6 ... virt-10.0 (the same list as
# QEMU 10.0's -machine help; tests/test_catalog.py holds the two equal).
_VERSIONS: dict[Family, tuple[MachineVersion, ...]] = {
    "pc-i440fx": _PC_VERSIONS,
    "pc-q35": _PC_VERSIONS,
    "virt": ((2, 6), (2, 7), (2, 8)) + _PC_VERSIONS[_PC_VERSIONS.index((2, 9)):],
}
# pc_q35.c DEFINE_Q35_MACHINE_BUGFIX(4, 0, 1): the 4.0-stable default, only for q35.
_BUGFIX_VERSIONS: dict[Family, tuple[MachineVersion, ...]] = {"pc-i440fx": (), "pc-q35": ((4, 0, 1),), "virt": ()}

# The *_AS_LATEST machine of each family carries an alias; pc_piix.c also makes it the default.
FAMILY_ALIASES: dict[Family, str] = {"pc-i440fx": "pc", "pc-q35": "q35", "virt": "virt"}
DEFAULT_FAMILY: Family = "pc-i440fx"

# vmig-only short spellings (QEMU rejects them): "pc-8.1" for pc-i440fx-8.1, "q35-8.1" for pc-q35-8.1.
_SHORT_SPELLINGS: dict[str, Family] = {"pc": "pc-i440fx", "q35": "pc-q35"}


# ---------------------------------------------------------------- the one machine-name parser


@dataclass(frozen=True, slots=True)
class MachineName:
    """A machine name taken apart, without asking whether any QEMU registers it.

    ``pc-q35-8.1`` and ``q35-8.1`` are ``MachineName("pc-q35", (8, 1))``; an alias (``pc``,
    ``q35``) has ``version`` None: it names the newest machine of whichever QEMU is asked.
    """

    family: Family
    version: MachineVersion | None

    @property
    def is_alias(self) -> bool:
        return self.version is None


def _name_pattern() -> re.Pattern[str]:
    # longest prefix first, so "pc-q35-8.1" is not read as the short "pc" with version "q35-8.1";
    # QEMU writes version parts without leading zeros (DEFINE_*_MACHINE builds "%d.%d")
    prefixes = sorted({*FAMILIES, *_SHORT_SPELLINGS}, key=len, reverse=True)
    part = r"(?:0|[1-9]\d*)"
    return re.compile(rf"^(?P<prefix>{'|'.join(map(re.escape, prefixes))})-(?P<version>{part}(?:\.{part}){{1,2}})$")


_VERSIONED_NAME = _name_pattern()
_ALIAS_FAMILY: dict[str, Family] = {alias: family for family, alias in FAMILY_ALIASES.items()}


def parse_machine_name(name: str) -> MachineName | None:
    """Read a machine name: canonical (``pc-q35-8.1``, ``pc-q35-4.0.1``), vmig's short form
    (``q35-8.1``, ``pc-8.1``) or QEMU's alias (``pc``, ``q35``); None for anything else.

    This is the only place vmig takes machine names apart; what a given QEMU registers is
    `resolve_machine`'s (QEMU 10.0, with deprecation and compat data) and
    `resolve_machine_for`'s (any QEMU version) business.
    """
    wanted = name.strip()
    if wanted in _ALIAS_FAMILY:
        return MachineName(_ALIAS_FAMILY[wanted], None)
    match = _VERSIONED_NAME.match(wanted)
    if match is None:
        return None
    prefix = match["prefix"]
    family = _SHORT_SPELLINGS.get(prefix, prefix)
    return MachineName(family, tuple(int(part) for part in match["version"].split(".")))  # type: ignore[arg-type]


def machine_family(name: str) -> Family | None:
    """The family of a machine name (``pc`` -> ``pc-i440fx``), None when it is no machine vmig reads."""
    parsed = parse_machine_name(name)
    return parsed.family if parsed else None


def _is_expired(version: MachineVersion, cutoff: int) -> bool:
    """`_MACHINE_VER_IS_EXPIRED_IMPL` of include/hw/boards.h, evaluated for QEMU 10.0 (micro ignored)."""
    major, minor = version[0], version[1]
    age = QEMU_VERSION[0] - major
    return age > cutoff or (age == cutoff and QEMU_VERSION[1] - minor >= 0)


@dataclass(frozen=True, slots=True)
class MachineType:
    """One versioned x86 machine type, e.g. ``MachineType("pc-q35", (8, 1))`` is ``pc-q35-8.1``."""

    family: Family
    version: MachineVersion

    @property
    def name(self) -> str:
        """Canonical QEMU name, e.g. ``pc-q35-8.1`` or ``pc-q35-4.0.1``."""
        return f"{self.family}-{'.'.join(str(part) for part in self.version)}"

    @property
    def compat_version(self) -> tuple[int, int]:
        """(major, minor) that selects the compat arrays: pc-q35-4.0.1 applies hw_compat_4_0 like 4.0."""
        return (self.version[0], self.version[1])

    @property
    def is_latest(self) -> bool:
        return self.compat_version == QEMU_VERSION

    @property
    def alias(self) -> str | None:
        """QEMU's alias (``pc``/``q35``), only on the latest machine of the family."""
        return FAMILY_ALIASES[self.family] if self.is_latest else None

    @property
    def is_default(self) -> bool:
        """True for the machine QEMU uses without ``-machine`` (pc-i440fx-10.0)."""
        return self.is_latest and self.family == DEFAULT_FAMILY

    @property
    def deprecated(self) -> bool:
        """QEMU 10.0 marks the machine "(deprecated)" in ``-machine help`` (versions <= 7.0)."""
        return _is_expired(self.version, MACHINE_VER_DEPRECATION_MAJOR)

    @property
    def deprecation_reason(self) -> str | None:
        return DEPRECATION_REASON if self.deprecated else None

    @property
    def deprecation_warning(self) -> str | None:
        """The warning QEMU prints at startup for a deprecated machine, else None."""
        if not self.deprecated:
            return None
        return f"Machine type '{self.name}' is deprecated: {DEPRECATION_REASON}"

    @property
    def subject_to_deletion(self) -> bool:
        """Old enough (>= 6 years) to be unregistered by QEMU >= 10.1 or with QEMU_DELETE_MACHINES.

        QEMU 10.0 still registers these machines (versions <= 4.0, and 4.0.1), so they stay in
        `MACHINES`.
        """
        return _is_expired(self.version, MACHINE_VER_DELETION_MAJOR)

    def __str__(self) -> str:
        return self.name


def _build_machines() -> tuple[MachineType, ...]:
    machines: list[MachineType] = []
    for family in FAMILIES:
        versions = sorted(_VERSIONS[family] + _BUGFIX_VERSIONS[family])
        machines.extend(MachineType(family, version) for version in versions)
    return tuple(machines)


MACHINES: tuple[MachineType, ...] = _build_machines()
"""Every versioned machine QEMU 10.0 defines: pc-i440fx first, then pc-q35, each by version."""

_BY_NAME: dict[str, MachineType] = {machine.name: machine for machine in MACHINES}
LATEST: dict[Family, MachineType] = {machine.family: machine for machine in MACHINES if machine.is_latest}


def machine_names() -> tuple[str, ...]:
    """Canonical names of `MACHINES`, in the same order."""
    return tuple(_BY_NAME)


def resolve_machine(name: str | MachineType) -> MachineType:
    """Return the QEMU 10.0 machine type a name denotes.

    Accepted spellings: canonical names (``pc-i440fx-8.1``, ``pc-q35-4.0.1``), QEMU's aliases
    ``pc`` and ``q35`` (the 10.0 machines), and vmig's short forms ``pc-M.m`` (=
    ``pc-i440fx-M.m``) and ``q35-M.m`` (= ``pc-q35-M.m``). QEMU itself accepts only the
    canonical names and the two aliases.

    Raises:
        CompatError: the name is not a QEMU 10.0 pc-i440fx/pc-q35 machine; the message lists
            the closest valid names.
    """
    if isinstance(name, MachineType):
        return name
    wanted = name.strip()
    parsed = parse_machine_name(wanted)
    if parsed is not None and parsed.version is None:
        return LATEST[parsed.family]
    canonical = MachineType(parsed.family, parsed.version).name if parsed is not None else wanted
    machine = _BY_NAME.get(canonical)
    if machine is not None:
        return machine
    close = difflib.get_close_matches(canonical, _BY_NAME, n=5, cutoff=0.6)
    listing = (f"close: {', '.join(close)}" if close else
               "valid: pc-i440fx-X.Y, pc-q35-X.Y (x86_64, 2.4 ... 10.0) or virt-X.Y (aarch64, 2.6 ... 10.0)")
    raise CompatError(
        f"unknown machine type {wanted!r}; {listing}",
        hint="QEMU 10.0 has pc-i440fx-2.4 ... 10.0 and pc-q35-2.4 ... 10.0 (plus pc-q35-4.0.1), virt-2.6 ... 10.0; "
             "aliases: pc, q35, virt, pc-M.m, q35-M.m; vmig machines lists every build's machines. " + PROFILE_HINT,
    )


#: any other machine (microvm, isapc, sbsa-ref, ...) can still be judged: by running its destination
PROFILE_HINT = ("Any other machine: describe the destination by running it, vmig profile -o dest.json -- QEMU ARGS, "
                "then vmig check STREAM --against dest.json (diff --compat: --profile-a/--profile-b)")


def resolve_machine_for(name: str, qemu: tuple[int, ...] | None) -> MachineType:
    """The machine a name denotes on QEMU `qemu` (None: version unknown).

    On QEMU 10.0 this is `resolve_machine`. On other versions vmig has no machine list: a
    versioned name is taken as it is unless it is newer than that QEMU, and an alias names
    that QEMU's newest machine of the family (so it needs the version).

    Raises:
        CompatError: not a machine name vmig reads, an alias without a version, or a machine
            newer than `qemu`.
    """
    wanted = name.strip()
    if qemu is not None and tuple(qemu[:2]) == QEMU_VERSION:
        return resolve_machine(wanted)
    parsed = parse_machine_name(wanted)
    if parsed is None:
        raise CompatError(f"unknown machine type {wanted!r}; vmig judges pc-i440fx-X.Y, pc-q35-X.Y and virt-X.Y "
                          "machines", hint="e.g. --target pc-q35-8.1 or --target virt-8.2. " + PROFILE_HINT)
    if parsed.version is None:
        if qemu is None:
            raise CompatError(f"machine alias {wanted!r} needs the QEMU version (--qemu)")
        return MachineType(parsed.family, (qemu[0], qemu[1]))
    machine = MachineType(parsed.family, parsed.version)
    if qemu is not None and machine.compat_version > tuple(qemu[:2]):
        raise CompatError(f"QEMU {'.'.join(map(str, qemu))} has no machine type {machine.name!r}; its newest is "
                          f"{parsed.family}-{qemu[0]}.{qemu[1]}")
    return machine
