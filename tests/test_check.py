"""vmig check: the load verdict, rule by rule, without running QEMU.

Each expectation here was also observed on real QEMU 10.0.2 and 7.2.22
(tests/test_check_qemu.py runs the same streams through `-incoming`); these
tests pin the rules and messages so they run everywhere.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import (
    caps_stream,
    insert_switchover_start,
    patch_section_version,
    patch_subsection_version,
    rename,
    rename_machine,
    vfio_stream,
    with_part_before_end,
    zero_run,
)
from paths import CAPTURES

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.compat.check import (
    RULES,
    VERSION_FACTS,
    Verdict,
    build_destinations_data,
    check_stream,
    destination,
    destination_of,
    destinations_data,
    verdict_json,
)
from vfio_ramfb_mig.errors import CompatError, InputError
from vfio_ramfb_mig.vmstate.dump import bundled_schema, description, read_dump

UNKNOWN = ("Unknown savevm section or instance '{}' {}. Make sure that your current VM setup matches your saved "
           "VM setup, including any hotplugged devices")
EINVAL = "load of migration failed: Invalid argument"
ENOENT = "load of migration failed: No such file or directory"

Q72_PLAIN_10 = CAPTURES / "qemu-10.0.2__pc-q35-7.2__plain.bin"
Q72_PLAIN_72 = CAPTURES / "qemu-7.2.22__pc-q35-7.2__plain.bin"
Q82_RAMFB = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"


def verdict(stream: Path | bytes, qemu: str, machine: str | None = None, devices: tuple[str, ...] = (),
            caps: tuple[str, ...] = (), memory: str | None = None) -> Verdict:
    decoded = decode(stream if isinstance(stream, bytes) else str(stream))
    machine = machine or decoded.configuration.machine
    return check_stream(decoded, destination(qemu=qemu, machine=machine, devices=devices, capabilities=caps,
                                             memory=memory))


# ---------------------------------------------------------------- streams patched like a newer/older QEMU would write


PATCHED = {
    "mapped-ram": lambda: caps_stream(b"pc-q35-7.2", b"mapped-ram"),
    "switchover-start": lambda: insert_switchover_start(Q72_PLAIN_10.read_bytes()),
    "port92-v2": lambda: patch_section_version(Q72_PLAIN_10.read_bytes(), "port92", 2),
    "port92-v0": lambda: patch_section_version(Q72_PLAIN_10.read_bytes(), "port92", 0),
    "timer-v3": lambda: patch_section_version(Q72_PLAIN_10.read_bytes(), "timer", 3),
    "fw_cfg-unknown-subsection": lambda: rename(Q72_PLAIN_10.read_bytes(), "fw_cfg/acpi_mr", "fw_cfg/acpi_xx"),
    "fw_cfg-subsection-v2": lambda: patch_subsection_version(Q72_PLAIN_10.read_bytes(), "fw_cfg/acpi_mr", 2),
    # a run that names the 4 KiB block and CONTINUEs two pages past its used_length
    "rsdp-continued-past-end": lambda: with_part_before_end(Q72_PLAIN_10.read_bytes(),
                                                            [zero_run("/rom@etc/acpi/rsdp", 0, count=3)]),
}

#: (stream, destination QEMU, machine, devices, caps, memory) -> what QEMU prints; None means it loads
#: silently. Every row was loaded into real QEMU (tests/test_check_qemu.py).
CASES = {
    "q35-8.2+ramfb on 10.0 without ramfb": (
        "qemu-10.0.2__pc-q35-8.2__ramfb.bin", "10.0", "pc-q35-8.2", (), (), None,
        (UNKNOWN.format("ramfb-dev", 0), EINVAL)),
    "q35-8.2+ramfb on 10.0 with ramfb": (
        "qemu-10.0.2__pc-q35-8.2__ramfb.bin", "10.0", "pc-q35-8.2", ("ramfb",), (), None, ()),
    "10.0's q35-7.2 on 7.2": ("qemu-10.0.2__pc-q35-7.2__plain.bin", "7.2", "pc-q35-7.2", (), (), None, ()),
    "7.2's q35-7.2 on 10.0": ("qemu-7.2.22__pc-q35-7.2__plain.bin", "10.0", "pc-q35-7.2", (), (), None, ()),
    "q35-8.2 on q35-8.1": (
        "qemu-10.0.2__pc-q35-8.2__plain.bin", "10.0", "pc-q35-8.1", (), (), None,
        ("Machine type received is 'pc-q35-8.2' and local is 'pc-q35-8.1'", EINVAL)),
    "i440fx-8.1 on q35-8.1": (
        "qemu-10.0.2__pc-i440fx-8.1__plain.bin", "10.0", "pc-q35-8.1", (), (), None,
        ("Machine type received is 'pc-i440fx-8.1' and local is 'pc-q35-8.1'", EINVAL)),
    "x-ignore-shared stream, capability off": (
        "qemu-10.0.2__pc-q35-10.0__ramfb+cap-x-ignore-shared.bin", "10.0", "pc-q35-10.0", ("ramfb",), (), None,
        ("Capability x-ignore-shared is off, but received capability is on", EINVAL)),
    "x-ignore-shared stream, capability on": (
        "qemu-10.0.2__pc-q35-10.0__ramfb+cap-x-ignore-shared.bin", "10.0", "pc-q35-10.0", ("ramfb",),
        ("x-ignore-shared",), None, ()),
    "7.2 x-ignore-shared stream on 7.2, capability off": (
        "qemu-7.2.22__pc-q35-7.2__cap-x-ignore-shared.bin", "7.2", "pc-q35-7.2", (), (), None,
        ("Capability x-ignore-shared is off, but received capability is on", EINVAL)),
    "e1000e on 10.0 without e1000e": (
        "qemu-7.2.22__pc-q35-7.2__e1000e.bin", "10.0", "pc-q35-7.2", (), (), None,
        (UNKNOWN.format("0000:00:01.0/e1000e", 0), EINVAL)),
    "e1000e on 10.0 with e1000e": ("qemu-7.2.22__pc-q35-7.2__e1000e.bin", "10.0", "pc-q35-7.2", ("e1000e",), (), None,
                                   ()),
    "virtio-rng-pci": ("qemu-10.0.2__pc-q35-8.2__virtio-rng.bin", "10.0", "pc-q35-8.2", ("virtio-rng-pci",), (),
                       None, ()),
    "no footers": ("qemu-10.0.2__pc-q35-7.2__nofooter.bin", "7.2", "pc-q35-7.2", (), (), None,
                   ("Missing section footer for ram", EINVAL)),
    "no vmdesc": ("qemu-10.0.2__pc-q35-7.2__novmdesc.bin", "7.2", "pc-q35-7.2", (), (), None,
                  ("Expected vmdescription section, but got 0",)),
    "-m 32M": ("qemu-10.0.2__pc-q35-7.2__plain.bin", "10.0", "pc-q35-7.2", (), (), "32M",
               ("Size mismatch: pc.ram: 0x1000000 != 0x2000000: Invalid argument",
                "error while loading state for instance 0x0 of device 'ram'", EINVAL)),
    "section version too new": ("port92-v2", "7.2", "pc-q35-7.2", (), (), None,
                                ("savevm: unsupported version 2 for 'port92' v1", EINVAL)),
    "section version too old": ("port92-v0", "10.0", "pc-q35-7.2", (), (), None,
                                ("port92: incoming version_id 0 is too old for local minimum version_id  1",
                                 "error while loading state for instance 0x0 of device 'port92'", EINVAL)),
    "handler-less vmsd version too new": ("timer-v3", "10.0", "pc-q35-7.2", (), (), None,
                                          ("savevm: unsupported version 3 for 'timer' v2", EINVAL)),
    "unknown subsection": ("fw_cfg-unknown-subsection", "7.2", "pc-q35-7.2", (), (), None,
                           ("error while loading state for instance 0x0 of device 'fw_cfg'", ENOENT)),
    "mapped-ram on 7.2": ("mapped-ram", "7.2", "pc-q35-7.2", (), (), None,
                          ("Received unknown capability mapped-ram",
                           "Failed to load configuration/capabilities:capabilities", EINVAL)),
    "mapped-ram on 10.0, capability off": ("mapped-ram", "10.0", "pc-q35-7.2", (), (), None,
                                           ("Capability mapped-ram is off, but received capability is on", EINVAL)),
    "mapped-ram on 10.0, capability on": ("mapped-ram", "10.0", "pc-q35-7.2", (), ("mapped-ram",), None,
                                          ("Expected vmdescription section, but got 0",)),
    "SWITCHOVER_START on 7.2": ("switchover-start", "7.2", "pc-q35-7.2", (), (), None,
                                ("MIG_CMD 0xb unknown (len 0x0)", EINVAL)),
    "SWITCHOVER_START on 10.0": ("switchover-start", "10.0", "pc-q35-7.2", (), (), None, ()),
    "CONTINUE records past a block's end on 10.0": (
        "rsdp-continued-past-end", "10.0", "pc-q35-7.2", (), (), None,
        ("Illegal RAM offset 1000", "error while loading state section id 1(ram)", EINVAL)),
    "CONTINUE records past a block's end on 7.2": (
        "rsdp-continued-past-end", "7.2", "pc-q35-7.2", (), (), None,
        ("Illegal RAM offset 1000", "error while loading state section id 1(ram)", EINVAL)),
    "subsection version too new": ("fw_cfg-subsection-v2", "10.0", "pc-q35-7.2", (), (), None,
                                   ("fw_cfg/acpi_mr: incoming version_id 2 is too new for local version_id 1",
                                    "error while loading state for instance 0x0 of device 'fw_cfg'", EINVAL)),
    # two faults in one configuration record: QEMU meets the first one it checks and stops there
    # (subsections are loaded before configuration_post_load checks machine, page bits, capabilities)
    "unknown capability before machine type": ("mapped-ram", "7.2", "pc-q35-7.1", (), (), None,
                                               ("Received unknown capability mapped-ram",
                                                "Failed to load configuration/capabilities:capabilities", EINVAL)),
    "machine type before capability mismatch": ("mapped-ram", "10.0", "pc-q35-7.1", (), (), None,
                                                ("Machine type received is 'pc-q35-7.2' and local is 'pc-q35-7.1'",
                                                 EINVAL)),
}


def case_stream(name: str) -> bytes:
    return PATCHED[name]() if name in PATCHED else (CAPTURES / name).read_bytes()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_verdict_and_qemu_output(case: str) -> None:
    stream, qemu, machine, devices, caps, memory, output = CASES[case]
    result = verdict(case_stream(stream), qemu, machine, devices, caps, memory)
    assert result.qemu_output == output
    assert result.loadable is (not output or output[-1] not in (EINVAL, ENOENT))


def test_finding_names_rule_location_and_source() -> None:
    result = verdict(Q82_RAMFB, "10.0")
    (first,) = result.refusals
    assert first.rule_id == "unknown-section" and first.path == "ramfb-dev"
    stream = decode(str(Q82_RAMFB))
    record = stream.records[first.record]
    assert record.idstr == "ramfb-dev" and first.offset == record.span.offset == 0x453d3
    assert first.pointer == f"/records/{first.record}"
    assert "find_se" in first.source and first.errno == "Invalid argument"


def test_a_second_instance_is_named_as_diff_and_golden_name_it() -> None:
    """The second DMA controller is `dma#1` in a finding's path, as in `vmig diff` and golden files."""
    data = Q72_PLAIN_10.read_bytes()
    second = next(s for s in decode(data).sections if s.idstr == "dma" and s.instance_id == 1)
    at = second.span.offset + 6 + len("dma") + 4  # its header's version_id
    result = verdict(data[:at] + struct.pack(">I", 2) + data[at + 4:], "7.2")
    assert result.qemu_output == ("savevm: unsupported version 2 for 'dma' v1", EINVAL)
    assert result.first.path == "dma#1" and result.first.offset == second.span.offset


def test_ramfb_dev_section_on_72_even_with_device_ramfb() -> None:
    # a 10.0 stream of pc-q35-7.2 carrying ramfb-dev (x-migrate=on); QEMU 7.2's ramfb has no vmstate
    stream = rename_machine(Q82_RAMFB.read_bytes(), "pc-q35-8.2", "pc-q35-7.2")
    result = verdict(stream, "7.2", "pc-q35-7.2", ("ramfb",))
    assert result.qemu_output == (UNKNOWN.format("ramfb-dev", 0), EINVAL)
    assert "QEMU 7.2.22 has no vmsd named 'ramfb-dev'" in result.first.summary
    assert any("--device ramfb: no vmstate" in n for n in result.destination.notes)
    assert verdict(stream, "10.0", "pc-q35-7.2", ("ramfb",)).loadable


def test_machine_name_is_compared_over_the_received_length() -> None:
    stream = decode(str(Q72_PLAIN_10))
    data = Q72_PLAIN_10.read_bytes()
    # a received name that is a prefix of the local one passes QEMU's strncmp
    short = data.replace(b"\x07\x00\x00\x00\x0apc-q35-7.2", b"\x07\x00\x00\x00\x08pc-q35-7", 1)
    assert decode(short).configuration.machine == "pc-q35-7"
    assert not any(f.rule_id == "machine-type" for f in verdict(short, "10.0", "pc-q35-7.2").findings)
    assert stream.configuration.machine == "pc-q35-7.2"


# ---------------------------------------------------------------- VFIO: VFIODisplay before 8.2 (by rule)


def test_vfio_display_refused_before_82() -> None:
    stream = vfio_stream(b"pc-q35-7.2")
    result = verdict(stream, "7.2", "pc-q35-7.2", ("vfio-pci,x-enable-migration=on",))
    first = result.first
    assert first.rule_id == "unknown-subsection"
    assert first.path == "0000:00:02.0/vfio/config/VFIODisplay"
    assert first.pointer == "/records/2/vfio/items/0/config/subsections/0"
    assert stream[first.offset:first.offset + 27] == b"\x05\x19VFIOPCIDevice/VFIODisplay"
    assert result.qemu_output == ("<host device>: Failed to load device config space",
                                  "error while loading state for instance 0x0 of device '0000:00:02.0/vfio'", ENOENT)
    # without x-enable-migration, 7.2's vfio-pci registers no savevm entry at all
    plain = verdict(stream, "7.2", "pc-q35-7.2", ("vfio-pci",))
    assert plain.qemu_output == (UNKNOWN.format("0000:00:02.0/vfio", 0), EINVAL)
    # 8.2 and later have the subsection
    assert verdict(stream, "10.0", "pc-q35-7.2", ("vfio-pci",)).loadable
    assert verdict(vfio_stream(b"pc-q35-7.2", width=None), "7.2", "pc-q35-7.2",
                   ("vfio-pci,x-enable-migration=on",)).loadable


def test_vfio_display_by_schema_for_other_versions(tmp_path: Path) -> None:
    """--schema without --qemu: a dump with the ramfb-dev vmsd is >= 8.2 (they came together)."""
    dump72 = tmp_path / "dump72.json.gz"
    dump72.write_bytes(gzip.compress(json.dumps(_bundled_doc("7.2")).encode()))
    stream = decode(vfio_stream(b"pc-q35-7.2"))
    dest = destination(schema=str(dump72), machine="pc-q35-7.2", devices=("vfio-pci",))
    assert dest.machine == "pc-q35-7.2" and dest.qemu is None
    assert check_stream(stream, dest).first.rule_id == "unknown-subsection"
    dump10 = tmp_path / "dump10.json"
    dump10.write_text(json.dumps(_bundled_doc("10.0")))
    dest10 = destination(schema=str(dump10), devices=("vfio-pci",))  # machine from vmschkmachine
    assert dest10.machine == "pc-q35-10.0"
    assert check_stream(decode(vfio_stream(b"pc-q35-10.0")), dest10).loadable


def _bundled_doc(series: str) -> dict:
    from importlib import resources

    name = {"10.0": "vmstate-qemu-10.0.2.json.gz", "7.2": "vmstate-qemu-7.2.22.json.gz"}[series]
    return json.loads(gzip.decompress(resources.files("vfio_ramfb_mig").joinpath("data", name).read_bytes()))


# ---------------------------------------------------------------- destinations


def test_destination_errors() -> None:
    with pytest.raises(CompatError, match="has no machine type 'pc-q35-8.2'"):
        destination(qemu="7.2", machine="pc-q35-8.2")
    with pytest.raises(CompatError, match=r"bundles the -dump-vmstate of QEMU 10.0, 7.2 \(x86_64\) only, not 8.1"):
        destination(qemu="8.1", machine="pc-q35-8.1")
    with pytest.raises(CompatError, match="unknown machine type"):
        destination(qemu="10.0", machine="pc-q35-99.0")
    with pytest.raises(CompatError, match="no migration capability mapped-ram"):
        destination(qemu="7.2", machine="pc-q35-7.2", capabilities=("mapped-ram",))
    with pytest.raises(InputError, match="not a -dump-vmstate"):
        read_dump(b"[1, 2]")


def test_destination_aliases_and_devices() -> None:
    assert destination(qemu="7.2", machine="q35").machine == "pc-q35-7.2"
    assert destination(qemu="10.0", machine="q35").machine == "pc-q35-10.0"
    assert destination(qemu="10.0", machine="pc").machine == "pc-i440fx-10.0"
    dest = destination(qemu="10.0", machine="pc-q35-8.2", devices=("ramfb,x-migrate=on", "virtio-rng-pci", "e1000e",
                                                                    "pcie-root-port", "vfio-pci"))
    added = [(e.vmsd_name, e.origin) for e in dest.entries if e.idstr is None]
    assert added == [("ramfb-dev", "--device ramfb"), ("virtio-rng", "--device virtio-rng-pci"),
                     ("e1000e", "--device e1000e"), ("pcie-root-port", "--device pcie-root-port"),
                     ("PCIBUS", "--device pcie-root-port (its secondary bus)"), ("vfio", "--device vfio-pci")]
    assert dest.validated == ("x-ignore-shared", "mapped-ram")
    assert destination(qemu="7.2", machine="pc-q35-7.2").validated == ("x-ignore-shared",)


def test_destination_of_a_stream_is_the_vm_that_wrote_it() -> None:
    stream = decode(str(Q82_RAMFB))
    dest = destination_of(stream, qemu="10.0")
    assert dest.machine == "pc-q35-8.2" and dest.memory == 16 << 20
    assert check_stream(stream, dest).loadable  # a stream always loads where it was made
    assert not check_stream(decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__plain.bin")), dest).findings


def test_every_capture_loads_where_it_was_made() -> None:
    for capture in sorted(CAPTURES.glob("*.bin")):
        meta = json.loads(capture.with_suffix(".meta.json").read_text())
        stream = decode(str(capture))
        result = check_stream(stream, destination_of(stream, qemu=meta["qemu"]["version"]))
        assert result.loadable, (capture.name, result.qemu_output)


def test_bundled_dump_index() -> None:
    schema = bundled_schema("10.0")
    assert schema.machine == "pc-q35-10.0"
    assert schema.vmsd_of_type("ramfb").name == "ramfb-dev"
    fw_cfg = schema.vmsd("fw_cfg")
    assert (fw_cfg.version_id, fw_cfg.minimum_version_id, fw_cfg.subsection_names) == (
        2, 1, ("fw_cfg/dma", "fw_cfg/acpi_mr"))
    assert schema.vmsd("fw_cfg/acpi_mr").version_id == 1  # subsections are indexed by name too
    assert schema.vmsd("PCIDevice").version_id == 2  # and nested descriptions
    assert bundled_schema("7.2").vmsd("ramfb-dev") is None
    desc = description(schema.vmsd("ramfb-dev"))
    assert desc.minimum_version == 1 and desc.fields[0].struct.name == "ramfb" and desc.origin == "dump"


def test_bundled_destinations_data_matches_the_fixtures() -> None:
    """data/destinations.json.gz is derived from the captures; rebuild it from fixtures/ and compare."""
    captures = []
    for path in sorted(CAPTURES.glob("*.bin")):
        captures.append((path.name, decode(str(path)), json.loads(path.with_suffix(".meta.json").read_text())))
    rebuilt = build_destinations_data(captures, {s: bundled_schema(s) for s in ("10.0", "7.2")})
    bundled = destinations_data()
    for series in ("10.0", "7.2"):
        ours, theirs = rebuilt["qemu"][series], bundled["qemu"][series]
        assert ours["capabilities"] == theirs["capabilities"]
        assert ours["vmsds"] == theirs["vmsds"]
        assert ours["families"] == theirs["families"]
    assert set(bundled["qemu"]["7.2"]["families"]) == {"pc-q35", "pc-i440fx"}


def test_rules_cite_qemu_and_facts_are_ordered() -> None:
    assert len({r.rule_id for r in RULES}) == len(RULES)
    assert all(r.source for r in RULES)
    assert {f.name for f in VERSION_FACTS} >= {"VFIOPCIDevice/VFIODisplay", "ramfb-dev"}
    # findings come in the order QEMU's loader meets them (the two CASES above, also run on real QEMU):
    # an unknown capability while the subsections load, then post_load's machine type, then capabilities
    mapped = case_stream("mapped-ram")
    assert [f.rule_id for f in verdict(mapped, "7.2", "pc-q35-7.1").refusals] == ["capability-unknown", "machine-type"]
    assert [f.rule_id for f in verdict(mapped, "10.0", "pc-q35-7.1").refusals] == ["machine-type",
                                                                                   "capability-mismatch"]
    # and a stream's records in stream order: the configuration's before the sections'
    late = verdict(rename_machine(Q82_RAMFB.read_bytes(), "pc-q35-8.2", "pc-q35-7.2"), "7.2", "pc-q35-7.1")
    assert [f.rule_id for f in late.refusals][:2] == ["machine-type", "unknown-section"]
    assert [f.record for f in late.refusals] == sorted(f.record for f in late.refusals)


def test_verdict_json() -> None:
    doc = verdict_json(verdict(Q82_RAMFB, "10.0"))
    assert json.loads(json.dumps(doc)) == doc
    assert doc["loadable"] is False and doc["findings"][0]["rule"] == "unknown-section"
    assert doc["destination"]["machine"] == "pc-q35-8.2"


# ---------------------------------------------------------------- CLI


def test_cli_check_exit_status() -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["check", str(Q82_RAMFB), "--qemu", "10.0", "--device", "ramfb"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("would load")
    refused = runner.invoke(cli, ["check", str(Q82_RAMFB), "--target", "pc-q35-8.2", "--qemu", "10.0"])
    assert refused.exit_code == 1
    assert "QEMU would print:" in refused.stdout and "Unknown savevm section or instance 'ramfb-dev' 0" in \
        refused.stdout
    as_json = runner.invoke(cli, ["check", "--json", str(Q82_RAMFB), "--target", "pc-q35-8.1", "--qemu", "7.2"])
    assert as_json.exit_code == 2 and "has no machine type 'pc-q35-8.1'" in as_json.stderr
    brief = runner.invoke(cli, ["check", "--brief", str(Q72_PLAIN_72), "-M", "pc-q35-8.1", "--qemu", "10.0"])
    assert brief.exit_code == 1
    assert brief.stdout.splitlines()[-1] == "  machine-type: Machine type received is 'pc-q35-7.2' and local is " \
                                            "'pc-q35-8.1'"
    rules = runner.invoke(cli, ["check", "--rules"])
    assert rules.exit_code == 0 and "unknown-subsection" in rules.stdout
    missing = runner.invoke(cli, ["check", str(Q82_RAMFB)])
    # no --qemu: judged as the newest bundled build with the stream's machine, and said so
    assert missing.exit_code == 1 and "QEMU version not given (--qemu): judged as QEMU 10.0.2" in missing.stdout


def test_cli_check_schema_file(tmp_path: Path) -> None:
    dump = tmp_path / "dest.json"
    dump.write_text(json.dumps(_bundled_doc("7.2")))
    result = CliRunner().invoke(cli, ["check", "--json", str(Q72_PLAIN_10), "--schema", str(dump), "--qemu", "7.2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["loadable"] and doc["destination"]["machine"] == "pc-q35-7.2"
    assert doc["destination"]["schema"] == str(dump)


def test_destination_without_section_footers() -> None:
    plain = decode(str(Q72_PLAIN_10))
    off = destination(qemu="10.0", machine="pc-q35-7.2", section_footers=False)
    assert check_stream(plain, off).qemu_output == ("Unknown savevm section type 126", EINVAL)
    nofooter = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-7.2__nofooter.bin"))
    assert check_stream(nofooter, off).loadable
    result = CliRunner().invoke(cli, ["check", str(CAPTURES / "qemu-10.0.2__pc-q35-7.2__nofooter.bin"), "--qemu",
                                      "7.2", "--no-section-footer"])
    assert result.exit_code == 0, result.output
