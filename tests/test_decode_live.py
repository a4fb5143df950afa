"""Live: real QEMU 10.0 and 7.2 write streams now; vmig decodes them whole and rebuilds them.

Cases go beyond the bundled captures (a PCIe device behind a root port, several
devices, capabilities, a booted guest, no footer, no vmdesc, a small bandwidth
so CONTINUE crosses section boundaries), so the decoder is judged on streams it
has never seen. Every case must decode with --strict (nothing opaque) when it has
a vmdesc, tile the file, and re-encode byte for byte.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from vfio_ramfb_mig import Source, decode, encode_bytes, jsonform
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.model import RamBody, RamPages
from vfio_ramfb_mig.qemu import capture

from helpers import assert_same_bytes, assert_tiles

CASES_10 = {
    "q35-rootport-e1000e": dict(machine="pc-q35-10.0", devices=["pcie-root-port,id=rp1,chassis=1",
                                                                "e1000e,bus=rp1,romfile=,mac=52:54:00:12:34:56"]),
    "i440fx-ramfb-virtio": dict(machine="pc-i440fx-9.0", devices=["ramfb", "virtio-rng-pci"]),
    "q35-caps-uuid": dict(machine="q35", capabilities=["x-ignore-shared", "validate-uuid"],
                          extra_args=["-uuid", "12345678-9abc-def0-1122-334455667788"]),
    "q35-mapped-ram": dict(machine="pc-q35-9.2", capabilities=["mapped-ram"]),
    "q35-slow-continue": dict(machine="pc-q35-8.2", parameters={"max-bandwidth": 100000}, booted_seconds=1),
    "q35-booted-ramfb": dict(machine="pc-q35-10.0", devices=["ramfb"], booted_seconds=2),
    "q35-novmdesc": dict(machine="pc-q35-10.0", devices=["ramfb"], suppress_vmdesc=True),
    "i440fx-nofooter": dict(machine="pc-i440fx-8.1", globals_=["migration.send-section-footer=off"]),
}
CASES_72 = {
    "q35-72-ramfb-booted": dict(machine="pc-q35-7.2", devices=["ramfb"], booted_seconds=1),
    "i440fx-72-e1000e": dict(machine="pc-i440fx-7.2", devices=["e1000e,romfile=,mac=52:54:00:12:34:56"]),
    "q35-72-nofooter": dict(machine="pc-q35-7.2", globals_=["migration.send-section-footer=off"]),
}


def check_stream(path, *, strict: bool) -> None:
    data = path.read_bytes()
    with Source.open(str(path)) as src:
        stream = decode(src, strict=strict)
        assert_tiles(stream)
        assert_same_bytes(encode_bytes(stream, src), data)
        assert_same_bytes(encode_bytes(jsonform.loads(jsonform.dumps(stream)), src), data)
    runner = CliRunner()
    result = runner.invoke(cli, ["decode", "--summary", str(path)])
    assert result.exit_code == 0, result.output
    out = path.with_suffix(".again.bin")
    json_path = path.with_suffix(".json")
    assert runner.invoke(cli, ["decode", "--json", str(path), "-o", str(json_path)]).exit_code == 0
    result = runner.invoke(cli, ["encode", "--from-json", str(json_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert_same_bytes(out.read_bytes(), data)


@pytest.mark.qemu
@pytest.mark.parametrize("name", sorted(CASES_10))
def test_live_qemu_10(tmp_path, qemu10, name: str) -> None:
    case = CASES_10[name]
    path = tmp_path / f"{name}.bin"
    capture(qemu10, path, **case)
    check_stream(path, strict=not case.get("suppress_vmdesc"))
    if name == "q35-slow-continue":
        stream = decode(str(path))
        parts = [s for s in stream.sections if s.idstr == "ram" and s.type == "section_part"]
        assert len(parts) > 1
        first_runs = [s.body.items[0] for s in parts[1:] if isinstance(s.body, RamBody)
                      and isinstance(s.body.items[0], RamPages)]
        assert any(not run.named for run in first_runs), "expected CONTINUE to carry across a section boundary"


@pytest.mark.qemu
@pytest.mark.parametrize("name", sorted(CASES_72))
def test_live_qemu_72(tmp_path, qemu72, name: str) -> None:
    path = tmp_path / f"{name}.bin"
    capture(qemu72, path, **CASES_72[name])
    check_stream(path, strict=True)


# Device families with their own vmstate shapes (qtailq-free USB trees, audio codecs, SCSI HBAs,
# NICs with large register files, display adapters, an IOMMU): the decoder must follow each
# stream's own vmdesc, whatever the device.
DEVICE_SETS = {
    "usb": (["qemu-xhci,id=x", "usb-tablet,bus=x.0", "usb-kbd,bus=x.0", "piix3-usb-uhci", "usb-ehci"], []),
    "audio": (["ich9-intel-hda", "hda-output,audiodev=a"], ["-audiodev", "none,id=a"]),
    "misc": (["virtio-balloon-pci", "i6300esb", "pvpanic", "virtio-serial-pci", "virtio-keyboard-pci"], []),
    "storage": (["virtio-scsi-pci,id=s", "lsi53c895a", "megasas", "sdhci-pci"], []),
    "net": (["e1000,netdev=n1", "rtl8139,netdev=n2", "virtio-net-pci,netdev=n3", "vmxnet3,netdev=n4"],
            [arg for i in range(1, 5) for arg in ("-netdev", f"user,id=n{i},restrict=on")]),
    "gfx": (["VGA", "bochs-display", "virtio-gpu-pci", "cirrus-vga"], []),
    "iommu": (["intel-iommu"], ["-machine", "kernel-irqchip=split"]),
}


@pytest.mark.qemu
@pytest.mark.parametrize("series", ["10.0", "7.2"])
@pytest.mark.parametrize("name", sorted(DEVICE_SETS))
def test_live_device_families(tmp_path, request, series: str, name: str) -> None:
    qemu = request.getfixturevalue("qemu10" if series == "10.0" else "qemu72")
    devices, extra = DEVICE_SETS[name]
    path = tmp_path / f"{name}.bin"
    capture(qemu, path, machine="pc-q35-7.2", devices=devices, extra_args=extra,
            booted_seconds=1 if name in ("usb", "gfx") else 0)
    check_stream(path, strict=True)
