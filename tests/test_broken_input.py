"""Broken input never gives a traceback: one error line with an offset and a path, exit status 2.

Truncation at every record boundary of real captures (with and without vmdesc and
footers, QEMU 10.0 and 7.2), named corruptions, random bit flips, and `vmig encode`
fed broken JSON documents or asked to overwrite its input.
"""

from __future__ import annotations

import json
import os
import pty
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfio_ramfb_mig import Source, decode, encode_bytes, jsonform
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.errors import (
    BadMagicError,
    CorruptError,
    JsonFormError,
    TruncatedError,
    UnknownSectionError,
    UnknownSubsectionError,
    VmdescError,
)
from vfio_ramfb_mig.model import RamMarker, RamPages, Section

import helpers as h
from helpers import assert_one_error_line

VMIG = str(Path(sys.executable).parent / "vmig")


def cli_decode(tmp_path: Path, blob: bytes, *args: str):
    target = tmp_path / "input.bin"
    target.write_bytes(blob)
    return CliRunner().invoke(cli, ["decode", *args, str(target)])


# ---------------------------------------------------------------- truncation


@pytest.mark.parametrize("name", h.SWEPT)
def test_truncation_at_every_record_boundary(tmp_path: Path, name: str) -> None:
    """Cut at each record boundary and two bytes either side: exit 2 and one line saying where."""
    complete = h.complete_prefixes(name)
    target = tmp_path / "cut.bin"
    runner = CliRunner()
    for cut in h.boundaries(name, slack=2):
        target.write_bytes(h.data(name)[:cut])
        result = runner.invoke(cli, ["decode", "--summary", str(target)])
        assert "Traceback" not in result.output
        if cut in complete:  # EOF and nothing after: a whole stream without a vmdesc
            assert result.exit_code == 0, (cut, result.stderr)
            continue
        assert result.exit_code == 2, (cut, result.stderr, result.exception)
        assert_one_error_line(result.stderr)


@pytest.mark.parametrize("name", [h.WITH_VMDESC, h.QEMU72])
def test_truncation_says_where_the_stream_stops(name: str) -> None:
    """Inside a record the error is a TruncatedError at the end of the input, naming the record."""
    for record in h.stream(name).records[1:8]:
        cut = record.span.offset + min(3, record.span.length - 1)
        with pytest.raises(TruncatedError) as info:
            decode(h.data(name)[:cut])
        assert info.value.offset == cut
        assert info.value.path[:1] == ("records",), info.value.path
        assert "ends" in info.value.message or "cut short" in info.value.message


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "tree"])
def test_partial_shows_the_complete_part_and_exits_2(tmp_path: Path, as_json: bool) -> None:
    whole = h.stream(h.WITH_VMDESC)
    cut = h.section(h.WITH_VMDESC, "apic").span.offset + 20
    result = cli_decode(tmp_path, h.data(h.WITH_VMDESC)[:cut], "--partial", *(["--json"] if as_json else []))
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)
    if as_json:
        doc = json.loads(result.stdout)
        assert "offset" in doc["error"]
        records = doc["records"]
        # every record before the one the stream was cut in
        assert len(records) == whole.records.index(h.section(h.WITH_VMDESC, "apic"))
        # the complete part is exactly what the whole stream decodes to, record by record
        for got, want in zip(records, whole.records):
            assert (got["type"], got["offset"], got["length"]) == (want.type, want.span.offset, want.span.length)
    else:
        assert "ram" in result.stdout and "cpu_common" in result.stdout


def test_real_entry_point_on_a_truncated_stream(tmp_path: Path) -> None:
    """The installed `vmig` script: one line, exit 2; a traceback only with --debug."""
    target = tmp_path / "cut.bin"
    target.write_bytes(h.data(h.QEMU72)[:h.section(h.QEMU72, "cpu").span.offset + 100])
    result = subprocess.run([VMIG, "decode", str(target)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert_one_error_line(result.stderr)
    debug = subprocess.run([VMIG, "--debug", "decode", str(target)], capture_output=True, text=True, timeout=120,
                           check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "TruncatedError" in debug.stderr


def test_real_entry_point_on_stdin_garbage() -> None:
    result = subprocess.run([VMIG, "decode", "-"], input=b"QEVM\x00\x00\x00\x03\x42junk", capture_output=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert "unknown record type 0x42" in assert_one_error_line(result.stderr.decode())


@pytest.mark.parametrize("kind", ["gzip", "bz2", "lzma"])
@pytest.mark.parametrize("damage", ["corrupt", "cut"])
def test_broken_compressed_input(tmp_path: Path, kind: str, damage: str) -> None:
    """Regression: corrupt gzip data raised zlib.error, which escaped as an internal error."""
    module = __import__(kind)
    packed = bytearray(module.compress(h.data(h.NO_VMDESC)))
    if damage == "corrupt":
        for i in range(40, 400, 7):
            packed[i] ^= 0x55
    else:
        del packed[3000:]
    result = cli_decode(tmp_path, bytes(packed), "--summary")
    assert result.exit_code == 2, result.output
    line = assert_one_error_line(result.stderr, wants="vmig: error:")
    fmt = {"gzip": "gzip", "bz2": "bzip2", "lzma": "xz"}[kind]
    # the format, what went wrong, and the offset in the compressed file
    assert f"{fmt} data of" in line and " at offset " in line, line
    assert ("cut short" if damage == "cut" else "corrupt") in line, line


# ---------------------------------------------------------------- named corruptions


def test_empty_and_foreign_input() -> None:
    for blob in (b"", b"\x7fELF\x02\x01\x01\x00", b"QEVM\x00\x00\x00\x02"):
        with pytest.raises((BadMagicError, CorruptError)):
            decode(blob)


@pytest.mark.parametrize(("version", "words"), [(2, "SaveVM v2 format is obsolete"), (1, "unsupported stream version 1"),
                                                (4, "unsupported stream version 4")])
def test_stream_version_other_than_3(version: int, words: str) -> None:
    """qemu_loadvm_state_header: version 2 is obsolete, any other than 3 unsupported (ENOTSUP)."""
    with pytest.raises(CorruptError, match=words) as info:
        decode(h.patched(h.WITH_VMDESC, 4, ">I", version))
    assert info.value.offset == 4 and info.value.path == ("records", 0, "version")


def test_bad_record_type() -> None:
    at = h.section(h.WITH_VMDESC, "apic").span.offset
    with pytest.raises(CorruptError, match="unknown record type 0x09") as info:
        decode(h.patched(h.WITH_VMDESC, at, ">B", 0x09))
    assert info.value.offset == at and info.value.path == ("records", 10)


def test_footer_names_another_section() -> None:
    apic = h.section(h.WITH_VMDESC, "apic")
    with pytest.raises(CorruptError, match=r"footer names id 7, expected 6 \(apic\)") as info:
        decode(h.patched(h.WITH_VMDESC, apic.span.end - 4, ">I", 7))
    assert info.value.path[-1] == "footer"


def test_unknown_subsection() -> None:
    """A subsection whose name belongs to the vmsd but is not described: QEMU fails the load too."""
    cpu = h.section(h.WITH_VMDESC, "cpu")
    sub = cpu.body.subsections[0]
    buf = bytearray(h.data(h.WITH_VMDESC))
    name_at = sub.span.offset + 2  # 0x05, u8 length, name
    buf[name_at + len("cpu/")] ^= 0x20  # cpu/xyz -> cpu/Xyz
    with pytest.raises(UnknownSubsectionError, match="unknown subsection 'cpu/") as info:
        decode(bytes(buf))
    assert info.value.offset == sub.span.offset


def test_ram_flags_above_the_known_ones_are_refused() -> None:
    """Regression: `~RamFlag.CONTINUE` only spans the defined flags, so bit 0x800 of a page
    record's word slipped through and was dropped on re-encode."""
    part = next(r for r in h.stream(h.WITH_VMDESC).records if isinstance(r, Section) and r.type == "section_part")
    run = next(i for i in part.body.items if isinstance(i, RamPages))
    word_at = run.span.offset
    (word,) = struct.unpack_from(">Q", h.data(h.WITH_VMDESC), word_at)
    with pytest.raises(CorruptError, match="impossible RAM flags 0x8..") as info:
        decode(h.patched(h.WITH_VMDESC, word_at, ">Q", word | 0x800))
    assert info.value.offset == word_at


def test_ram_eos_with_address_bits_is_refused() -> None:
    """Regression: an EOS word with address bits decoded, and re-encoded without them."""
    end = h.section(h.WITH_VMDESC, "ram", "section_end")
    eos = next(i for i in end.body.items if isinstance(i, RamMarker) and i.kind == "eos")
    with pytest.raises(CorruptError, match="carries address bits") as info:
        decode(h.patched(h.WITH_VMDESC, eos.span.offset, ">Q", 0x4000_0010))
    assert info.value.offset == eos.span.offset


def test_empty_idstr_is_refused() -> None:
    """Regression (found by tests/fuzz): a FULL section with a 0-byte idstr decoded, and then
    encode refused to write it back."""
    blob = h.insert_before_eof(h.WITH_VMDESC, h.full_section(99, b"", b"\x01"))
    with pytest.raises(CorruptError, match="empty idstr") as info:
        decode(blob)
    assert info.value.offset == h.eof_offset(h.WITH_VMDESC) + 5


def test_long_machine_name_is_not_a_crash() -> None:
    """Regression: a configuration name over 4096 bytes came back as a Blob and crashed from_wire."""
    config = h.stream(h.WITH_VMDESC).configuration
    blob = h.data(h.WITH_VMDESC)
    name = b"m" * 5000
    rebuilt = blob[:config.span.offset + 1] + struct.pack(">I", len(name)) + name + blob[config.span.offset + 16:]
    stream = decode(rebuilt)
    assert stream.configuration.machine == "m" * 5000
    assert encode_bytes(stream, Source.from_bytes(rebuilt)) == rebuilt


def test_invalid_utf8_idstr_is_shown_escaped(tmp_path: Path) -> None:
    junk = bytes(range(0x80, 0x80 + 40)) + b"\x00\x1b[31m"
    blob = h.insert_before_eof(h.WITH_VMDESC, h.full_section(99, junk, b"\x01\x02\x03"))
    stream = decode(blob)
    assert encode_bytes(stream, Source.from_bytes(blob)) == blob
    tree = cli_decode(tmp_path, blob)
    assert tree.exit_code == 0 and "\\x80\\x81\\x82" in tree.stdout and "\x1b" not in tree.stdout
    assert "\\x80\\x81" in tree.stderr  # the warning that it is kept opaque
    as_json = cli_decode(tmp_path, blob, "--json", "-o", str(tmp_path / "out.json"))
    assert as_json.exit_code == 0
    doc = json.loads((tmp_path / "out.json").read_text())
    # surrogate escapes survive the JSON document and the way back
    assert encode_bytes(jsonform.from_json(doc), Source.from_bytes(blob)) == blob
    strict = cli_decode(tmp_path, blob, "--strict")
    assert strict.exit_code == 2
    assert "\\x80\\x81" in assert_one_error_line(strict.stderr)


@pytest.mark.parametrize(("text", "match"), [
    (b'{"page_size": 4096, "devices": [', "malformed"),
    (b'{"page_size": 4096, "devices": []}\xff\xfe', "not UTF-8"),
    (b'{"devices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"devices": "all of them"}', "expected a list"),
    (b'{"devices": [], "page_size": 3}', "page_size"),
    (b"[1, 2, 3]", "expected an object"),
    (b'{"devices": [{"name": "x\\ud800", "instance_id": 0, "vmsd_name": "x", "fields": []}]}', "never writes"),
    ((b'{"devices": [{"name": "x", "instance_id": 0, "vmsd_name": "x", "fields": '
      b'[{"name": "f", "type": "\\u001b[2J", "size": 1}]}]}'), "never writes"),
], ids=["malformed", "not-utf8", "deep", "wrong-type", "page-size", "not-an-object", "lone-surrogate", "escape"])
def test_bad_vmdesc(tmp_path: Path, text: bytes, match: str) -> None:
    blob = h.with_vmdesc_text(h.WITH_VMDESC, text)
    with pytest.raises(VmdescError, match=match) as info:
        decode(blob)
    assert info.value.offset >= h.vmdesc_record(h.WITH_VMDESC).span.offset
    result = cli_decode(tmp_path, blob)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)


def test_vmdesc_that_disagrees_with_the_bytes() -> None:
    def wider(doc: dict) -> None:
        h.vmdesc_device(doc, "apic")["fields"][0]["size"] = 8  # apicbase is 4 bytes on the wire

    def huge(doc: dict) -> None:
        h.vmdesc_device(doc, "apic")["fields"][0]["size"] = 1 << 62

    def no_subsections(doc: dict) -> None:
        h.vmdesc_device(doc, "cpu")["subsections"] = []

    with pytest.raises(CorruptError, match="expected section footer"):
        decode(h.with_vmdesc_doc(h.WITH_VMDESC, wider))
    with pytest.raises(CorruptError, match="disagrees with the bytes") as info:
        decode(h.with_vmdesc_doc(h.WITH_VMDESC, huge))
    assert info.value.path == ("records", 10, "apicbase")
    with pytest.raises(UnknownSubsectionError):
        decode(h.with_vmdesc_doc(h.WITH_VMDESC, no_subsections))


def test_vmdesc_cannot_claim_vmigs_own_ramfb_type(tmp_path: Path) -> None:
    """"ramfb cfg" is vmig's name for the 28 RAMFBCfg bytes; a stream's vmdesc that uses it for a
    4-byte field or an array is read as a plain buffer, not crashed on (fuzzing found this)."""
    def as_ramfb(doc: dict) -> None:
        fields = h.vmdesc_device(doc, "apic")["fields"]
        fields[0]["type"] = "ramfb cfg"  # apicbase: 4 bytes
        fields[1]["type"] = "ramfb cfg"
        fields[1]["array_len"] = 1

    blob = h.with_vmdesc_doc(h.WITH_VMDESC, as_ramfb)
    stream = decode(blob)
    apic = next(r for r in stream.records if getattr(r, "idstr", None) == "apic")
    assert [f.type for f in apic.body.fields[:2]] == ["buffer", "buffer"]
    assert encode_bytes(jsonform.loads(jsonform.dumps(stream)), Source.from_bytes(blob)) == blob
    result = cli_decode(tmp_path, blob)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("shape", [{"array_len": 1}, {"size": 4, "array_len": 4}, {"size": 8, "array_len": 2}])
def test_pci_irq_state_arrays_encode_back(shape: dict) -> None:
    """One "pci irq state" is four int32s (a list); an array of them (the vmdesc may say so) is a
    list of lists or of byte strings, and encode must tell the two apart (fuzzing found this)."""
    def reshape(doc: dict) -> None:
        parent = next(f for f in h.vmdesc_device(doc, "0000:00:00.0/mch")["fields"] if f["name"] == "parent_obj")
        field = next(f for f in parent["struct"]["fields"] if f["name"] == "irq_state")
        field.update(shape)  # still 16 bytes on the wire

    blob = h.with_vmdesc_doc(h.WITH_VMDESC, reshape)
    stream = decode(blob)
    assert encode_bytes(stream, Source.from_bytes(blob)) == blob
    assert encode_bytes(jsonform.loads(jsonform.dumps(stream)), Source.from_bytes(blob)) == blob


def test_no_footers_and_no_vmdesc_entry() -> None:
    def drop_apic(doc: dict) -> None:
        doc["devices"].remove(h.vmdesc_device(doc, "apic"))

    with pytest.raises(UnknownSectionError, match="no section footers") as info:
        decode(h.with_vmdesc_doc(h.NO_FOOTER, drop_apic))
    assert info.value.hint is None  # the stream has its vmdesc: no "cut short" guess


# ---------------------------------------------------------------- random bit flips


def _flip_one_bit(name: str, data: st.DataObject) -> bytes:
    blob = bytearray(h.data(name))
    # half the flips land in the first bytes of a record (headers, flags, lengths), half anywhere
    if data.draw(st.booleans(), label="in a record head"):
        record = data.draw(st.sampled_from(h.stream(name).records), label="record")
        offset = record.span.offset + data.draw(st.integers(0, min(record.span.length, 64) - 1), label="at")
    else:
        offset = data.draw(st.integers(0, len(blob) - 1), label="offset")
    blob[offset] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    return bytes(blob)


@pytest.mark.parametrize("name", [h.WITH_VMDESC, h.NO_VMDESC])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_single_bit_flips(name: str, data: st.DataObject) -> None:
    h.decodes_or_fails_cleanly(_flip_one_bit(name, data))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_single_bit_flips_in_vfio_state(data: st.DataObject) -> None:
    """The VFIO framing (markers, DATA chunk lengths, the config state and its MSI-X and
    VFIODisplay parts) is small, so it gets many more flips."""
    h.decodes_or_fails_cleanly(_flip_one_bit(h.VFIO_DEVICE, data))


# ---------------------------------------------------------------- encode: broken JSON documents


def _decoded_json(folder: Path, name: str) -> tuple[Path, dict]:
    source = folder / "source.bin"
    source.write_bytes(h.data(name))
    result = CliRunner().invoke(cli, ["decode", "--json", "-o", str(folder / "doc.json"), str(source)])
    assert result.exit_code == 0
    return source, json.loads((folder / "doc.json").read_text())


@pytest.fixture(scope="module")
def decoded_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A capture with a vmdesc, so its JSON has vmstate fields of every integer type."""
    return _decoded_json(tmp_path_factory.mktemp("json"), h.WITH_VMDESC)


@pytest.fixture(scope="module")
def opaque_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A capture without a vmdesc: big opaque sections, kept as {"ref"} into the source."""
    return _decoded_json(tmp_path_factory.mktemp("json"), h.NO_VMDESC)


def _record(doc: dict, idstr: str, kind: str = "section_full") -> dict:
    return next(r for r in doc["records"] if r.get("idstr") == idstr and r["type"] == kind)


def _field(doc: dict, idstr: str, name: str) -> dict:
    return next(f for f in _record(doc, idstr)["fields"] if f["name"] == name)


def _zero_run(doc: dict) -> dict:
    return next(i for i in _record(doc, "ram", "section_part")["ram"]["items"] if i["kind"] == "zero")


def _ramfb_cfg(doc: dict) -> dict:
    return _field(doc, "ramfb-dev", "state")["value"]["fields"][0]["value"]


BROKEN_DOCUMENTS = {
    # case: (edit the document, the JSON pointer the error names, words of the message)
    "uint8-300": (lambda d: _field(d, "apic", "id").__setitem__("value", 300), "/fields/1/value",
                  "300 is out of range 0..255 for type 'uint8'"),
    "int32-over": (lambda d: _field(d, "apic", "count_shift").__setitem__("value", 1 << 31), "/value",
                   "out of range -2147483648..2147483647"),
    "array-element-over": (lambda d: _field(d, "apic", "isr")["value"].__setitem__(3, 1 << 32), "/fields/7/value/3",
                           "out of range"),
    "uint32-over-in-cfg": (lambda d: _ramfb_cfg(d).__setitem__("width", 1 << 32), "/value/fields/0/value/width",
                           "out of range"),
    "float": (lambda d: _field(d, "apic", "id").__setitem__("value", 1.5), "/fields/1/value", "found float"),
    "int-as-string": (lambda d: _record(d, "apic").__setitem__("section_id", "6"), "/section_id",
                      "expected an integer"),
    "unknown-record-type": (lambda d: d["records"][4].__setitem__("type", "section_middle"), "/records/4/type",
                            "unknown record type"),
    "missing-type": (lambda d: d["records"][4].pop("type"), "/records/4/type", "unknown record type"),
    "missing-idstr": (lambda d: _record(d, "apic").pop("idstr"), "/idstr", "expected a string"),
    "missing-value": (lambda d: _field(d, "apic", "id").pop("value"), "/fields/1", "has no 'value'"),
    "unknown-key": (lambda d: _record(d, "apic").__setitem__("idstring", "x"), "/idstring", "unknown key"),
    "unknown-field-key": (lambda d: _field(d, "apic", "id").__setitem__("vaule", 3), "/fields/1/vaule",
                          "unknown key"),
    "unknown-top-key": (lambda d: d.__setitem__("recrods", []), "/recrods", "unknown key"),
    "fill-300": (lambda d: _zero_run(d).__setitem__("fill", 300), "/fill", "out of range"),
    "unaligned-page": (lambda d: _zero_run(d).__setitem__("page_offset", 5), "/page_offset",
                       "multiple of the page size"),
    "run-past-block": (lambda d: _zero_run(d).__setitem__("count", 1 << 39), "/count", "past the end"),
    "long-block-name": (lambda d: _zero_run(d).__setitem__("block", "b" * 300), "/block", "at most 255"),
    "footer-string": (lambda d: _record(d, "apic").__setitem__("footer", "yes"), "/footer", "true or false"),
    "source-path-number": (lambda d: d["source"].__setitem__("path", 3), "/source/path", "expected a string"),
    "records-object": (lambda d: d.__setitem__("records", {}), "/records", "expected a list"),
    "vmdesc-not-object": (lambda d: d["records"][-1].__setitem__("json", "{}"), "/json", "expected an object"),
    "lone-surrogate": (lambda d: _record(d, "apic").__setitem__("idstr", "apic\ud800"), "/idstr", "lone surrogate"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_DOCUMENTS))
def test_encode_broken_json_names_the_pointer(tmp_path: Path, decoded_json: tuple[Path, dict], case: str) -> None:
    source, good = decoded_json
    edit, pointer, words = BROKEN_DOCUMENTS[case]
    doc = json.loads(json.dumps(good))
    edit(doc)
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    out = tmp_path / "out.bin"
    result = CliRunner().invoke(cli, ["encode", "--from-json", str(tmp_path / "doc.json"), "--source", str(source),
                                      "-o", str(out)])
    assert result.exit_code == 2, (result.output, result.exception)
    line = assert_one_error_line(result.stderr, wants=pointer)
    assert words in line
    assert os.listdir(tmp_path) == ["doc.json"]  # no output, no temporary left behind


def test_encode_of_the_unbroken_document(tmp_path: Path, decoded_json: tuple[Path, dict]) -> None:
    """The control for the cases above: the same document, unedited, encodes to the source."""
    source, good = decoded_json
    (tmp_path / "doc.json").write_text(json.dumps(good))
    result = CliRunner().invoke(cli, ["encode", "--from-json", str(tmp_path / "doc.json"), "--source", str(source),
                                      "-o", str(tmp_path / "out.bin")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()


def test_encode_json_nested_too_deeply_is_a_json_error() -> None:
    """Regression: deep structs or arrays in a document overflowed the stack (exit 70)."""
    value: object = 1
    for _ in range(600):
        value = [value]
    doc = {"records": [{"type": "section_full", "section_id": 1, "idstr": "x", "instance_id": 0, "version_id": 1,
                        "decoder": "vmdesc", "vmsd_name": "x", "version": 1,
                        "fields": [{"name": "a", "type": "uint8", "value": value}], "subsections": []}]}
    with pytest.raises(JsonFormError, match="nested deeper"):
        jsonform.from_json(doc)
    field = {"name": "leaf", "type": "uint8", "value": 1}
    for _ in range(300):
        field = {"name": "s", "type": "struct", "value": {"vmsd_name": "s", "version": 1, "fields": [field]}}
    doc["records"][0]["fields"] = [field]
    with pytest.raises(JsonFormError, match="nested deeper"):
        jsonform.from_json(doc)


def test_encode_refuses_to_overwrite_its_inputs(tmp_path: Path, opaque_json: tuple[Path, dict]) -> None:
    source, good = opaque_json
    copy = tmp_path / "source.bin"
    copy.write_bytes(source.read_bytes())
    doc = json.loads(json.dumps(good))
    doc["source"]["path"] = str(copy)
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    (tmp_path / "link.bin").symlink_to(copy)
    for target in (copy, tmp_path / "link.bin", tmp_path / "doc.json"):
        result = CliRunner().invoke(cli, ["encode", "--from-json", str(tmp_path / "doc.json"), "-o", str(target)])
        assert result.exit_code == 2
        assert "refusing to overwrite the input" in assert_one_error_line(result.stderr, wants="refusing")
    assert copy.read_bytes() == h.data(h.NO_VMDESC)
    assert json.loads((tmp_path / "doc.json").read_text()) == doc


def test_encode_failure_leaves_no_partial_file(tmp_path: Path, opaque_json: tuple[Path, dict]) -> None:
    """A reference past the end of the source fails mid-way: no new file, an old one untouched."""
    source, good = opaque_json
    doc = json.loads(json.dumps(good))
    opaque = next(r for r in doc["records"] if r.get("decoder") == "opaque" and "ref" in r["opaque"]["data"])
    opaque["opaque"]["data"]["ref"]["offset"] = 10**9
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    out = tmp_path / "out.bin"
    args = ["encode", "--from-json", str(tmp_path / "doc.json"), "--source", str(source), "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "referenced" in assert_one_error_line(result.stderr)
    assert not out.exists() and os.listdir(tmp_path) == ["doc.json"]
    out.write_bytes(b"older output")
    assert CliRunner().invoke(cli, args).exit_code == 2
    assert out.read_bytes() == b"older output"


def test_encode_refuses_a_terminal(tmp_path: Path, opaque_json: tuple[Path, dict]) -> None:
    """`-o -` with stdout on a terminal: refused, nothing written to it (a real pty, real entry point)."""
    source, good = opaque_json
    (tmp_path / "doc.json").write_text(json.dumps(good))
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run([VMIG, "encode", "--from-json", str(tmp_path / "doc.json"), "--source", str(source),
                                 "-o", "-"], stdout=terminal, stderr=subprocess.PIPE, timeout=120, check=False)
        os.set_blocking(controller, False)
        try:
            written = os.read(controller, 1 << 16)
        except BlockingIOError:
            written = b""
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 2
    assert "terminal" in assert_one_error_line(result.stderr.decode(), wants="refusing")
    assert b"QEVM" not in written


# ---------------------------------------------------------------- output files


def test_decode_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    copy = tmp_path / "stream.bin"
    copy.write_bytes(h.data(h.NO_VMDESC))
    result = CliRunner().invoke(cli, ["decode", "--summary", str(copy), "-o", str(copy)])
    assert copy.read_bytes() == h.data(h.NO_VMDESC)
    assert result.exit_code == 2


def test_output_onto_a_directory_is_an_input_error(tmp_path: Path, opaque_json: tuple[Path, dict]) -> None:
    source, good = opaque_json
    (tmp_path / "doc.json").write_text(json.dumps(good))
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(cli, ["encode", "--from-json", str(tmp_path / "doc.json"), "--source", str(source),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
