"""Machine compat property arrays as data, and how a machine type stacks them.

Each ``hw_compat_X_Y`` (hw/core/machine.c) and ``pc_compat_X_Y`` (hw/i386/pc.c) array of
QEMU 10.0.2 is one `CompatArray` of (driver, property, value) triples, transcribed in
QEMU's order; ``pc_q35_compat_defaults`` (hw/i386/pc_q35.c) is the base array every
pc-q35 machine starts with. A machine of version N gets hw_compat_V then pc_compat_V
for every V >= N, newest V first (each ``pc_*_machine_X_Y_options()`` calls the next
newer one, then appends its own pair). Globals are applied in that order and a later
entry overwrites an earlier one, so on a conflict the oldest array wins.

Precedence for one property of one object, lowest first (hw/core/qdev.c device_post_init,
qom/object.c object_apply_compat_props, hw/core/qdev-properties.c qdev_prop_set_globals):
device default < accelerator compat (none for KVM/TCG on x86) < machine compat (this
module) < sugar globals < user ``-global`` < ``-device`` options. `resolve_property`
implements the parts vmig models: default, machine compat, ``-global``, ``-device``.

Driver names are spelled as QEMU expands the macros for qemu-system-x86_64
(TYPE_X86_CPU = "x86_64-cpu"; the i386 binary would use "i386-cpu").

Imports `vfio_ramfb_mig.errors` and sibling compat modules.

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

from vfio_ramfb_mig.compat.machines import Family, MachineType, resolve_machine
from vfio_ramfb_mig.compat.qom import PropValue, format_value, is_a, property_spec
from vfio_ramfb_mig.errors import CompatError

MACHINE_C = "hw/core/machine.c"
VIRT_C = "hw/arm/virt.c"
PC_C = "hw/i386/pc.c"
PC_Q35_C = "hw/i386/pc_q35.c"


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


def _p(driver: str, prop: str, value: str, *, optional: bool = False) -> CompatProp:
    return CompatProp(driver, prop, value, optional)


def _array(name: str, file: str, props: tuple[CompatProp, ...]) -> CompatArray:
    return CompatArray(name, file, props)


# Transcribed from QEMU 10.0.2, newest first, entries in source order.
_ARRAYS: tuple[CompatArray, ...] = (
    _array("pc_q35_compat_defaults", PC_Q35_C, (
        _p("virtio-iommu-pci", "aw-bits", "39"),
    )),
    _array("arm_virt_compat", VIRT_C, (
        _p("virtio-iommu-pci", "aw-bits", "48"),
    )),
    _array("hw_compat_9_2", MACHINE_C, (
        _p("arm-cpu", "backcompat-pauth-default-use-qarma5", "true"),
        _p("virtio-balloon-pci", "vectors", "0"),
        _p("virtio-balloon-pci-transitional", "vectors", "0"),
        _p("virtio-balloon-pci-non-transitional", "vectors", "0"),
        _p("virtio-mem-pci", "vectors", "0"),
        _p("migration", "multifd-clean-tls-termination", "false"),
        _p("migration", "send-switchover-start", "off"),
        _p("vfio-pci", "x-migration-multifd-transfer", "off"),
    )),
    _array("pc_compat_9_2", PC_C, ()),
    _array("hw_compat_9_1", MACHINE_C, (
        _p("pci-device", "x-pcie-ext-tag", "false"),
    )),
    _array("pc_compat_9_1", PC_C, (
        _p("ICH9-LPC", "x-smi-swsmi-timer", "off"),
        _p("ICH9-LPC", "x-smi-periodic-timer", "off"),
        _p("intel-iommu", "stale-tm", "on"),
        _p("intel-iommu", "aw-bits", "39"),
    )),
    _array("hw_compat_9_0", MACHINE_C, (
        _p("arm-cpu", "backcompat-cntfrq", "true"),
        _p("scsi-hd", "migrate-emulated-scsi-request", "false"),
        _p("scsi-cd", "migrate-emulated-scsi-request", "false"),
        _p("vfio-pci", "skip-vsc-check", "false"),
        _p("virtio-pci", "x-pcie-pm-no-soft-reset", "off"),
        _p("sd-card", "spec_version", "2"),
    )),
    _array("pc_compat_9_0", PC_C, (
        _p("x86_64-cpu", "x-amd-topoext-features-only", "false"),
        _p("x86_64-cpu", "x-l1-cache-per-thread", "false"),
        _p("x86_64-cpu", "guest-phys-bits", "0"),
        _p("sev-guest", "legacy-vm-type", "on"),
        _p("x86_64-cpu", "legacy-multi-node", "on"),
    )),
    _array("hw_compat_8_2", MACHINE_C, (
        _p("migration", "zero-page-detection", "legacy"),
        _p("virtio-iommu-pci", "granule", "4k"),
        _p("virtio-iommu-pci", "aw-bits", "64"),
        _p("virtio-gpu-device", "x-scanout-vmstate-version", "1"),
    )),
    _array("pc_compat_8_2", PC_C, ()),
    _array("hw_compat_8_1", MACHINE_C, (
        _p("base-pci-bridge", "x-pci-express-writeable-slt-bug", "true"),
        _p("ramfb", "x-migrate", "off"),
        _p("vfio-pci-nohotplug", "x-ramfb-migrate", "off"),
        _p("igb", "x-pcie-flr-init", "off"),
        _p("virtio-net-device", "host_uso", "off"),
        _p("virtio-net-device", "guest_uso4", "off"),
        _p("virtio-net-device", "guest_uso6", "off"),
    )),
    _array("pc_compat_8_1", PC_C, ()),
    _array("hw_compat_8_0", MACHINE_C, (
        _p("migration", "multifd-flush-after-each-section", "on"),
        _p("pci-device", "x-pcie-ari-nextfn-1", "on"),
    )),
    _array("pc_compat_8_0", PC_C, (
        _p("virtio-mem", "unplugged-inaccessible", "auto"),
    )),
    _array("hw_compat_7_2", MACHINE_C, (
        _p("e1000e", "migrate-timadj", "off"),
        _p("virtio-mem", "x-early-migration", "false"),
        _p("migration", "x-preempt-pre-7-2", "true"),
        _p("pci-device", "x-pcie-err-unc-mask", "off"),
    )),
    _array("pc_compat_7_2", PC_C, (
        _p("ICH9-LPC", "noreboot", "true"),
    )),
    _array("hw_compat_7_1", MACHINE_C, (
        _p("virtio-device", "queue_reset", "false"),
        _p("virtio-rng-pci", "vectors", "0"),
        _p("virtio-rng-pci-transitional", "vectors", "0"),
        _p("virtio-rng-pci-non-transitional", "vectors", "0"),
    )),
    _array("pc_compat_7_1", PC_C, ()),
    _array("hw_compat_7_0", MACHINE_C, (
        _p("arm-gicv3-common", "force-8-bit-prio", "on"),
        _p("nvme-ns", "eui64-default", "on"),
    )),
    _array("pc_compat_7_0", PC_C, ()),
    _array("hw_compat_6_2", MACHINE_C, (
        _p("PIIX4_PM", "x-not-migrate-acpi-index", "on"),
    )),
    _array("pc_compat_6_2", PC_C, (
        _p("virtio-mem", "unplugged-inaccessible", "off"),
    )),
    _array("hw_compat_6_1", MACHINE_C, (
        _p("vhost-user-vsock-device", "seqpacket", "off"),
        _p("nvme-ns", "shared", "off"),
    )),
    _array("pc_compat_6_1", PC_C, (
        _p("x86_64-cpu", "hv-version-id-build", "0x1bbc"),
        _p("x86_64-cpu", "hv-version-id-major", "0x0006"),
        _p("x86_64-cpu", "hv-version-id-minor", "0x0001"),
        _p("ICH9-LPC", "x-keep-pci-slot-hpc", "false"),
    )),
    _array("hw_compat_6_0", MACHINE_C, (
        _p("gpex-pcihost", "allow-unmapped-accesses", "false"),
        _p("i8042", "extended-state", "false"),
        _p("nvme-ns", "eui64-default", "off"),
        _p("e1000", "init-vet", "off"),
        _p("e1000e", "init-vet", "off"),
        _p("vhost-vsock-device", "seqpacket", "off"),
    )),
    _array("pc_compat_6_0", PC_C, (
        _p("qemu64-x86_64-cpu", "family", "6"),
        _p("qemu64-x86_64-cpu", "model", "6"),
        _p("qemu64-x86_64-cpu", "stepping", "3"),
        _p("x86_64-cpu", "x-vendor-cpuid-only", "off"),
        _p("ICH9-LPC", "acpi-pci-hotplug-with-bridge-support", "off"),
        _p("ICH9-LPC", "x-keep-pci-slot-hpc", "true"),
    )),
    _array("hw_compat_5_2", MACHINE_C, (
        _p("ICH9-LPC", "smm-compat", "on"),
        _p("PIIX4_PM", "smm-compat", "on"),
        _p("virtio-blk-device", "report-discard-granularity", "off"),
        _p("virtio-net-pci-base", "vectors", "3"),
        _p("nvme", "msix-exclusive-bar", "on"),
    )),
    _array("pc_compat_5_2", PC_C, (
        _p("ICH9-LPC", "x-smi-cpu-hotunplug", "off"),
    )),
    _array("hw_compat_5_1", MACHINE_C, (
        _p("vhost-scsi", "num_queues", "1"),
        _p("vhost-user-blk", "num-queues", "1"),
        _p("vhost-user-scsi", "num_queues", "1"),
        _p("virtio-blk-device", "num-queues", "1"),
        _p("virtio-scsi-device", "num_queues", "1"),
        _p("nvme", "use-intel-id", "on"),
        _p("pvpanic", "events", "1"),
        _p("pl011", "migrate-clk", "off"),
        _p("virtio-pci", "x-ats-page-aligned", "off"),
    )),
    _array("pc_compat_5_1", PC_C, (
        _p("ICH9-LPC", "x-smi-cpu-hotplug", "off"),
        _p("x86_64-cpu", "kvm-msi-ext-dest-id", "off"),
    )),
    _array("hw_compat_5_0", MACHINE_C, (
        _p("pci-host-bridge", "x-config-reg-migration-enabled", "off"),
        _p("virtio-balloon-device", "page-poison", "false"),
        _p("vmport", "x-read-set-eax", "off"),
        _p("vmport", "x-signal-unsupported-cmd", "off"),
        _p("vmport", "x-report-vmx-type", "off"),
        _p("vmport", "x-cmds-v2", "off"),
        _p("virtio-device", "x-disable-legacy-check", "true"),
    )),
    _array("pc_compat_5_0", PC_C, ()),
    _array("hw_compat_4_2", MACHINE_C, (
        _p("virtio-blk-device", "queue-size", "128"),
        _p("virtio-scsi-device", "virtqueue_size", "128"),
        _p("virtio-blk-device", "x-enable-wce-if-config-wce", "off"),
        _p("virtio-blk-device", "seg-max-adjust", "off"),
        _p("virtio-scsi-device", "seg_max_adjust", "off"),
        _p("vhost-blk-device", "seg_max_adjust", "off"),
        _p("usb-host", "suppress-remote-wake", "off"),
        _p("usb-redir", "suppress-remote-wake", "off"),
        _p("qxl", "revision", "4"),
        _p("qxl-vga", "revision", "4"),
        _p("fw_cfg", "acpi-mr-restore", "false"),
        _p("virtio-device", "use-disabled-flag", "false"),
    )),
    _array("pc_compat_4_2", PC_C, (
        _p("mch", "smbase-smram", "off"),
    )),
    _array("hw_compat_4_1", MACHINE_C, (
        _p("virtio-pci", "x-pcie-flr-init", "off"),
    )),
    _array("pc_compat_4_1", PC_C, ()),
    _array("hw_compat_4_0", MACHINE_C, (
        _p("VGA", "edid", "false"),
        _p("secondary-vga", "edid", "false"),
        _p("bochs-display", "edid", "false"),
        _p("virtio-vga", "edid", "false"),
        _p("virtio-gpu-device", "edid", "false"),
        _p("virtio-device", "use-started", "false"),
        _p("virtio-balloon-device", "qemu-4-0-config-size", "true"),
        _p("pl031", "migrate-tick-offset", "false"),
    )),
    _array("pc_compat_4_0", PC_C, ()),
    _array("hw_compat_3_1", MACHINE_C, (
        _p("pcie-root-port", "x-speed", "2_5"),
        _p("pcie-root-port", "x-width", "1"),
        _p("memory-backend-file", "x-use-canonical-path-for-ramblock-id", "true"),
        _p("memory-backend-memfd", "x-use-canonical-path-for-ramblock-id", "true"),
        _p("tpm-crb", "ppi", "false"),
        _p("tpm-tis", "ppi", "false"),
        _p("usb-kbd", "serial", "42"),
        _p("usb-mouse", "serial", "42"),
        _p("usb-tablet", "serial", "42"),
        _p("virtio-blk-device", "discard", "false"),
        _p("virtio-blk-device", "write-zeroes", "false"),
        _p("virtio-balloon-device", "qemu-4-0-config-size", "false"),
        _p("pcie-root-port-base", "disable-acs", "true"),
    )),
    _array("pc_compat_3_1", PC_C, (
        _p("intel-iommu", "dma-drain", "off"),
        _p("Opteron_G3-x86_64-cpu", "rdtscp", "off"),
        _p("Opteron_G4-x86_64-cpu", "rdtscp", "off"),
        _p("Opteron_G4-x86_64-cpu", "npt", "off"),
        _p("Opteron_G4-x86_64-cpu", "nrip-save", "off"),
        _p("Opteron_G5-x86_64-cpu", "rdtscp", "off"),
        _p("Opteron_G5-x86_64-cpu", "npt", "off"),
        _p("Opteron_G5-x86_64-cpu", "nrip-save", "off"),
        _p("EPYC-x86_64-cpu", "npt", "off"),
        _p("EPYC-x86_64-cpu", "nrip-save", "off"),
        _p("EPYC-IBPB-x86_64-cpu", "npt", "off"),
        _p("EPYC-IBPB-x86_64-cpu", "nrip-save", "off"),
        _p("Skylake-Client-x86_64-cpu", "mpx", "on"),
        _p("Skylake-Client-IBRS-x86_64-cpu", "mpx", "on"),
        _p("Skylake-Server-x86_64-cpu", "mpx", "on"),
        _p("Skylake-Server-IBRS-x86_64-cpu", "mpx", "on"),
        _p("Cascadelake-Server-x86_64-cpu", "mpx", "on"),
        _p("Icelake-Client-x86_64-cpu", "mpx", "on"),
        _p("Icelake-Server-x86_64-cpu", "mpx", "on"),
        _p("Cascadelake-Server-x86_64-cpu", "stepping", "5"),
        _p("x86_64-cpu", "x-intel-pt-auto-level", "off"),
    )),
    _array("hw_compat_3_0", MACHINE_C, ()),
    _array("pc_compat_3_0", PC_C, (
        _p("x86_64-cpu", "x-hv-synic-kvm-only", "on"),
        _p("Skylake-Server-x86_64-cpu", "pku", "off"),
        _p("Skylake-Server-IBRS-x86_64-cpu", "pku", "off"),
    )),
    _array("hw_compat_2_12", MACHINE_C, (
        _p("hda-audio", "use-timer", "false"),
        _p("cirrus-vga", "global-vmstate", "true"),
        _p("VGA", "global-vmstate", "true"),
        _p("vmware-svga", "global-vmstate", "true"),
        _p("qxl-vga", "global-vmstate", "true"),
    )),
    _array("pc_compat_2_12", PC_C, (
        _p("x86_64-cpu", "legacy-cache", "on"),
        _p("x86_64-cpu", "topoext", "off"),
        _p("EPYC-x86_64-cpu", "xlevel", "0x8000000a"),
        _p("EPYC-IBPB-x86_64-cpu", "xlevel", "0x8000000a"),
    )),
    _array("hw_compat_2_11", MACHINE_C, (
        _p("hpet", "hpet-offset-saved", "false"),
        _p("virtio-blk-pci", "vectors", "2"),
        _p("vhost-user-blk-pci", "vectors", "2"),
        _p("e1000", "migrate_tso_props", "off"),
    )),
    _array("pc_compat_2_11", PC_C, (
        _p("x86_64-cpu", "x-migrate-smi-count", "off"),
        _p("Skylake-Server-x86_64-cpu", "clflushopt", "off"),
    )),
    _array("hw_compat_2_10", MACHINE_C, (
        _p("virtio-mouse-device", "wheel-axis", "false"),
        _p("virtio-tablet-device", "wheel-axis", "false"),
    )),
    _array("pc_compat_2_10", PC_C, (
        _p("x86_64-cpu", "x-hv-max-vps", "0x40"),
        _p("i440FX-pcihost", "x-pci-hole64-fix", "off"),
        _p("q35-pcihost", "x-pci-hole64-fix", "off"),
    )),
    _array("hw_compat_2_9", MACHINE_C, (
        _p("pci-bridge", "shpc", "off"),
        _p("intel-iommu", "pt", "off"),
        _p("virtio-net-device", "x-mtu-bypass-backend", "off"),
        _p("pcie-root-port", "x-migrate-msix", "false"),
    )),
    _array("pc_compat_2_9", PC_C, (
        _p("mch", "extended-tseg-mbytes", "0"),
    )),
    _array("hw_compat_2_8", MACHINE_C, (
        _p("fw_cfg_mem", "x-file-slots", "0x10"),
        _p("fw_cfg_io", "x-file-slots", "0x10"),
        _p("pflash_cfi01", "old-multiple-chip-handling", "on"),
        _p("pci-bridge", "shpc", "on"),
        _p("pci-device", "x-pcie-extcap-init", "off"),
        _p("virtio-pci", "x-pcie-deverr-init", "off"),
        _p("virtio-pci", "x-pcie-lnkctl-init", "off"),
        _p("virtio-pci", "x-pcie-pm-init", "off"),
        _p("cirrus-vga", "vgamem_mb", "8"),
        _p("isa-cirrus-vga", "vgamem_mb", "8"),
    )),
    _array("pc_compat_2_8", PC_C, (
        _p("x86_64-cpu", "tcg-cpuid", "off"),
        _p("kvmclock", "x-mach-use-reliable-get-clock", "off"),
        _p("ICH9-LPC", "x-smi-broadcast", "off"),
        _p("x86_64-cpu", "vmware-cpuid-freq", "off"),
        _p("Haswell-x86_64-cpu", "stepping", "1"),
    )),
    _array("hw_compat_2_7", MACHINE_C, (
        _p("virtio-pci", "page-per-vq", "on"),
        _p("virtio-serial-device", "emergency-write", "off"),
        _p("ioapic", "version", "0x11"),
        _p("intel-iommu", "x-buggy-eim", "true"),
        _p("virtio-pci", "x-ignore-backend-features", "on"),
    )),
    _array("pc_compat_2_7", PC_C, (
        _p("x86_64-cpu", "l3-cache", "off"),
        _p("x86_64-cpu", "full-cpuid-auto-level", "off"),
        _p("Opteron_G3-x86_64-cpu", "family", "15"),
        _p("Opteron_G3-x86_64-cpu", "model", "6"),
        _p("Opteron_G3-x86_64-cpu", "stepping", "1"),
        _p("isa-pcspk", "migrate", "off"),
    )),
    _array("hw_compat_2_6", MACHINE_C, (
        _p("virtio-mmio", "format_transport_address", "off"),
        _p("virtio-pci", "disable-modern", "on", optional=True),
        _p("virtio-pci", "disable-legacy", "off", optional=True),
    )),
    _array("pc_compat_2_6", PC_C, (
        _p("x86_64-cpu", "cpuid-0xb", "off"),
        _p("vmxnet3", "romfile", ""),
        _p("x86_64-cpu", "fill-mtrr-mask", "off"),
        _p("apic-common", "legacy-instance-id", "on"),
    )),
    _array("hw_compat_2_5", MACHINE_C, (
        _p("isa-fdc", "fallback", "144"),
        _p("pvscsi", "x-old-pci-configuration", "on"),
        _p("pvscsi", "x-disable-pcie", "on"),
        _p("vmxnet3", "x-old-msi-offsets", "on"),
        _p("vmxnet3", "x-disable-pcie", "on"),
    )),
    _array("pc_compat_2_5", PC_C, ()),
    _array("hw_compat_2_4", MACHINE_C, (
        _p("e1000", "extra_mac_registers", "off"),
        _p("virtio-pci", "x-disable-pcie", "on"),
        _p("virtio-pci", "migrate-extra", "off"),
        _p("fw_cfg_mem", "dma_enabled", "off"),
        _p("fw_cfg_io", "dma_enabled", "off"),
    )),
    _array("pc_compat_2_4", PC_C, (
        _p("qemu32-x86_64-cpu", "model-id", "QEMU Virtual CPU version 2.4.0"),
        _p("qemu64-x86_64-cpu", "model-id", "QEMU Virtual CPU version 2.4.0"),
        _p("athlon-x86_64-cpu", "model-id", "QEMU Virtual CPU version 2.4.0"),
        _p("Haswell-x86_64-cpu", "abm", "off"),
        _p("Haswell-noTSX-x86_64-cpu", "abm", "off"),
        _p("Broadwell-x86_64-cpu", "abm", "off"),
        _p("Broadwell-noTSX-x86_64-cpu", "abm", "off"),
        _p("host-x86_64-cpu", "host-cache-info", "on"),
        _p("x86_64-cpu", "check", "off"),
        _p("qemu64-x86_64-cpu", "sse4a", "on"),
        _p("qemu64-x86_64-cpu", "abm", "on"),
        _p("qemu64-x86_64-cpu", "popcnt", "on"),
        _p("qemu32-x86_64-cpu", "popcnt", "on"),
        _p("Opteron_G2-x86_64-cpu", "rdtscp", "on"),
        _p("Opteron_G3-x86_64-cpu", "rdtscp", "on"),
        _p("Opteron_G4-x86_64-cpu", "rdtscp", "on"),
        _p("Opteron_G5-x86_64-cpu", "rdtscp", "on"),
    )),
)

COMPAT_ARRAYS: dict[str, CompatArray] = {array.name: array for array in _ARRAYS}
"""Every transcribed array by name."""

# Base arrays a family's machine_options() adds before any versioned array.
FAMILY_BASE_ARRAYS: dict[Family, tuple[str, ...]] = {
    "pc-i440fx": (),
    "pc-q35": ("pc_q35_compat_defaults",),
    "virt": ("arm_virt_compat",),
}
# The versioned arrays each family's X_Y_options() appends: hw_compat_X_Y always, and the
# board's own pc_compat_X_Y on pc (virt's options set class fields, not properties, in 10.0).
FAMILY_VERSIONED_ARRAYS: dict[Family, tuple[str, ...]] = {
    "pc-i440fx": ("hw_compat", "pc_compat"),
    "pc-q35": ("hw_compat", "pc_compat"),
    "virt": ("hw_compat",),
}

# Versions that have a hw_compat/pc_compat pair, newest first (the order they are appended).
COMPAT_VERSIONS: tuple[tuple[int, int], ...] = tuple(
    sorted({version for array in _ARRAYS if (version := array.version) is not None}, reverse=True)
)


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
    hw_compat_8_1, pc_compat_8_1; a 10.0 machine gets only its family's base arrays.
    """
    machine = resolve_machine(machine)
    names = list(FAMILY_BASE_ARRAYS[machine.family])
    for version in COMPAT_VERSIONS:
        if version >= machine.compat_version:
            names += [f"{kind}_{version[0]}_{version[1]}" for kind in FAMILY_VERSIONED_ARRAYS[machine.family]]
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
