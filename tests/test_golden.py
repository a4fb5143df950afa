"""`vmig golden check|update`, the golden format, and the pytest plugin (issue 5).

Every capture's golden is checked in and passes; a one-byte change in the
ramfb width fails and names the field; ignore rules (CLI, vmig-golden.toml)
make volatile changes pass; missing goldens fail; update never touches a
stream; reordering sections passes unless the golden asks for order; the
`vmig_golden` fixture fails, updates with --vmig-update-golden, then passes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.codec.decode import decode
from vfio_ramfb_mig.codec.encode import encode_bytes
from vfio_ramfb_mig.source import Source
from vfio_ramfb_mig.golden import (
    Golden,
    GoldenError,
    GoldenOptions,
    check_stream,
    compare,
    golden_of_path,
    golden_path,
    update_stream,
)
from vfio_ramfb_mig.model import Section, StructValue, VmstateBody

from paths import CAPTURES, FIXTURES

pytest_plugins = ["pytester"]

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
ALL_CAPTURES = sorted(CAPTURES.glob("*.bin"))


def golden(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["golden", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def copy_capture(tmp_path: Path, with_golden: bool = True, name: str | None = None) -> Path:
    target = tmp_path / (name or BOOTED.name)
    shutil.copyfile(BOOTED, target)
    if with_golden:
        shutil.copyfile(golden_path(BOOTED), golden_path(target))
    return target


def full_section(stream_path: Path, idstr: str) -> Section:
    return next(s for s in decode(str(stream_path)).sections if s.idstr == idstr and s.type == "section_full")


def poke(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def ramfb_width_offset(stream_path: Path) -> int:
    section = full_section(stream_path, "ramfb-dev")
    assert isinstance(section.body, VmstateBody)
    state = next(f for f in section.body.fields if f.name == "state")
    assert isinstance(state.value, StructValue)
    cfg = next(f for f in state.value.fields if f.name == "cfg")
    assert cfg.value["width"] == 1024 and cfg.span is not None
    return cfg.span.offset + 16  # RAMFBCfg: addr u64, fourcc u32, flags u32, width u32 (big-endian)


def timer_byte_offset(stream_path: Path) -> int:
    section = full_section(stream_path, "timer")
    assert isinstance(section.body, VmstateBody)
    ticks = next(f for f in section.body.fields if f.name == "cpu_ticks_offset")
    assert ticks.span is not None
    return ticks.span.offset + 7


# ---------------------------------------------------------------- the checked-in goldens


def test_every_capture_has_a_checked_in_golden() -> None:
    assert len(ALL_CAPTURES) >= 32
    missing = [p.name for p in ALL_CAPTURES if not golden_path(p).is_file()]
    assert missing == []


def test_captures_match_their_goldens() -> None:
    code, out, err = golden("check", str(CAPTURES))
    assert (code, err) == (0, "")
    assert f"{len(ALL_CAPTURES)} streams: {len(ALL_CAPTURES)} ok" in out


def test_golden_format_excerpt() -> None:
    text = golden_path(BOOTED).read_text()
    assert text.startswith("# vmig golden file (format 1).")
    assert '# options: {"ignore": [], "offsets": false, "order": false}\n' in text
    for line in ("[ramfb-dev]", "ramfb-dev/state/cfg/width = 1024", 'ramfb-dev/state/cfg/fourcc = "XR24"',
                 "[dma#1]", "ram/pc.ram/pages/normal = 148", "ram/pc.ram/used_length = 16777216",
                 "[vmdesc]", 'configuration/machine = "pc-q35-8.2"', "stream/section_footers = true"):
        assert line in text.splitlines(), line
    assert "section_id" not in text and "@offset" not in text and "[order]" not in text
    # sections sorted by name, not stream order
    groups = [line[1:-1] for line in text.splitlines() if line.startswith("[")]
    middle = groups[2:-1]
    assert middle == sorted(middle)


def test_golden_parse_round_trip() -> None:
    g = golden_of_path(BOOTED, GoldenOptions(offsets=True, ignore=("timer/*",)))
    again = Golden.parse(g.text())
    assert again == g
    assert compare(again, g) == []


# ---------------------------------------------------------------- drift fails, with a readable diff


def test_ramfb_width_change_fails_and_names_width(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path)
    poke(stream, ramfb_width_offset(stream), (1280).to_bytes(4, "big"))
    code, out, _ = golden("check", str(tmp_path))
    assert code == 1
    assert "DIFFERENT" in out and "1 difference from" in out
    assert "  [ramfb-dev]\n" in out
    assert "ramfb-dev/state/cfg/width: 1024 \u2192 1280" in out
    assert "1 different" in out


def test_piped_output_is_what_rich_prints_without_its_styles(tmp_path: Path) -> None:
    """Piped and uncoloured, the results are written as plain text without rich: the same characters
    as the coloured output, whatever the status (different, missing, error, an orphan, update)."""
    import re

    (tmp_path / "a").mkdir()
    stream = copy_capture(tmp_path)
    poke(stream, ramfb_width_offset(stream), (1280).to_bytes(4, "big") + (800).to_bytes(4, "big"))  # and height
    copy_capture(tmp_path / "a", with_golden=False, name="lone.bin")
    (tmp_path / "a" / "junk.bin").write_bytes(b"QEVM" + bytes(16))
    shutil.copyfile(golden_path(BOOTED), tmp_path / "a" / "junk.golden.txt")
    (tmp_path / "a" / "gone.golden.txt").write_text("# nothing\n")
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    for args in (["check", "-v", "-j1", "--limit", "1"], ["check", "-j1"], ["update", "--show", "-j1"]):
        goldens = {path: path.read_bytes() for path in tmp_path.rglob("*.golden.txt")}
        plain = CliRunner().invoke(cli, ["golden", *args, str(tmp_path)])
        for path in tmp_path.rglob("*.golden.txt"):  # as they were: update writes them
            path.unlink()
        for path, text in goldens.items():
            path.write_bytes(text)
        styled = CliRunner().invoke(cli, ["--color", "golden", *args, str(tmp_path)])
        assert plain.exit_code == styled.exit_code == 2, (args, plain.output)
        assert "\x1b[" not in plain.stdout + plain.stderr and "\x1b[" in styled.stdout
        assert plain.stdout == ansi.sub("", styled.stdout), args
        assert plain.stderr == ansi.sub("", styled.stderr), args
        if args[0] == "check":
            assert "DIFFERENT " in plain.stdout and "ERROR     " in plain.stderr and "gone.golden.txt" in plain.stderr
            assert ("1 more (--limit 0 shows all)" in plain.stdout) == ("--limit" in args)
            assert "MISSING   " in plain.stdout
        else:
            assert "CREATED   " in plain.stdout and "UPDATED   " in plain.stdout


def test_timer_change_fails_unless_ignored(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path)
    offset = timer_byte_offset(stream)
    poke(stream, offset, bytes([BOOTED.read_bytes()[offset] ^ 0x01]))
    code, out, _ = golden("check", str(stream))
    assert code == 1 and "timer/cpu_ticks_offset: 8414509504 \u2192 8414509505" in out

    assert golden("check", "--ignore", "timer/*", str(stream))[0] == 0
    assert golden("check", "--ignore", "timer", str(stream))[0] == 0  # a parent path covers its subtree
    assert golden("check", "--ignore", "cpu/*", str(stream))[0] == 1

    (tmp_path / "vmig-golden.toml").write_text('ignore = ["timer/*", "ram/*"]\noffsets = false\n')
    code, out, _ = golden("check", str(tmp_path))
    assert code == 0, out


def test_config_in_parent_directory_applies(tmp_path: Path) -> None:
    sub = tmp_path / "streams" / "q35"
    sub.mkdir(parents=True)
    stream = copy_capture(sub)
    offset = timer_byte_offset(stream)
    poke(stream, offset, bytes([BOOTED.read_bytes()[offset] ^ 0x01]))
    (tmp_path / "vmig-golden.toml").write_text('ignore = ["timer"]\n')
    assert golden("check", str(tmp_path))[0] == 0
    assert golden("check", str(sub))[0] == 1  # the search stops at the directory given


def test_bad_config_is_trouble(tmp_path: Path) -> None:
    copy_capture(tmp_path)
    (tmp_path / "vmig-golden.toml").write_text('ignores = ["timer/*"]\n')
    code, _, err = golden("check", str(tmp_path))
    assert code == 2 and "unknown option 'ignores'" in err


def test_ignored_paths_are_left_out_of_goldens(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path, with_golden=False)
    (tmp_path / "vmig-golden.toml").write_text('ignore = ["timer/*", "ram/*", "cpu/*/tsc*"]\n')
    assert golden("update", str(tmp_path))[0] == 0
    text = golden_path(stream).read_text()
    assert '"ignore": ["timer/*", "ram/*", "cpu/*/tsc*"]' in text
    assert "\ntimer/" not in text and "\nram/" not in text and "tsc_khz" not in text
    assert "\ncpu/env.eip = " in text


# ---------------------------------------------------------------- missing goldens, update


def test_missing_golden_fails(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path, with_golden=False)
    code, out, _ = golden("check", str(tmp_path))
    assert code == 1
    assert f"MISSING   {stream}: no golden file {golden_path(stream)}" in out
    assert "1 missing" in out


def test_no_stream_under_paths_is_trouble(tmp_path: Path) -> None:
    code, _, err = golden("check", str(tmp_path))
    assert code == 2 and "no stream under" in err


def test_undecodable_stream_is_trouble(tmp_path: Path) -> None:
    (tmp_path / "junk.bin").write_bytes(b"not a stream")
    (tmp_path / "junk.golden.txt").write_text("# options: {}\n")
    code, _, err = golden("check", str(tmp_path))
    assert code == 2 and "junk.bin" in err and "QEVM" in err


def test_update_never_touches_streams_and_rewrites_only_changed_goldens(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path, with_golden=False)
    os.utime(stream, ns=(1_000_000_000, 1_000_000_000))
    before = stream.read_bytes()

    code, out, _ = golden("update", str(tmp_path))
    assert code == 0 and f"CREATED   {golden_path(stream)}" in out
    target = golden_path(stream)
    assert target.read_text() == golden_path(BOOTED).read_text()
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # like any new file, not mkstemp's 0600
    first = target.stat().st_mtime_ns

    code, out, _ = golden("update", str(tmp_path))
    assert code == 0 and "CREATED" not in out and "UPDATED" not in out and "1 unchanged" in out
    assert target.stat().st_mtime_ns == first

    target.write_text(target.read_text().replace("ramfb-dev/state/cfg/width = 1024", "ramfb-dev/state/cfg/width = 1"))
    code, out, _ = golden("update", "--show", str(tmp_path))
    assert code == 0 and f"UPDATED   {target} (1 line changed)" in out
    assert "ramfb-dev/state/cfg/width: 1 \u2192 1024" in out
    assert golden("check", str(tmp_path))[0] == 0

    assert stream.read_bytes() == before
    assert stream.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [stream.name, target.name]  # no temporary left


def test_a_stream_is_never_used_as_golden(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path, with_golden=False)
    with pytest.raises(GoldenError):
        update_stream(stream, golden=stream)
    with pytest.raises(GoldenError):
        update_stream(stream, golden=tmp_path / "other.bin")
    assert stream.read_bytes() == BOOTED.read_bytes()


# ---------------------------------------------------------------- order and offsets are opt-in


def reordered(tmp_path: Path, name: str) -> Path:
    """The booted capture with timer and cpu_common swapped and timer given section id 99."""
    with Source.open(str(BOOTED)) as src:
        stream = decode(src)
        records = list(stream.records)
        t = next(i for i, r in enumerate(records) if isinstance(r, Section) and r.idstr == "timer")
        c = next(i for i, r in enumerate(records) if isinstance(r, Section) and r.idstr == "cpu_common")
        records[t], records[c] = records[c], dataclasses.replace(records[t], section_id=99)
        data = encode_bytes(dataclasses.replace(stream, records=tuple(records)), src)
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reordering_passes_unless_order_or_offsets_asked(tmp_path: Path) -> None:
    moved = reordered(tmp_path, "moved.bin")
    assert [s.idstr for s in decode(str(moved)).sections][3:5] == ["cpu_common", "timer"]
    shutil.copyfile(golden_path(BOOTED), golden_path(moved))
    assert golden("check", str(moved))[0] == 0

    code, out, _ = golden("check", "--order", str(moved))
    assert code == 1 and "STALE" in out and "written without --order" in out

    for flag in ("--order", "--offsets"):
        shutil.copyfile(BOOTED, tmp_path / "orig.bin")
        assert golden("update", flag, str(tmp_path / "orig.bin"))[0] == 0
        shutil.copyfile(golden_path(tmp_path / "orig.bin"), golden_path(moved))
        code, out, _ = golden("check", str(moved))  # the golden's own options apply
        assert code == 1, flag
        assert "[order]" in out and "order/3: ram/@end (id 1)" not in out
        assert "timer (id 99)" in out
        golden_path(tmp_path / "orig.bin").unlink()


def test_offsets_golden_has_offsets_and_passes(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path, with_golden=False)
    assert golden("update", "--offsets", str(stream))[0] == 0
    text = golden_path(stream).read_text()
    assert "ramfb-dev/state/cfg/@offset = 0xd9375" in text
    assert "order/5 = timer (id 0) @0xd1503+48" in text
    assert golden("check", str(stream))[0] == 0
    # sticky: a plain update keeps the options the golden was written with
    assert "1 unchanged" in golden("update", str(stream))[1]


def test_library_check_result(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path)
    poke(stream, ramfb_width_offset(stream), (800).to_bytes(4, "big"))
    result = check_stream(stream)
    assert result.status == "different"
    assert [(c.group, c.path, c.old, c.new) for c in result.changes] == [
        ("ramfb-dev", "ramfb-dev/state/cfg/width", "1024", "800")]


# ---------------------------------------------------------------- the pytest plugin


PLUGIN_TEST = '''
from pathlib import Path

def test_beside(vmig_golden):
    vmig_golden(Path("out.bin"))

def test_explicit(vmig_golden):
    vmig_golden.check("out.bin", golden="golden/out.golden.txt", ignore=["timer/*"])
'''


def test_pytest_plugin_fails_then_updates_then_passes(pytester: pytest.Pytester) -> None:
    shutil.copyfile(BOOTED, pytester.path / "out.bin")
    (pytester.path / "golden").mkdir()
    pytester.makepyfile(test_stream=PLUGIN_TEST)

    run = pytester.runpytest("-p", "no:cacheprovider")
    run.assert_outcomes(failed=2)
    run.stdout.fnmatch_lines(["*MISSING out.bin: no golden file out.golden.txt*",
                              "*hint: run `pytest --vmig-update-golden`*"])

    run = pytester.runpytest("-p", "no:cacheprovider", "--vmig-update-golden")
    run.assert_outcomes(passed=2)
    run.stdout.fnmatch_lines(["*vmig golden files written*", "created out.golden.txt",
                              "created golden/out.golden.txt"])
    assert (pytester.path / "out.golden.txt").read_text() == golden_path(BOOTED).read_text()
    assert '"ignore": ["timer/*"]' in (pytester.path / "golden" / "out.golden.txt").read_text()
    assert (pytester.path / "out.bin").read_bytes() == BOOTED.read_bytes()

    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)

    poke(pytester.path / "out.bin", ramfb_width_offset(pytester.path / "out.bin"), (640).to_bytes(4, "big"))
    run = pytester.runpytest("-p", "no:cacheprovider")
    run.assert_outcomes(failed=2)
    run.stdout.fnmatch_lines(["*ramfb-dev/state/cfg/width: 1024 \u2192 640*"])


# ---------------------------------------------------------------- other streams and formats


def test_vfio_device_stream_golden(tmp_path: Path) -> None:
    from vfio_ramfb_mig.devstream import DeviceRequest, build_device_stream

    stream = tmp_path / "vfio.bin"
    stream.write_bytes(build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True)).data)
    assert golden("update", str(stream))[0] == 0
    lines = golden_path(stream).read_text().splitlines()
    # one group per section (naming.py): the START and END records sit below the section's name
    for line in ("[0000:00:01.0/vfio]", "0000:00:01.0/vfio/@start/markers = setup, end_of_state",
                 "0000:00:01.0/vfio/@end/markers = end_of_state", "0000:00:01.0/vfio/markers = config, end_of_state",
                 "0000:00:01.0/vfio/config/VFIODisplay/dpy/ramfb/cfg/width = 0"):
        assert line in lines, line
    assert golden("check", str(stream))[0] == 0


def test_golden_of_another_format_is_stale(tmp_path: Path) -> None:
    stream = copy_capture(tmp_path)
    target = golden_path(stream)
    target.write_text(target.read_text().replace("(format 1)", "(format 0)", 1))
    code, out, _ = golden("check", str(stream))
    assert code == 1 and "STALE" in out and "golden format 0" in out


def test_vfio_data_split_over_parts_does_not_matter() -> None:
    from vfio_ramfb_mig.devstream import DeviceRequest, build_device_stream
    from vfio_ramfb_mig.golden import golden_of
    from vfio_ramfb_mig.model import Blob, VfioBody, VfioItem

    model = decode(build_device_stream(DeviceRequest(machine="pc-q35-8.2", ramfb=True)).data)
    records = list(model.records)
    end = next(i for i, r in enumerate(records) if isinstance(r, Section) and r.type == "section_end")
    start = records[end - 1]
    assert isinstance(start, Section) and start.type == "section_start"

    def part(payload: bytes) -> Section:
        body = VfioBody((VfioItem("data", data=Blob(0, len(payload), payload)), VfioItem("end_of_state")))
        return dataclasses.replace(start, type="section_part", body=body)

    texts = []
    for split in ([b"abc" * 100, b"def" * 100], [b"abc" * 100 + b"def" * 100]):
        data = encode_bytes(dataclasses.replace(model, records=tuple(records[:end] + [part(p) for p in split]
                                                                     + records[end:])))
        texts.append(golden_of(decode(data), data).text())
    assert texts[0] == texts[1]
    assert "0000:00:01.0/vfio/@part/markers = data, end_of_state\n" in texts[0]
    assert "0000:00:01.0/vfio/@part/data = 600 bytes, sha256 " in texts[0]


# ---------------------------------------------------------------- many streams at once: -j N


def farm(tmp_path: Path) -> Path:
    """A CI farm's folder of real captures: some match, one golden drifted (a value changed and a
    line gone), one golden missing, in two directories so the sorted order crosses them."""
    root = tmp_path / "farm"
    for n, capture in enumerate(ALL_CAPTURES[::4]):
        where = root / ("b" if n % 2 else "a")
        where.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(capture, where / capture.name)
        shutil.copyfile(golden_path(capture), golden_path(where / capture.name))
    drifted, missing = sorted(root.rglob("*.golden.txt"))[1:3]
    text = drifted.read_text()
    line = next(l for l in text.splitlines() if l.startswith("stream/version = "))
    gone = next(l for l in text.splitlines() if l.startswith("ram/total = "))
    drifted.write_text(text.replace(line, "stream/version = 2").replace(gone + "\n", ""))
    missing.unlink()
    return root


def test_jobs_give_the_output_and_status_of_one_job(tmp_path: Path) -> None:
    root = farm(tmp_path)
    one, two = golden("check", "-j1", "-v", str(root)), golden("check", "-j2", "-v", str(root))
    assert one == two
    code, out, err = one
    assert code == 1 and err == ""
    assert "stream/version: 2 \u2192 3" in out and "MISSING" in out and "DIFFERENT" in out
    streams = [line.split()[1] for line in out.splitlines() if line.split()[:1] in (["OK"], ["DIFFERENT"], ["MISSING"])]
    assert len(streams) == len(ALL_CAPTURES[::4]) and streams == sorted(streams, key=Path)
    # paths in any order: the streams are reported in sorted order
    assert golden("check", "-j1", "-v", str(root / "b"), str(root / "a")) == one

    # a stream that does not decode is trouble (exit 2) whatever the number of jobs
    (root / "a" / "broken.bin").write_bytes(b"QEVM\x00\x00\x00\x03\xff")
    shutil.copyfile(golden_path(BOOTED), root / "a" / "broken.golden.txt")
    one, two = golden("check", "-j1", str(root)), golden("check", "-j2", str(root))
    assert one == two and one[0] == 2 and "broken.bin" in one[2]


def test_update_with_jobs_writes_what_one_job_writes(tmp_path: Path) -> None:
    first, second = farm(tmp_path / "1"), farm(tmp_path / "2")
    one, two = golden("update", "-j1", str(first)), golden("update", "-j2", str(second))
    assert one[0] == two[0] == 0 and one[2] == two[2] == ""
    assert one[1].replace(str(first), "ROOT") == two[1].replace(str(second), "ROOT")
    assert "1 created, 1 updated" in one[1]
    written = {p.relative_to(first): p.read_text() for p in first.rglob("*.golden.txt")}
    assert written == {p.relative_to(second): p.read_text() for p in second.rglob("*.golden.txt")}
    assert golden("check", "-j2", str(second))[0] == 0


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["golden", "check", "-j0", str(copy_capture(tmp_path))])
    assert result.exit_code == 2 and "-j" in result.stderr


# ---------------------------------------------------------------- reports for CI: --json, --junit


def test_json_and_junit_reports(tmp_path: Path) -> None:
    import json
    from xml.etree import ElementTree

    from schemacheck import assert_schema

    root = farm(tmp_path)
    (root / "a" / "broken.bin").write_bytes(b"QEVM\x00\x00\x00\x03\xff")
    shutil.copyfile(golden_path(BOOTED), root / "a" / "broken.golden.txt")
    qcow2 = FIXTURES / "containers" / "qemu-10.0.2__pc-q35-8.2__v3-snapshots.qcow2"  # two VM states, no goldens
    shutil.copyfile(qcow2, root / qcow2.name)
    report = tmp_path / "junit.xml"
    code, out, err = golden("check", "--json", "--junit", str(report), "--limit", "1", str(root))
    text_code, text_out, _ = golden("check", "--limit", "0", str(root))
    assert code == text_code == 2 and "broken.bin" in err

    doc = json.loads(out)
    assert_schema("golden-check", doc)
    streams = {Path(s["stream"]).name + (f"@{s['snapshot']}" if s["snapshot"] else ""): s for s in doc["streams"]}
    assert [s["stream"] for s in doc["streams"]] == sorted((s["stream"] for s in doc["streams"]), key=Path)
    assert doc["passed"] is False and doc["counts"] == {
        "ok": len(ALL_CAPTURES[::4]) - 2, "different": 1, "missing": 3, "stale": 0, "error": 1}
    assert {s["status"] for n, s in streams.items() if n.startswith(qcow2.name)} == {"missing"}
    assert sorted(n for n in streams if n.startswith(qcow2.name)) == [f"{qcow2.name}@1", f"{qcow2.name}@2"]
    drifted = next(s for s in doc["streams"] if s["status"] == "different")
    assert drifted["changes"] == [{"group": "stream", "path": "stream/version", "kind": "changed", "old": "2", "new": "3"},
                                  {"group": "ram", "path": "ram/total", "kind": "added", "old": None, "new": "17309696"}]
    assert streams["broken.bin"]["status"] == "error" and streams["broken.bin"]["message"]

    suites = ElementTree.parse(report).getroot()
    assert suites.tag == "testsuites"
    (suite,) = suites
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == list(streams)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (str(len(streams)), "4", "1")
    by_name = {c.get("name"): c for c in cases}
    for name, stream in streams.items():
        case = by_name[name]
        assert case.get("classname") == str(Path(stream["stream"]).parent)
        failure, error = case.find("failure"), case.find("error")
        if stream["status"] == "ok":
            assert failure is None and error is None
        elif stream["status"] == "error":
            assert failure is None and error is not None and stream["message"] in error.text
        else:
            assert error is None and failure.get("type") == stream["status"]
    # a failure holds the diff text, as the text output says it
    failure = by_name[Path(drifted["stream"]).name].find("failure")
    assert "~ stream/version: 2 \u2192 3" in failure.text and "[stream]" in failure.text
    assert "+ ram/total: (absent) \u2192 17309696" in failure.text
    assert "stream/version: 2 \u2192 3" in text_out

    # the same files for any -j
    again = tmp_path / "junit-j1.xml"
    assert golden("check", "-j1", "--json", "--junit", str(again), str(root))[1] == out
    assert again.read_bytes() == report.read_bytes()


def test_junit_holds_what_xml_cannot_say_escaped(tmp_path: Path) -> None:
    from xml.etree import ElementTree

    from vfio_ramfb_mig.golden import CheckResult, Change, junit_xml

    odd = CheckResult(Path("d/x\x01.bin"), Path("d/x\x01.golden.txt"), "different",
                      (Change("g\x02", "g\x02/f", "\x00", "1"),))
    root = ElementTree.fromstring(junit_xml([odd, CheckResult(Path("d/y.bin"), Path("d/y.golden.txt"), "ok")]))
    case = root.find("testsuite/testcase")
    assert case.get("name") == "x\\x01.bin" and "g\\x02/f: \\x00 \u2192 1" in case.find("failure").text


def test_every_bundled_fixture_has_its_golden() -> None:
    """What a CI farm does with a folder of captures: every stream in fixtures/, whatever file holds
    it (raw, libvirt save, each qcow2 snapshot), has a golden beside it that still matches."""
    code, out, err = golden("check", "--json", str(FIXTURES))
    import json

    doc = json.loads(out)
    assert code == 0 and doc["passed"], err + "\n".join(
        f"{s['stream']}: {s['status']}" for s in doc["streams"] if s["status"] != "ok")
    containers = {Path(s["stream"]).name for s in doc["streams"] if "/containers/" in s["stream"]}
    assert any(n.endswith(".save") for n in containers) and any(n.endswith(".qcow2") for n in containers)
