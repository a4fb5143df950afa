"""Streaming (issue 13 #5): a verb that reads forward (decode's tree and summary, check, info)
reads a pipe or compressed input through a window of temp space, not its size; what it decodes
is exactly what a seekable read decodes.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import assert_one_error_line, write_big_stream
from paths import CAPTURES, FIXTURES, ROOT
from vfio_ramfb_mig import Source, decode
from vfio_ramfb_mig.codec import jsonform
from vfio_ramfb_mig.qemu import QemuBinary
from vfio_ramfb_mig.qemurun import QemuRun
from vfio_ramfb_mig.source import ForwardSource

sys.path.insert(0, str(ROOT / "tools" / "captures"))
from tinykernel import kernel  # noqa: E402

CONTAINERS = FIXTURES / "containers"
INPUTS = [*sorted(CONTAINERS.glob("libvirt-*.save")), *(CAPTURES / name for name in (
    "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin", "qemu-10.0.2__pc-q35-10.0__ramfb+nofooter.bin",
    "qemu-10.0.2__pc-q35-7.2__novmdesc.bin", "qemu-7.2.22__pc-q35-7.2__e1000e.bin")),
    # aarch64 (UEFI-booted, compressed as bundled), every kind of live RAM record, a display's VRAM
    FIXTURES / "aarch64" / "qemu-10.0.2__virt-8.2__uefi+ramfb.bin.xz", *sorted((FIXTURES / "live").glob("*.bin*")),
    FIXTURES / "display" / "qemu-10.0.2__pc-q35-10.0__vga-64m.bin"]


def forward_and_seek(path: Path) -> tuple[str, str, bool]:
    with Source.open(str(path), seek=False) as fwd:
        forward = decode(fwd, partial=True)
        was_forward = isinstance(fwd, ForwardSource)
        text_f = jsonform.dumps(forward) + repr((forward.error, forward.warnings))
    with Source.open(str(path)) as whole:
        seek = decode(whole, partial=True)
        text_s = jsonform.dumps(seek) + repr((seek.error, seek.warnings))
    return text_f, text_s, was_forward


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_forward_decode_is_the_seekable_decode(path: Path, tmp_path: Path) -> None:
    if path.suffix == ".bin":  # a plain stream is read in place; compress it to make it forward-only
        packed = tmp_path / (path.name + ".gz")
        packed.write_bytes(gzip.compress(path.read_bytes(), 1))
        path = packed
    forward, seek, was_forward = forward_and_seek(path)
    assert was_forward == (path.suffix in (".gz", ".xz") or "raw" not in path.name)
    assert forward == seek


def test_forward_decode_of_a_cut_stream_says_the_same(tmp_path: Path) -> None:
    data = (CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin").read_bytes()
    for cut in (7, 300, len(data) // 2, len(data) - 3):
        packed = tmp_path / "cut.gz"
        packed.write_bytes(gzip.compress(data[:cut], 1))
        forward, seek, _ = forward_and_seek(packed)
        assert forward == seek, cut


@pytest.fixture(scope="module")
def big_save(qemu10: QemuBinary, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160 MiB guest whose kernel writes to every page of its first 128 MiB, saved through gzip
    by QEMU itself (``migrate exec:gzip``, as libvirt's compressed save formats do)."""
    tmp_path = tmp_path_factory.mktemp("big-save")
    kpath = tmp_path / "kernel.bin"
    last_page = 0x8000000 - 0x1000
    kpath.write_bytes(kernel(first=0x200000, end=last_page + 0x1000))
    out = tmp_path / "big.bin.gz"
    argv = [qemu10.path, "-M", "pc-q35-8.2", "-accel", "tcg", "-m", "160M", "-nodefaults", "-display", "none",
            "-net", "none", "-kernel", str(kpath)]
    with QemuRun(argv, timeout=120, what="big save") as run:
        run.connect()
        # the kernel's first pass over the 126 MiB is over once the last page's first word is not 0
        while not re.search(r": 0x0*[1-9a-f]", run.hmp(f"xp /1wx {last_page:#x}")):
            assert run.left() > 0, "the guest's kernel did not get over its RAM"
            time.sleep(0.5)
        run.cmd("stop")  # a guest that keeps writing every page would never let precopy converge
        run.cmd("migrate", {"uri": f"exec:gzip -1 > {out}"})
        while (status := run.cmd("query-migrate").get("status")) not in ("completed", "failed"):
            time.sleep(0.5)
        assert status == "completed"
        run.quit()
        run.wait_group_gone()  # gzip may still be writing
    return out


@pytest.mark.qemu
def test_a_big_compressed_stream_is_read_through_a_window(big_save: Path) -> None:
    """decode's tree reads it with a window of temp space, where a seekable read copies the whole
    stream."""
    with Source.open(str(big_save), seek=False) as src:
        stream = decode(src, ram_runs=False)
        assert stream.error is None and src.complete
        size, window = src.size, src.window
    pages = sum(n["page"] for s in stream.sections if s.idstr == "ram" for n in s.body.block_counts().values())
    assert pages >= 128 * 256 - 1024  # every page the kernel wrote is a normal page record
    assert size > 120 << 20
    assert 0 < window <= 48 << 20, f"the spool held {window >> 20} MiB at once of a {size >> 20} MiB stream"


#: temp space allowed to the forward verbs below: less than a quarter of the big save's stream
#: (and less than its .gz), more than the window the RAM walk keeps (it gives pages back every 16 MiB)
SMALL_SPOOL = "40M"


def vmig(*args: str, tmpdir: Path, spool: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VMIG_SPOOL_LIMIT"}
    env["TMPDIR"] = str(tmpdir)
    if spool is not None:
        env["VMIG_SPOOL_LIMIT"] = spool
    return subprocess.run([sys.executable, "-m", "vfio_ramfb_mig", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.qemu
def test_forward_verbs_take_less_temp_space_than_the_stream(big_save: Path, tmp_path: Path) -> None:
    """decode (tree and --summary), check and info of a compressed save whose stream is more than
    three times VMIG_SPOOL_LIMIT: the limit bounds the spool held at once, so they succeed, and say
    what the seekable read of the same stream says; nothing is left in $TMPDIR."""
    plain = tmp_path / "big.bin"
    plain.write_bytes(gzip.decompress(big_save.read_bytes()))  # read in place: the reference
    limit = 40 << 20
    assert plain.stat().st_size > 3 * limit
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    for args in (["decode"], ["decode", "--summary"], ["check", "--target", "pc-q35-8.2"], ["info"]):
        forward = vmig(*args, str(big_save), tmpdir=tmpdir, spool=SMALL_SPOOL)
        assert forward.returncode == 0, (args, forward.stderr)
        assert "copied into a temporary file" not in forward.stderr
        reference = vmig(*args, str(plain), tmpdir=tmpdir)
        assert reference.returncode == 0, (args, reference.stderr)
        if args[0] == "info":  # the file itself differs (its size, its gzip layer): the stream does not
            keep = forward.stdout[forward.stdout.index("  header"):]
            assert keep == reference.stdout[reference.stdout.index("  header"):]
        else:
            assert forward.stdout.replace(str(big_save), "X") == reference.stdout.replace(str(plain), "X")
    assert list(tmpdir.iterdir()) == []


@pytest.mark.qemu
def test_a_verb_that_seeks_says_it_copied_and_is_bounded(big_save: Path, tmp_path: Path) -> None:
    """decode --json reads page bytes by offset: the stream is copied whole, which is said in one
    line; under a limit smaller than the stream it stops with one error line naming the limit."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    bounded = vmig("decode", "--json", str(big_save), tmpdir=tmpdir, spool=SMALL_SPOOL)
    assert bounded.returncode == 2 and bounded.stdout == ""
    line = assert_one_error_line(bounded.stderr, wants="VMIG_SPOOL_LIMIT")
    assert "40 MiB" in line
    copied = vmig("decode", "--json", str(big_save), tmpdir=tmpdir)
    assert copied.returncode == 0, copied.stderr
    said = [ln for ln in copied.stderr.splitlines() if "copied into a temporary file" in ln]
    assert len(said) == 1 and "VMIG_SPOOL_LIMIT" in said[0] and "MiB" in said[0], copied.stderr
    assert json.loads(copied.stdout)["container"]["layers"][0]["type"] == "gzip"
    # golden reads the final page state again after its walk: it copies too, and says so (the
    # library opens its inputs; the CLI hears of the copy through notices.copied)
    streams = tmp_path / "goldens"
    streams.mkdir()
    (streams / big_save.name).write_bytes(big_save.read_bytes())
    for verb in ("update", "check"):
        golden = vmig("golden", verb, str(streams), tmpdir=tmpdir)
        assert golden.returncode == 0, golden.stderr
        said = [ln for ln in golden.stderr.splitlines() if "copied into a temporary file" in ln]
        assert len(said) == 1 and big_save.name in said[0], golden.stderr
    # with worker processes (-j2, two streams) each copy is said too, by the parent, in path order
    twin = streams / f"twin-{big_save.name}"
    twin.write_bytes(big_save.read_bytes())
    for verb in ("update", "check"):
        golden = vmig("golden", verb, "-j2", str(streams), tmpdir=tmpdir)
        assert golden.returncode == 0, golden.stderr
        said = [ln for ln in golden.stderr.splitlines() if "copied into a temporary file" in ln]
        assert len(said) == 2 and big_save.name in said[0] and twin.name in said[1], golden.stderr
    assert list(tmpdir.iterdir()) == []


def test_a_page_size_learned_too_late_is_said(tmp_path: Path) -> None:
    """Read forward, the vmdesc comes after the RAM: a stream whose configuration record does not
    give the target page size is walked as 4 KiB pages, and a vmdesc that then says otherwise is
    an error that says what to do, never a silently different decode."""
    # an x86 stream (its configuration gives no page size) longer than what is read before the RAM
    data = (FIXTURES / "live" / "qemu-10.0.2__pc-q35-10.0__live.bin").read_bytes()
    at = data.rindex(b'"page_size": 4096')
    packed = tmp_path / "pages8k.bin.gz"
    packed.write_bytes(gzip.compress(data[:at] + b'"page_size": 8192' + data[at + 17:], 1))
    with Source.open(str(packed), seek=False) as src:
        stream = decode(src, partial=True)
    assert stream.error is not None and "page size of 8192" in stream.error and "to a file first" in stream.error


def test_a_stream_that_needs_its_vmdesc_only_at_eof(tmp_path: Path) -> None:
    """RAM, then EOF and a vmdesc, nothing between that needs the vmdesc: read forward, the vmdesc
    is found once the input is read to its end at the EOF record (the window ahead of the records
    does not reach it: the RAM is longer)."""
    plain = tmp_path / "ram-only.bin"
    write_big_stream(plain, 1024)  # 4 MiB of pc.ram, EOF
    vmdesc = json.dumps({"page_size": 4096, "devices": []}).encode()
    plain.write_bytes(plain.read_bytes() + b"\x06" + struct.pack(">I", len(vmdesc)) + vmdesc)
    packed = tmp_path / "ram-only.bin.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), 1))
    forward, seek, was_forward = forward_and_seek(packed)
    assert was_forward and forward == seek
    with Source.open(str(packed), seek=False) as src:
        assert decode(src).records[-1].type == "vmdesc"
