"""Every real capture decodes whole, tiles, round-trips, and agrees with what QEMU said about it.

The sidecars (*.meta.json) were written by the capture script from QEMU's own
QMP answers (query-migrate's page counts, the command line), so the checks
below compare vmig's reading of the bytes with QEMU's accounting, not with
vmig's own earlier output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vfio_ramfb_mig import Source, decode, encode_bytes, jsonform
from vfio_ramfb_mig.model import RamBody, RamPages, VfioBody, VmstateBody
from vfio_ramfb_mig.render.tree import find_ramfb

from helpers import assert_same_bytes, assert_tiles
from paths import CAPTURES

ALL = sorted(CAPTURES.glob("*.bin"))


def meta(capture: Path) -> dict:
    return json.loads(capture.with_suffix(".meta.json").read_text())


def test_there_are_captures() -> None:
    assert len(ALL) >= 30


@pytest.mark.parametrize("capture", ALL, ids=lambda p: p.stem)
def test_capture_decodes_tiles_and_round_trips(capture: Path) -> None:
    data = capture.read_bytes()
    info = meta(capture)
    assert len(data) == info["size"] and hashlib.sha256(data).hexdigest() == info["sha256"]
    with Source.open(str(capture)) as src:
        stream = decode(src, strict="novmdesc" not in capture.name)
        assert_tiles(stream)
        assert_same_bytes(encode_bytes(stream, src), data)
        # through the JSON form, by reference to the source and standing alone
        assert_same_bytes(encode_bytes(jsonform.loads(jsonform.dumps(stream)), src), data)
        # by reference it reads back as the same model, not only the same bytes: PART/END records, which
        # carry no instance/version on the wire, take them from their START as decode's do
        assert jsonform.loads(jsonform.dumps(stream)).records == stream.records
        assert_same_bytes(encode_bytes(jsonform.loads(jsonform.dumps(stream, embed=True, source=src))), data)


@pytest.mark.parametrize("capture", ALL, ids=lambda p: p.stem)
def test_capture_agrees_with_qemu(capture: Path) -> None:
    info = meta(capture)
    stream = decode(str(capture))
    assert stream.configuration is not None and stream.configuration.machine == info["machine"]
    # RAM page counts equal QEMU's own query-migrate accounting (normal pages, zero pages = "duplicate")
    answer = info["query_migrate"]  # the shared captures keep QMP's {"return": ...}; vmig's helper unwraps it
    ram = answer.get("return", answer)["ram"]
    runs = [i for s in stream.sections if isinstance(s.body, RamBody) for i in s.body.items if isinstance(i, RamPages)]
    assert sum(r.count for r in runs if r.kind == "page") == ram["normal"]
    assert sum(r.count for r in runs if r.kind == "zero") == ram["duplicate"]
    # capabilities QEMU validates are announced in the configuration
    caps = {c for s in stream.configuration.subsections if s.name == "configuration/capabilities"
            for f in s.fields if f.name == "capabilities" for c in f.value}
    assert caps == set(info["migration_capabilities_set"]) & {"x-ignore-shared", "mapped-ram"}
    # ramfb-dev is there iff x-migrate ended up true: default on >= 8.2 in QEMU 10.0, never in 7.2
    idstrs = [s.idstr for s in stream.sections]
    ramfb_device = "ramfb" in info["devices"] or any(d.startswith("ramfb,") for d in info["devices"])
    machine_version = tuple(int(x) for x in info["machine"].rsplit("-", 1)[1].split("."))
    expect_ramfb = ramfb_device and info["qemu"]["version"].startswith("10.") and (
        "x-migrate=on" in " ".join(info["devices"]) or
        (machine_version >= (8, 2) and "x-migrate=off" not in " ".join(info["devices"])))
    assert ("ramfb-dev" in idstrs) == expect_ramfb
    # the vmdesc lists exactly the FULL sections, in order
    vmdesc = stream.vmdesc
    if vmdesc is not None:
        full = [(s.idstr, s.instance_id) for s in stream.sections if s.type == "section_full"]
        assert [(d["name"], d["instance_id"]) for d in vmdesc.document["devices"]] == full
    # footers and SWITCHOVER_START as the capture's knobs say
    assert all(s.footer for s in stream.sections) == ("nofooter" not in capture.name)
    switchover = any(r.type == "command" and r.name == "SWITCHOVER_START" for r in stream.records)
    assert switchover == (info["qemu"]["version"].startswith("10.") and machine_version >= (10, 0))


def test_booted_ramfb_geometry_in_words() -> None:
    """SeaBIOS programs 1024x768 XR24 at 0xc00000 with stride 4096, big-endian on the wire."""
    for name in ("qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin", "qemu-10.0.2__pc-q35-10.0__ramfb+booted.bin"):
        stream = decode(str(CAPTURES / name))
        (ramfb,) = [s for s in stream.sections if s.idstr == "ramfb-dev"]
        assert isinstance(ramfb.body, VmstateBody) and ramfb.body.origin == "builtin"
        cfg = find_ramfb(ramfb.body.fields, ramfb.body.subsections)
        assert cfg == {"addr": 0xC00000, "fourcc": 0x34325258, "flags": 0, "width": 1024, "height": 768,
                       "stride": 4096}
        cfg_field = ramfb.body.fields[0].value.fields[0]
        assert cfg_field.info["fourcc"] == "XR24" and cfg_field.info["format"] == "XRGB8888"
        assert cfg_field.span.length == 28


def test_paused_ramfb_is_unconfigured() -> None:
    stream = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"))
    (ramfb,) = [s for s in stream.sections if s.idstr == "ramfb-dev"]
    assert find_ramfb(ramfb.body.fields, ()) == dict.fromkeys(("addr", "fourcc", "flags", "width", "height",
                                                               "stride"), 0)


def test_e1000e_pci_and_msix_in_words() -> None:
    stream = decode(str(CAPTURES / "qemu-10.0.2__pc-i440fx-8.2__e1000e.bin"))
    (dev,) = [s for s in stream.sections if s.idstr.endswith("/e1000e")]
    assert dev.idstr == "0000:00:02.0/e1000e"
    pci = dev.body.fields[0].value
    config = next(f for f in pci.fields if f.type == "pci config")
    assert config.name == "config[1]" and len(config.value) == 4096
    assert config.info["vendor_id"] == 0x8086 and config.info["device_id"] == 0x10D3
    assert any(c["name"] == "MSI-X" and c["vectors"] == 5 for c in config.info["capabilities"])
    msix = dev.body.fields[1].value.fields[0]
    assert msix.type == "msix state"
    assert msix.span.length == 81 and msix.info["vectors"] == 5


def test_continue_carries_across_sections_and_ignore_shared_addresses() -> None:
    stream = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+cap-x-ignore-shared.bin"))
    start = stream.sections[0]
    blocks = {b.idstr: b for b in start.body.items[0].blocks}
    assert blocks["pc.bios"].addr == 0xFFFC0000 and blocks["pc.rom"].addr == 0xC0000


def test_stream_without_vmdesc_uses_builtin_and_footers() -> None:
    stream = decode(str(CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+novmdesc.bin"))
    assert stream.vmdesc is None and stream.records[-1].type == "eof"
    kinds = {s.idstr: type(s.body).__name__ for s in stream.sections}
    assert kinds["ramfb-dev"] == "VmstateBody" and kinds["timer"] == "OpaqueBody" and kinds["ram"] == "RamBody"
    assert any("kept opaque" in w for w in stream.warnings)


def test_no_vfio_in_captures_means_no_vfio_bodies() -> None:
    for capture in ALL:
        stream = decode(str(capture))
        assert not any(isinstance(s.body, VfioBody) for s in stream.sections)


def test_json_document_is_written_a_piece_at_a_time(tmp_path: Path) -> None:
    """decode --json (and --embed, whose document is bigger than the stream) is made a record, and
    an embedded value a bounded piece, at a time: what is held at once does not grow with the
    stream. The pieces make the document that rebuilds the stream byte for byte."""
    from helpers import write_big_stream

    big = tmp_path / "big.bin"
    write_big_stream(big, pages=4096)  # 16 MiB of pages in one RAM record
    for capture in (CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin", big):
        with Source.open(str(capture)) as src:
            stream = decode(src)
            for embed in (False, True):
                pieces = list(jsonform.iter_dumps(stream, embed=embed, source=src))
                text = "".join(pieces)
                assert len(pieces) > len(stream.records) and max(map(len, pieces)) < 1_100_000
                rebuilt = jsonform.loads(text)
                assert_same_bytes(encode_bytes(rebuilt, None if embed else src), capture.read_bytes())
