"""`vmig encode --machine`: QEMU's compat and realize rules decide the stream, byte for byte.

Expected outcomes come from the rules as the issue and wire-format §10.3 state them,
written out here as a first-match table, not from the code under test. Byte-level
expectations come from real captures (ramfb-dev, e1000e's PCIDevice + MSI-X) and from
the worked example of wire-format §8.4, which was rebuilt independently from QEMU's rules.
"""

from __future__ import annotations

import itertools
import json

import pytest
from click.testing import CliRunner

from vfio_ramfb_mig import decode, encode_bytes
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.devstream import DeviceRequest, build_device_stream
from vfio_ramfb_mig.errors import CompatError, MigrationBlockedError
from vfio_ramfb_mig.model import VfioBody

from helpers import assert_same_bytes
from paths import CAPTURES

MACHINES = [f"{family}-{version}" for family in ("pc-i440fx", "pc-q35")
            for version in ("7.2", "8.1", "8.2", "9.0", "10.0")]
RAMFB = (True, False)
RAMFB_MIGRATE = ("on", "off", "auto", None)
ENABLE_MIGRATION = ("on", "off", "auto", None)


def expected(machine: str, ramfb: bool, ramfb_migrate: str | None, migration: str | None) -> str:
    """present | absent | warn-absent | error | blocked, by the rules, first match wins."""
    old = tuple(int(x) for x in machine.rsplit("-", 1)[1].split(".")) <= (8, 1)
    effective = ramfb_migrate if ramfb_migrate is not None else ("off" if old else "auto")
    warn = effective == "on" and not ramfb
    if warn:
        effective = "off"
    if migration == "off":
        if effective == "on":
            return "error"
        return "blocked"
    present = effective == "on" or (effective == "auto" and ramfb)
    return ("warn-" if warn else "") + ("present" if present else "absent")


def vfio_display_present(data: bytes) -> bool:
    stream = decode(data)
    full = [s for s in stream.sections if s.type == "section_full"]
    assert len(full) == 1 and isinstance(full[0].body, VfioBody)
    config = next(i.config for i in full[0].body.items if i.kind == "config")
    return [s.name for s in config.subsections] == ["VFIOPCIDevice/VFIODisplay"]


@pytest.mark.parametrize("machine,ramfb,ramfb_migrate,migration",
                         list(itertools.product(MACHINES, RAMFB, RAMFB_MIGRATE, ENABLE_MIGRATION)))
def test_rules_table(machine: str, ramfb: bool, ramfb_migrate: str | None, migration: str | None) -> None:
    want = expected(machine, ramfb, ramfb_migrate, migration)
    request = DeviceRequest(machine=machine, ramfb=ramfb, x_ramfb_migrate=ramfb_migrate, enable_migration=migration)
    if want == "error":
        with pytest.raises(CompatError, match="x-ramfb-migrate requires enable-migration"):
            build_device_stream(request)
        return
    if want == "blocked":
        with pytest.raises(MigrationBlockedError):
            build_device_stream(request)
        return
    built = build_device_stream(request)
    assert vfio_display_present(built.data) == want.endswith("present")
    warned = "x-ramfb-migrate=on but ramfb=off. Forcing x-ramfb-migrate to off." in built.realize.warnings
    assert warned == want.startswith("warn-")
    # what vmig writes, vmig reads back and rewrites identically
    assert_same_bytes(encode_bytes(decode(built.data)), built.data)
    assert decode(built.data).configuration.machine == machine


def test_ramfb_requires_display() -> None:
    with pytest.raises(CompatError, match="ramfb=on requires display=on"):
        build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True, display="off"))


def test_worked_example_bytes() -> None:
    """wire-format §8.4: a 256-byte-config display function with MSI and a configured ramfb."""
    state = {"type": "section_full", "idstr": "0000:00:02.0/vfio", "section_id": 0x29, "instance_id": 0,
             "version_id": 1, "decoder": "vfio", "vfio": {"items": [{"kind": "config", "vmsd_name": "VFIOPCIDevice",
             "version": 1, "fields": [], "subsections": [{"name": "VFIOPCIDevice/VFIODisplay", "version": 1,
             "fields": [{"name": "dpy", "type": "struct", "value": {"vmsd_name": "VFIODisplay", "version": 1,
             "fields": [{"name": "ramfb", "type": "struct", "value": {"vmsd_name": "ramfb", "version": 1,
             "fields": [{"name": "cfg", "type": "ramfb cfg", "value": {"addr": 0x7EC00000, "fourcc": "XR24",
             "flags": 0, "width": 1024, "height": 768, "stride": 4096}}]}}]}}]}]}, {"kind": "end_of_state"}]}}
    built = build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True, state=state,
                                              addr="0000:00:02.0", section_id=0x29))
    full = [s for s in built.stream.sections if s.type == "section_full"][0]
    section = built.data[full.span.offset:full.span.end]
    expected_hex = (
        "04000000291130303030" "3a30303a30322e302f76" "6669 6f00000000000000 01"
        "ffffffffef100002" "00000002"
        "86809 23e 0704 1000 00 000003 00 00 00 00" "040000f0 00000000 0c0000e0 00000000 01c00000 00000000"
        "00000000 8680 1222 00000000 40 000000 00000000 0b 01 00 00"
        "05 00 8100 0000e0fe 00000000 2140" + "00" * (256 - 0x4E) +
        "00" * 16 +
        "05 19" + "VFIOPCIDevice/VFIODisplay".encode().hex() + "00000001"
        "000000007ec00000 34325258 00000000 00000400 00000300 00001000"
        "ffffffffef100001" "7e00000029")
    assert_same_bytes(section, bytes.fromhex(expected_hex.replace(" ", "")))
    assert len(section) == 387
    assert json.loads(built.data[built.stream.vmdesc.span.offset + 5:])["devices"][0]["size"] == 351


def test_ramfb_bytes_equal_the_booted_capture() -> None:
    capture = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"))
    (real,) = [s for s in capture.sections if s.idstr == "ramfb-dev"]
    from vfio_ramfb_mig.codec.jsonform import to_json

    record = next(r for r in to_json(capture)["records"] if r.get("idstr") == "ramfb-dev")
    built = build_device_stream(DeviceRequest(machine="pc-q35-8.2", device="ramfb", state=record))
    (ours,) = [s for s in built.stream.sections if s.idstr == "ramfb-dev"]
    data = (CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin").read_bytes()
    assert_same_bytes(built.data[ours.span.offset:ours.span.end], data[real.span.offset:real.span.end])
    assert built.data[ours.span.offset + 23:ours.span.offset + 51].hex() == \
        "0000000000c00000" "34325258" "00000000" "00000400" "00000300" "00001000"


def test_pci_and_msix_bytes_equal_the_e1000e_capture() -> None:
    """VFIOPCIDevice's pdev + msix are VMSTATE_PCI_DEVICE + VMSTATE_MSIX, as in e1000e."""
    path = CAPTURES / "qemu-10.0.2__pc-q35-7.2__e1000e.bin"
    capture = decode(str(path))
    (dev,) = [s for s in capture.sections if s.idstr.endswith("/e1000e")]
    pci, msix = dev.body.fields[0], dev.body.fields[1]
    data = path.read_bytes()
    real = data[pci.span.offset:msix.span.end]
    config = next(f.value for f in pci.value.fields if f.type == "pci config")
    irq = next(f.value for f in pci.value.fields if f.type == "pci irq state")
    state = {"type": "section_full", "idstr": "0000:00:01.0/vfio", "section_id": 1, "instance_id": 0,
             "version_id": 1, "decoder": "vfio", "vfio": {"items": [{"kind": "config", "vmsd_name": "VFIOPCIDevice",
             "version": 1, "fields": [
                 {"name": "pdev", "type": "struct", "value": {"vmsd_name": "PCIDevice", "version": 2, "fields": [
                     {"name": "version_id", "type": "int32 le", "value": 2},
                     {"name": "config", "type": "pci config", "value": config.hex()},
                     {"name": "irq_state", "type": "pci irq state", "value": irq}]}},
                 {"name": "msix", "type": "msix state", "value": msix.value.fields[0].value.hex()}],
             "subsections": []}]}}
    built = build_device_stream(DeviceRequest(machine="pc-q35-10.0", state=state))
    full = [s for s in built.stream.sections if s.type == "section_full"][0]
    config_item = next(i for i in full.body.items if i.kind == "config")
    start = config_item.config.fields[0].span.offset
    assert_same_bytes(built.data[start:start + len(real)], real)
    assert len(real) == 4116 + 81


def test_cli_encode_and_decision_lines(tmp_path) -> None:
    out = tmp_path / "vfio.bin"
    result = CliRunner().invoke(cli, ["encode", "--machine", "pc-8.1", "--ramfb", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "hw_compat_8_1: x-ramfb-migrate=off" in result.stderr
    assert not vfio_display_present(out.read_bytes())
    result = CliRunner().invoke(cli, ["encode", "--machine", "pc-q35-8.2", "--ramfb", "-o", str(out)])
    assert result.exit_code == 0 and vfio_display_present(out.read_bytes())


@pytest.mark.parametrize("args,message", [
    (["--machine", "pc-q35-8.2", "--ramfb", "--enable-migration", "off"], "blocks migration"),
    (["--machine", "pc-q35-8.2", "--ramfb", "--x-ramfb-migrate", "on", "--enable-migration", "off"],
     "x-ramfb-migrate requires enable-migration"),
    (["--machine", "pc-q35-8.3", "--ramfb"], "close: pc-q35-8.2"),
])
def test_cli_refusals_exit_2_and_write_nothing(tmp_path, args: list[str], message: str) -> None:
    out = tmp_path / "x.bin"
    result = CliRunner().invoke(cli, ["encode", *args, "-o", str(out)])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_state_names_the_field(tmp_path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"type": "section_full", "idstr": "ramfb-dev", "section_id": 1, "instance_id": 0,
                                 "version_id": 1, "decoder": "builtin", "vmsd_name": "ramfb-dev", "version": 1,
                                 "fields": [{"name": "state", "type": "struct", "value": {
                                     "vmsd_name": "ramfb", "version": 1, "fields": [
                                         {"name": "cfg", "type": "ramfb cfg", "value": {
                                             "addr": 0, "fourcc": "XR24", "flags": 0, "width": "wide",
                                             "height": 768, "stride": 0}}]}}]}))
    result = CliRunner().invoke(cli, ["encode", "--machine", "q35", "--device", "ramfb", "--state", str(state),
                                      "-o", str(tmp_path / "o.bin")])
    assert result.exit_code == 2
    assert "width" in result.stderr and "expected an integer" in result.stderr
    assert not (tmp_path / "o.bin").exists()


@pytest.mark.qemu
def test_qemu_10_loads_a_vmig_ramfb_stream_and_7_2_refuses_it(tmp_path, qemu10, qemu72) -> None:
    from vfio_ramfb_mig.codec.jsonform import to_json
    from vfio_ramfb_mig.qemu import load

    capture = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"))
    record = next(r for r in to_json(capture)["records"] if r.get("idstr") == "ramfb-dev")
    built = build_device_stream(DeviceRequest(machine="pc-q35-8.2", device="ramfb", state=record))
    stream = tmp_path / "ramfb.bin"
    stream.write_bytes(built.data)
    verdict = load(qemu10, stream, machine="pc-q35-8.2", devices=["ramfb"])
    assert verdict.accepted, verdict.stderr
    # the same device state for a 7.2 machine, forced on: QEMU 7.2 has no ramfb-dev vmstate
    forced = build_device_stream(DeviceRequest(machine="pc-q35-7.2", device="ramfb", x_migrate=True, state=record))
    old = tmp_path / "ramfb72.bin"
    old.write_bytes(forced.data)
    verdict = load(qemu72, old, machine="pc-q35-7.2", devices=["ramfb"])
    assert not verdict.accepted and "Unknown savevm section or instance 'ramfb-dev' 0" in verdict.stderr
    # and with the machine's default (x-migrate off on 7.2): no section, so 7.2 loads it
    default = build_device_stream(DeviceRequest(machine="pc-q35-7.2", device="ramfb", state=record))
    plain = tmp_path / "ramfb72-default.bin"
    plain.write_bytes(default.data)
    assert not any(s.idstr == "ramfb-dev" for s in default.stream.sections)
    verdict = load(qemu72, plain, machine="pc-q35-7.2", devices=["ramfb"])
    assert verdict.accepted, verdict.stderr


# ---------------------------------------------------------------- the vmdesc vmig writes is QEMU's


def _inline_typed(obj: object) -> bool:
    """Does a vmdesc object hold a field QEMU describes inline (VMSTATE_WITH_TMP "tmp", "vstruct")?
    vmig reads those as nested structs and does not keep the type name, so it cannot write them."""
    if isinstance(obj, dict):
        return obj.get("type") in ("tmp", "vstruct") or any(_inline_typed(v) for v in obj.values())
    return isinstance(obj, list) and any(_inline_typed(v) for v in obj)


#: the captures QEMU wrote a vmdesc for (their sidecars say how QEMU was started)
WITH_VMDESC = [p for p in sorted(CAPTURES.glob("*.bin"))
               if "suppress-vmdesc=on" not in (json.loads(p.with_suffix(".meta.json").read_text())
                                               .get("machine_options") or "")]


@pytest.mark.parametrize("capture", WITH_VMDESC, ids=lambda p: p.stem)
def test_vmdesc_of_a_decoded_capture_is_the_one_qemu_wrote(capture) -> None:
    """vmdesc_document describes a decoded stream the way QEMU described it while saving: the same
    objects, keys in the same order (arrays of structs, elements described one by one with "index",
    the ramfb cfg as a plain buffer)."""
    from vfio_ramfb_mig.codec.vmdesc_out import vmdesc_document

    stream = decode(str(capture))
    theirs = stream.vmdesc.document
    ours = vmdesc_document(stream, theirs["page_size"])
    if "configuration" in theirs:  # QEMU 7.2 does not describe the configuration record
        assert json.dumps(ours["configuration"]) == json.dumps(theirs["configuration"])
    compared = 0
    for mine, qemu in zip(ours["devices"], theirs["devices"], strict=True):
        assert (mine["name"], mine["instance_id"]) == (qemu["name"], qemu["instance_id"])
        if not _inline_typed(qemu):
            assert json.dumps(mine) == json.dumps(qemu), mine["name"]
            compared += 1
    assert compared >= len(theirs["devices"]) - 1  # only cpu holds a "tmp" field


def test_vmdesc_of_a_built_ramfb_dev_is_the_one_qemu_wrote() -> None:
    capture = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"))
    built = build_device_stream(DeviceRequest(machine="pc-q35-8.2", device="ramfb"))
    (qemu,) = [d for d in capture.vmdesc.document["devices"] if d["name"] == "ramfb-dev"]
    (ours,) = [d for d in built.stream.vmdesc.document["devices"] if d["name"] == "ramfb-dev"]
    assert ours == qemu
