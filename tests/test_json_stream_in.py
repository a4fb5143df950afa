"""`vmig encode --from-json` reads its document as a stream (codec/fromjson.py, textin.JsonCursor):
memory flat in the document's size, every fixture back byte for byte whatever the document's
layout (pretty-printed, keys in another order, from stdin), and every error the one loading the
document whole gives (jsonform.loads: the contract the other error tests hold)."""

from __future__ import annotations

import filecmp
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vfio_ramfb_mig import jsonform
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.codec.fromjson import encode_document
from vfio_ramfb_mig.errors import VmigError
from vfio_ramfb_mig.source import Source, vm_state_snapshots

from helpers import write_scattered_zero_stream
from paths import CAPTURES, FIXTURES

VMIG = str(Path(sys.executable).parent / "vmig")
BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+booted.bin"
#: files in fixtures/ that are not streams (sidecars, screendumps, goldens, the live guests' disks)
_NOT_STREAMS = (".json", ".png", ".txt", ".md", ".toml", ".sh", ".py", ".img", ".ppm", ".recipe")
#: (file, snapshot): each stream of each file, a qcow2 image's each VM state too
STREAMS = [(p, snapshot) for p in sorted(FIXTURES.rglob("*")) if p.is_file() and not p.name.endswith(_NOT_STREAMS)
           for snapshot in ([s for s, _ in vm_state_snapshots(str(p))] if p.suffix == ".qcow2" else [None])]


def _decode_json(stream: Path, target: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["decode", "--json", *args, str(stream), "-o", str(target)])
    assert result.exit_code == 0, result.output


def _stream_bytes(path: Path, snapshot: str | None = None) -> bytes:
    """The migration stream a file holds (inside its container)."""
    with Source.open(str(path), snapshot=snapshot) as src:
        return bytes(src.buf)


@pytest.mark.parametrize("stream, snapshot", STREAMS,
                         ids=lambda v: str(v.relative_to(FIXTURES)) if isinstance(v, Path) else f"snapshot {v}")
def test_every_fixture_comes_back(stream: Path, snapshot: str | None, tmp_path: Path) -> None:
    doc, out = tmp_path / "doc.json", tmp_path / "out.bin"
    _decode_json(stream, doc, *(("--snapshot", snapshot) if snapshot else ()))
    encode_document(str(doc), str(out))
    assert _stream_bytes(out) == _stream_bytes(stream, snapshot)
    if json.loads(doc.read_text()).get("container") is None:
        assert filecmp.cmp(out, stream, shallow=False)  # a bare stream: the file itself


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return [_sorted(v) for v in value] if isinstance(value, list) else value


def _rewritten(doc: Path, target: Path, **dump_args) -> Path:
    target.write_text(json.dumps(json.loads(doc.read_text()), **dump_args))
    return target


@pytest.mark.parametrize("layout", ["pretty", "minified", "sorted-keys", "source-last", "stdin", "embedded"])
def test_any_layout_of_the_document(layout: str, tmp_path: Path) -> None:
    """Keys in any order: those encode needs first (source, container) or a RAM section's keys
    after its items make it read the document a second time, checked, before writing."""
    doc, out = tmp_path / "doc.json", tmp_path / "out.bin"
    _decode_json(BOOTED, doc, *(("--embed",) if layout == "embedded" else ()))
    if layout == "pretty":
        doc = _rewritten(doc, tmp_path / "pretty.json", indent=2)
    elif layout == "minified":
        doc = _rewritten(doc, tmp_path / "min.json", separators=(",", ":"))
    elif layout == "sorted-keys":  # as `jq -S` would, but the vmdesc's own JSON (its bytes are the stream's)
        value = json.loads(doc.read_text())
        records = [{k: r[k] if k == "json" else _sorted(r[k]) for k in sorted(r)} for r in value["records"]]
        doc.write_text(json.dumps({k: records if k == "records" else _sorted(value[k]) for k in sorted(value)}))
    elif layout == "source-last":
        value = json.loads(doc.read_text())
        value = {k: value[k] for k in sorted(value, key=lambda k: k in ("source", "vmig"))}
        doc.write_text(json.dumps(value))
    if layout == "stdin":
        result = subprocess.run([VMIG, "encode", "--from-json", "-", "-o", str(out)], stdin=doc.open("rb"),
                                capture_output=True)
        assert result.returncode == 0, result.stderr
    else:
        encode_document(str(doc), str(out))
    assert filecmp.cmp(out, BOOTED, shallow=False)


def test_a_container_named_after_the_records(tmp_path: Path) -> None:
    """The container wraps the stream's first byte: named after the records, it makes a second pass."""
    save = FIXTURES / "containers" / "libvirt-9.0.0__pc-q35-8.2__gzip.save"
    doc, out = tmp_path / "doc.json", tmp_path / "out.save"
    _decode_json(save, doc, "--embed")
    value = json.loads(doc.read_text())
    value["container"] = value.pop("container")
    value["source"] = value.pop("source")
    doc.write_text(json.dumps(value))
    encode_document(str(doc), str(out))
    assert out.read_bytes()[:16] == save.read_bytes()[:16]  # the libvirt header, then gzip
    assert _stream_bytes(out) == _stream_bytes(save)


def _error(call) -> str | None:
    try:
        call()
    except VmigError as exc:
        return str(exc)
    return None


def test_errors_are_those_of_the_whole_document(tmp_path: Path) -> None:
    """A document cut short, a character gone or changed, a value of another type, a key moved:
    encode --from-json says what jsonform.loads on the whole text says."""
    good = tmp_path / "good.json"
    _decode_json(BOOTED, good)
    text = good.read_bytes()
    value = json.loads(text)
    rng = random.Random(20)
    cases: list[bytes] = [text[:cut] for cut in rng.sample(range(len(text)), 25)]
    cases += [text[:at] + text[at + 1:] for at in rng.sample(range(len(text)), 40)]
    cases += [text[:at] + bytes([rng.choice(b'{}[],:"0x \n\\')]) + text[at + 1:] for at in rng.sample(range(len(text)), 40)]
    ram = [(i, r) for i, r in enumerate(value["records"]) if r.get("decoder") == "ram" and len(r["ram"]["items"]) > 2]
    for _ in range(30):
        doc = json.loads(text)
        i, record = rng.choice(ram)
        items = doc["records"][i]["ram"]["items"]
        item = rng.choice(items)
        key = rng.choice(sorted(item))
        item[key] = rng.choice([None, "x", -1, 1 << 70, [], {}, 4095, True])
        if rng.random() < 0.5:  # another error before or after it, in the document or the record
            doc[rng.choice(["bogus", "source", "vmig"])] = rng.choice([{"format": 2}, 5, {"path": 7}])
        if rng.random() < 0.3:
            doc["records"][i]["section_id"] = "one"
        if rng.random() < 0.5:  # the items first, or the records before the document's other keys
            doc["records"][i] = dict(sorted(doc["records"][i].items(), key=lambda kv: kv[0] != "ram"))
            doc = dict(sorted(doc.items(), key=lambda kv: kv[0] != "records"))
        cases.append(json.dumps(doc).encode())
    # each place the structure is read a token at a time: the document, the records, a record, a
    # RAM body, its items; at an object's start, after a key, after a member, after a comma
    structure = ['{x', '{"vmig" 1}', '{"vmig": {} "records": []}', '{"vmig": {},}', '{"records": [] x', ' ',
                 '{"records": [1 2]}', '{"records": [1,]}', '{"records": [{x}]}', '{"records": [{"type" 1}]}',
                 '{"records": [{"type": "eof" "offset": 0}]}', '{"records": [{"type": "eof",}]}',
                 '{"records": [{"ram": {x}}]}', '{"records": [{"ram": {"page_size" 1}}]}',
                 '{"records": [{"ram": {"items": [] "x": 1}}]}', '{"records": [{"ram": {"items": [{} {}]}}]}',
                 '{"records": [{"ram": {"items": [{},]}}]}', '{"records": [{"ram": {"items": [{x}]}}]}',
                 '{"records": [{"ram": {"items": []}}]}\n\n  ]', '\ufeff{"records": []}', '{"records": [\n',
                 '{"records": [{"ram": {"items": [{"kind": "eos"}]},}]}']
    cases += [text.encode() for text in structure]
    checked = 0
    for n, case in enumerate(cases):
        target = tmp_path / f"case{n}.json"
        target.write_bytes(case)
        want = _error(lambda: jsonform.loads(case, str(target)))
        if want is None:
            continue  # whole and valid (a cut in white space): encoding may still refuse it
        checked += 1
        got = _error(lambda: encode_document(str(target), str(tmp_path / "out.bin")))
        assert got == want, f"case {n}"
        assert not (tmp_path / "out.bin").exists()
    assert checked > 120


def _peak_rss(args: list[str]) -> int:
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, child.stderr.read().decode() if child.stderr else ""
    return usage.ru_maxrss * 1024


def test_memory_stays_flat_in_the_document(tmp_path: Path) -> None:
    """A million RAM runs (a 124 MB document) take about what ten do: the document is not held."""
    peaks = {}
    for runs in (10, 1_000_000):
        stream, doc, out = tmp_path / f"{runs}.bin", tmp_path / f"{runs}.json", tmp_path / f"{runs}.out"
        write_scattered_zero_stream(stream, runs)
        with doc.open("wb") as f:
            subprocess.run([VMIG, "decode", "--json", str(stream)], stdout=f, check=True)
        peaks[runs] = _peak_rss([VMIG, "encode", "--from-json", str(doc), "-o", str(out)])
        assert filecmp.cmp(out, stream, shallow=False)
        for path in (doc, out):
            path.unlink()
    grown = peaks[1_000_000] - peaks[10]
    assert grown < 64 << 20, f"peak RSS {peaks[1_000_000] >> 20} MiB for a million runs, {peaks[10] >> 20} MiB for ten"
