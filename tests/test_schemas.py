"""Every `--json` output matches the JSON Schema vmig ships for it (vfio_ramfb_mig/schemas/),
for every bundled capture; the schemas themselves are valid draft 2020-12 and all used."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from vfio_ramfb_mig import schemas
from vfio_ramfb_mig.cli.main import cli

from paths import AARCH64, CAPTURES, FIXTURES
from schemacheck import assert_schema, schema_errors

ALL = sorted(CAPTURES.glob("*.bin"))
IDS = [p.stem for p in ALL]
#: the other real streams: aarch64 (UEFI-booted), live x86 guests (XBZRLE, multifd, mapped-ram, postcopy),
#: display devices, QEMU 7.2's compress; some xz'd, and libvirt save images and qcow2 snapshots around them
OTHERS = sorted(p for d in ("aarch64", "live", "display", "compress", "containers") for p in (FIXTURES / d).glob("*")
                if p.name.endswith((".bin", ".bin.xz", ".save", ".qcow2")))
TESTS = Path(__file__).parent


def vmig(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in ok, (result.exit_code, result.output, result.exception)
    return result.stdout


def meta(capture: Path) -> dict:
    """How the capture was made (its .meta.json sidecar, written by the capture helper from real QEMU)."""
    return json.loads(capture.with_suffix(".meta.json").read_text())


def qemu_series(capture: Path) -> str:
    """"10.0" or "7.2": the QEMU that wrote the capture."""
    return ".".join(meta(capture)["qemu"]["version"].split(".")[:2])


@pytest.mark.parametrize("name", schemas.names())
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = schemas.load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == schemas.schema_id(name) and schema.get("title") and schema.get("description")


def test_every_schema_is_checked_by_a_test() -> None:
    used = set()
    for path in TESTS.rglob("*.py"):
        used |= set(re.findall(r'assert_schema\(\s*"([\w-]+)"', path.read_text()))
    assert set(schemas.names()) <= used, f"schemas no test validates: {sorted(set(schemas.names()) - used)}"
    assert used <= set(schemas.names()), f"tests name schemas that are not shipped: {sorted(used - set(schemas.names()))}"


def test_schemas_are_shipped_and_printed_by_vmig_schema() -> None:
    assert {"decode", "decode-pages", "diff", "check", "golden-check", "ram-manifest"} <= set(schemas.names())
    assert vmig("schema").split() == schemas.names()
    assert json.loads(vmig("schema", "decode")) == schemas.load("decode")
    result = CliRunner().invoke(cli, ["schema", "nosuch"])
    assert result.exit_code == 2 and "decode-pages" in result.stderr


@pytest.mark.parametrize("capture", ALL, ids=IDS)
def test_decode_json(capture: Path) -> None:
    assert_schema("decode", json.loads(vmig("decode", "--json", capture)))


@pytest.mark.parametrize("capture", OTHERS, ids=[p.name for p in OTHERS])
def test_decode_json_and_page_lines_of_the_other_streams(capture: Path) -> None:
    pick = ["--snapshot", "first"] if "snapshots" in capture.name else []  # a qcow2 with two VM states
    assert_schema("decode", json.loads(vmig("decode", "--json", *pick, capture)))
    lines = [json.loads(line) for line in vmig("decode", "--pages", "--json", *pick, capture).splitlines()]
    shapes = {(line.get("record"), line.get("kind"), line.get("fill")): line for line in reversed(lines)}
    for line in lines[:20] + list(shapes.values()):
        assert_schema("decode-pages", line)


@pytest.mark.parametrize("capture", ALL[::8], ids=IDS[::8])
def test_decode_json_embedded(capture: Path) -> None:
    doc = json.loads(vmig("decode", "--json", "--embed", capture))
    assert doc["source"]["embedded"] is True
    assert_schema("decode", doc)


def test_decode_json_of_vfio_streams(tmp_path: Path) -> None:
    """No capture holds a VFIO device (it needs hardware): the streams `vmig encode` builds do."""
    for machine in ("pc-q35-8.2", "pc-8.1"):
        out = tmp_path / f"{machine}.bin"
        vmig("encode", "--machine", machine, "--ramfb", "-o", out)
        doc = json.loads(vmig("decode", "--json", out))
        assert any(r.get("decoder") == "vfio" for r in doc["records"])
        assert_schema("decode", doc)


@pytest.mark.parametrize("capture", ALL, ids=IDS)
def test_decode_pages_json_lines(capture: Path) -> None:
    """Each line is one object; the lines of one shape (section record and page kind) come from the
    same code, so the first 50 lines and the first of each shape are validated (all in one capture)."""
    lines = [json.loads(line) for line in vmig("decode", "--pages", "--json", capture).splitlines()]
    assert lines
    if capture != ALL[0]:
        shapes = {(line.get("record"), line.get("kind"), line.get("fill")): line for line in reversed(lines)}
        lines = lines[:50] + list(shapes.values())
    for line in lines:
        assert_schema("decode-pages", line)


@pytest.mark.parametrize("capture", ALL + sorted(AARCH64.glob("*.bin")),
                         ids=IDS + [p.stem for p in sorted(AARCH64.glob("*.bin"))])
def test_check_json(capture: Path) -> None:
    doc = json.loads(vmig("check", "--json", capture, "--qemu", qemu_series(capture), ok=(0, 1)))
    assert_schema("check", doc)
    # the destination judged is of the architecture of the QEMU that wrote the stream
    made = meta(capture)  # older sidecars name only the binary: qemu-system-ARCH
    assert doc["destination"]["arch"] == made.get("arch", Path(made["qemu"]["binary_path"]).name.removeprefix("qemu-system-"))


@pytest.mark.parametrize("capture", ALL, ids=IDS)
def test_diff_json(capture: Path) -> None:
    other = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
    assert_schema("diff", json.loads(vmig("diff", "--json", capture, other, ok=(0, 1))))


@pytest.mark.parametrize("capture", ALL[::6], ids=IDS[::6])
def test_diff_json_compat(capture: Path) -> None:
    other = CAPTURES / "qemu-7.2.22__pc-q35-7.2__ramfb+booted.bin"
    doc = json.loads(vmig("diff", "--json", "--compat", capture, other, ok=(0, 1)))
    assert "compat" in doc
    assert_schema("diff", doc)


@pytest.mark.parametrize("capture", ALL, ids=IDS)
def test_ram_extract_manifest(capture: Path, tmp_path: Path) -> None:
    vmig("ram", "extract", "-q", capture, tmp_path / "ram")
    assert_schema("ram-manifest", json.loads((tmp_path / "ram" / "manifest.json").read_text()))


def test_schemas_are_not_vacuous() -> None:
    """The schemas refuse what the outputs must not be: an unknown key, a wrong type, a missing key."""
    capture = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
    doc = json.loads(vmig("decode", "--json", capture))
    assert not schema_errors("decode", doc)
    bad = json.loads(json.dumps(doc))
    bad["records"][0]["colour"] = "blue"
    assert schema_errors("decode", bad)
    bad = json.loads(json.dumps(doc))
    ram = next(r for r in bad["records"] if r.get("decoder") == "ram" and r["type"] == "section_part")
    ram["ram"]["items"][0]["count"] = "many"
    assert schema_errors("decode", bad)
    bad = json.loads(json.dumps(doc))
    del bad["records"][-1]["json"]
    assert schema_errors("decode", bad)
    verdict = json.loads(vmig("check", "--json", capture, "--qemu", "10.0", ok=(0, 1)))
    verdict["findings"].append({"rule": "x", "severity": "fatal", "summary": "", "messages": []})
    assert schema_errors("check", verdict)
