"""Hostile text inputs: JSON and TOML files that Python's parsers fail on in ways a caller
rarely catches (a 5000-digit number, 1000-deep nesting, bytes that are not UTF-8) give exit 2
and one line naming the file and the place, whatever file it is: a decode document, a
--state file, a golden, a vmig-golden.toml, a .meta.json sidecar, a -dump-vmstate file, a
stream's own vmdesc. And encode refuses what decode refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from vfio_ramfb_mig.cli.main import cli

from helpers import assert_one_error_line, with_vmdesc_text, WITH_VMDESC
from paths import CAPTURES

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
CAPS = CAPTURES / "qemu-10.0.2__pc-q35-7.2__cap-x-ignore-shared.bin"

#: name -> (JSON text, what the error says, where)
HOSTILE_JSON = {
    "long-number": (b'{"a": ' + b"9" * 5000 + b"}", "a number of 5000 digits", "line 1, column 7 (byte 6)"),
    "deep": (b'{"a":\n' + b"[" * 1000 + b"]" * 1000 + b"}", "nested too deeply", "line 2, column 1000"),
    "not-utf8": (b'{"a": "caf\xe9"}', "not UTF-8", "byte 10"),
    "malformed": (b'{"a": [1,]}', "not valid JSON", "line 1, column 10 (byte 9)"),
}


def vmig(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(result, *wants: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    line = assert_one_error_line(result.stderr, wants=wants[0])
    for want in wants[1:]:
        assert want in line, line
    return line


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_encode_from_json(tmp_path: Path, case: str) -> None:
    text, says, where = HOSTILE_JSON[case]
    doc = tmp_path / "doc.json"
    doc.write_bytes(text)
    one_line(vmig("encode", "--from-json", doc, "-o", tmp_path / "out.bin"), str(doc), says, where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_encode_state(tmp_path: Path, case: str) -> None:
    text, says, where = HOSTILE_JSON[case]
    state = tmp_path / "state.json"
    state.write_bytes(text)
    one_line(vmig("encode", "-q", "--machine", "pc-q35-8.2", "--device", "ramfb", "--state", state,
                  "-o", tmp_path / "out.bin"), str(state), says, where)


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_diff_compat_sidecar(tmp_path: Path, case: str) -> None:
    text, says, where = HOSTILE_JSON[case]
    for name in ("a", "b"):
        shutil.copy(BOOTED, tmp_path / f"{name}.bin")
        shutil.copy(BOOTED.with_suffix(".meta.json"), tmp_path / f"{name}.meta.json")
    (tmp_path / "b.meta.json").write_bytes(text)
    one_line(vmig("diff", "--compat", tmp_path / "a.bin", tmp_path / "b.bin"), "b.meta.json", says, where)


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_check_schema_file(tmp_path: Path, case: str) -> None:
    text, says, where = HOSTILE_JSON[case]
    schema = tmp_path / "dump.json"
    schema.write_bytes(text)
    one_line(vmig("check", BOOTED, "--schema", schema, "--qemu", "10.0"), str(schema), says, where)


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_golden_options_line(tmp_path: Path, case: str) -> None:
    text, says, _ = HOSTILE_JSON[case]
    shutil.copy(BOOTED, tmp_path / "s.bin")
    golden = tmp_path / "s.golden.txt"
    golden.write_bytes(b"# vmig golden file (format 1).\n# options: " + text.replace(b"\n", b" ") + b"\n")
    result = vmig("golden", "check", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    place = "s.golden.txt: not UTF-8 text" if case == "not-utf8" else "s.golden.txt:2"  # the whole file is read first
    assert place in result.stderr and says.split()[0] in result.stderr, result.stderr


def test_golden_file_not_utf8(tmp_path: Path) -> None:
    shutil.copy(BOOTED, tmp_path / "s.bin")
    (tmp_path / "s.golden.txt").write_bytes(b"# vmig golden file (format 1).\nram = caf\xe9\n")
    result = vmig("golden", "check", tmp_path)
    assert result.exit_code == 2
    assert "s.golden.txt" in result.stderr and "not UTF-8" in result.stderr and "at byte 40" in result.stderr


@pytest.mark.parametrize(("text", "says"), [
    (b"ignore = " + b"[" * 2000 + b"]" * 2000, "nested too deeply"),
    (b"x = " + b"9" * 5000, "more than 4300 digits"),
    (b'ignore = ["caf\xe9"]', "not UTF-8"),
    (b"ignore = = 1", "not valid TOML"),
])
def test_golden_toml(tmp_path: Path, text: bytes, says: str) -> None:
    shutil.copy(BOOTED, tmp_path / "s.bin")
    assert vmig("golden", "update", tmp_path).exit_code == 0
    (tmp_path / "vmig-golden.toml").write_bytes(text)
    for verb in ("check", "update"):
        result = vmig("golden", verb, tmp_path)
        assert result.exit_code == 2, result.output
        assert "vmig-golden.toml" in result.stderr and says in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(("vmdesc", "says"), [
    (b'{"page_size": ' + b"4" * 5000 + b', "devices": []}', "a number of 5000 digits"),
    (b'{"page_size": 4096, "devices": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested too deeply"),
])
def test_a_streams_vmdesc(tmp_path: Path, vmdesc: bytes, says: str) -> None:
    stream = tmp_path / "s.bin"
    stream.write_bytes(with_vmdesc_text(WITH_VMDESC, vmdesc))
    for verb in (["decode"], ["decode", "--json"], ["check", "--qemu", "10.0"]):
        one_line(vmig(*verb, stream), "vmdesc", says, "offset")


# --- encode refuses what decode refuses -------------------------------------------------------------

def decoded(tmp_path: Path, capture: Path = BOOTED) -> dict:
    return json.loads(vmig("decode", "--json", capture).stdout)


def encode_doc(tmp_path: Path, doc: dict, *args: object):
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    result = vmig("encode", "--from-json", tmp_path / "doc.json", *args, "-o", tmp_path / "out.bin")
    return result


@pytest.mark.parametrize(("edit", "says"), [
    (lambda d: d["records"][0].update(version=99), "unsupported stream header"),
    (lambda d: d["records"][0].update(version=2), "unsupported stream header"),
    (lambda d: d["records"][0].update(magic=0x51455650), "unsupported stream header"),
    (lambda d: d["vmig"].update(format=2), "unsupported document format 2"),
    (lambda d: d["source"].pop("size"), "does not say the size of its source"),
])
def test_encode_refuses(tmp_path: Path, edit, says: str) -> None:
    doc = decoded(tmp_path)
    edit(doc)
    one_line(encode_doc(tmp_path, doc), says)
    assert not (tmp_path / "out.bin").exists()


def test_decode_refuses_the_header_encode_refuses(tmp_path: Path) -> None:
    data = bytearray(BOOTED.read_bytes())
    data[4:8] = (99).to_bytes(4, "big")
    (tmp_path / "v99.bin").write_bytes(data)
    one_line(vmig("decode", tmp_path / "v99.bin"), "unsupported stream version 99")


@pytest.mark.parametrize("value", [[["x-ignore-shared"]], [1], [None], {"a": 1}])
def test_encode_refuses_a_capability_that_is_not_a_name(tmp_path: Path, value) -> None:
    doc = decoded(tmp_path, CAPS)
    caps = next(r for r in doc["records"] if r["type"] == "configuration")["subsections"][0]["fields"][1]
    assert caps["name"] == "capabilities"
    caps["value"] = value
    one_line(encode_doc(tmp_path, doc, "--source", CAPS), "expected a capability name", "/records/1/subsections/0")


def test_encode_refuses_a_negative_page_offset(tmp_path: Path) -> None:
    doc = decoded(tmp_path)
    part = next(r for r in doc["records"] if r.get("decoder") == "ram" and r["type"] == "section_part")
    run = next(i for i in part["ram"]["items"] if i["kind"] == "zero")
    run["page_offset"] = -4096
    one_line(encode_doc(tmp_path, doc), "page_offset", "out of range")


def test_a_good_document_still_encodes(tmp_path: Path) -> None:
    result = encode_doc(tmp_path, decoded(tmp_path))
    assert result.exit_code == 0 and (tmp_path / "out.bin").read_bytes() == BOOTED.read_bytes()
