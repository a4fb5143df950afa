"""Guest-physical reads (ram.open_guest_memory) and memory maps, against real QEMU.

* Whole guest RAM: each booted capture is loaded by the QEMU that wrote it, with its RAM in a
  shared memory-backend-file (id pc.ram, the block's name), so after the load the file holds
  exactly what QEMU loaded; vmig's read of every guest-physical byte must equal it, and so must
  the framebuffer range the ramfb config points at.
* Memory maps: QEMU's own `info mtree` (the ram-below-4g / ram-above-4g aliases of pc.ram, and
  mach-virt.ram on aarch64 virt) for machine types and RAM sizes on both sides of every split
  rule, against `ram.memory_map`.
* A cut stream: the pages it did not get to are reported missing, the others read as QEMU has them.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from paths import CAPTURES

from vfio_ramfb_mig import decode, ram
from vfio_ramfb_mig.errors import InputError
from vfio_ramfb_mig.model import RamBody
from vfio_ramfb_mig.qemu import find_qemu, load
from vfio_ramfb_mig.qemurun import QemuRun
from vfio_ramfb_mig.source import Source

BOOTED = sorted(CAPTURES.glob("*ramfb+booted.bin"))
MiB, GiB = 1 << 20, 1 << 30


def qemu_ram(tmp_path: Path, capture: Path) -> bytes:
    """The guest RAM the QEMU that wrote `capture` holds after loading it."""
    meta = json.loads((capture.parent / (capture.stem + ".meta.json")).read_text())
    series = "7.2" if meta["qemu"]["version"].startswith("7.2") else "10.0"
    qemu = find_qemu(series)
    if qemu is None:
        pytest.skip(f"QEMU {series} not found")
    mem = tmp_path / "guest-ram"
    result = load(qemu, capture, meta["machine"], devices=meta["devices"], memory=meta["memory"],
                  extra_args=["-object", f"memory-backend-file,id=pc.ram,size={meta['memory']},mem-path={mem},"
                              "share=on", "-machine", "memory-backend=pc.ram"])
    assert result.accepted, result.stderr
    return mem.read_bytes()


def ramfb_cfg(stream) -> dict | None:
    for section in stream.sections:
        if section.idstr == "ramfb-dev":
            return section.body.fields[0].value.fields[0].value
    return None


@pytest.mark.qemu
@pytest.mark.parametrize("capture", BOOTED, ids=lambda p: p.stem)
def test_guest_memory_equals_what_qemu_loaded(tmp_path: Path, capture: Path, qemu10, qemu72) -> None:
    expected = qemu_ram(tmp_path, capture)
    for runs in (True, False):  # from the model's runs, and by walking the source again
        with Source.open(str(capture)) as src:
            stream = decode(src, ram_runs=runs)
            with ram.open_guest_memory(stream, src) as mem:
                data, missing = mem.read(0, len(expected))
                assert missing == []
                assert data == expected
                # one byte past the RAM: not RAM on this machine, reported, zero in the result
                data, missing = mem.read(len(expected) - 2, 4)
                assert missing == [(len(expected), 2)] and data[2:] == bytes(2)
                cfg = ramfb_cfg(stream)
                if cfg is not None and cfg["addr"]:
                    size = cfg["stride"] * cfg["height"]
                    fb, missing = mem.read(cfg["addr"], size)
                    assert missing == [] and fb == expected[cfg["addr"]:cfg["addr"] + size]
                    assert fb.count(0) < len(fb)  # a booted guest drew something


@pytest.mark.qemu
def test_cut_stream_reports_missing_pages(tmp_path: Path, qemu10) -> None:
    capture = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+booted.bin"
    expected = qemu_ram(tmp_path, capture)
    data = capture.read_bytes()
    cut = data[:len(data) // 2]
    stream = decode(cut, partial=True)
    assert stream.error is not None
    # the pages whose records lie wholly before the cut, by the construct description of a record
    # (each record of the whole stream is parsed on its own)
    sent = {page_offset // 4096 for offset, length, page_offset in construct_records(data, decode(data))
            if offset + length <= len(cut)}
    src = Source.from_bytes(cut)
    with ram.open_guest_memory(stream, src) as mem:
        got, missing = mem.read(0, len(expected))
    missing_pages = {p for start, n in missing for p in range(start // 4096, (start + n) // 4096)}
    assert missing_pages == set(range(len(expected) // 4096)) - sent
    assert sent and missing_pages
    for page in sent:
        assert got[page * 4096:(page + 1) * 4096] == expected[page * 4096:(page + 1) * 4096]


def construct_records(data: bytes, stream) -> list[tuple[int, int, int]]:
    """(offset, length, page offset) of each whole page record, each parsed on its own with the
    construct schema of wire/ram.py (the walk only says where its runs start)."""
    from construct import StreamError

    from vfio_ramfb_mig.model import RamPages
    from vfio_ramfb_mig.wire.ram import page_record

    out = []
    for section in stream.sections:
        if not isinstance(section.body, RamBody):
            continue
        schema = page_record(section.body.page_size)
        for run in section.body.items:
            if not isinstance(run, RamPages):
                continue
            f = io.BytesIO(data)
            f.seek(run.span.offset)
            for _ in range(run.count):
                pos = f.tell()
                try:
                    rec = schema.parse_stream(f)
                except StreamError:
                    return out
                out.append((pos, f.tell() - pos, rec.offset))
    return out


# ---------------------------------------------------------------- memory maps against QEMU


_ALIAS = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ram\): (?:alias ram-(?:below|above)-4g @(\S+) "
                    r"([0-9a-f]+)-[0-9a-f]+|(mach-virt\.ram)$)")


def mtree_regions(binary: str, machine: str, memory: str, extra: list[str] = ()) -> set[tuple[int, int, str, int]]:
    """(start, length, block, block offset) of the main RAM as QEMU maps it (`info mtree`)."""
    argv = [binary, "-S", "-M", machine, "-m", memory, "-nodefaults", "-display", "none", "-accel", "tcg", *extra]
    with QemuRun(argv, timeout=60, what="info mtree") as run:
        run.connect()
        out = run.hmp("info mtree")
        run.quit()
    regions = set()
    for line in out.splitlines():
        m = _ALIAS.match(line)
        if m:
            start, end = int(m.group(1), 16), int(m.group(2), 16) + 1
            block = m.group(3) or m.group(5)
            regions.add((start, end - start, block, int(m.group(4), 16) if m.group(4) else 0))
    return regions


X86_CASES = [
    # (machine, -m, max-ram-below-4g or None): both sides of each rule in pc_q35.c / pc_piix.c
    ("pc-q35-10.0", "16M", None),
    ("pc-q35-10.0", "2815M", None),
    ("pc-q35-10.0", "2816M", None),  # 0xb0000000: split at 2 GiB
    ("pc-q35-10.0", "4G", None),
    ("pc-q35-10.0", "4G", "1G"),
    ("pc-q35-10.0", "3G", "2560M"),
    ("pc-i440fx-10.0", "3583M", None),
    ("pc-i440fx-10.0", "3584M", None),  # 0xe0000000: split, gigabyte-aligned at 3 GiB
    ("pc-i440fx-10.0", "4G", None),
    ("pc-i440fx-10.0", "4G", "2G"),
    ("pc-i440fx-10.0", "3968M", "4G"),
    ("pc-i440fx-10.0", "4G", "3584M"),
]
X86_72_CASES = [
    ("pc-i440fx-1.7", "4G", None),  # no gigabyte alignment: 3.5 GiB low
    ("pc-i440fx-7.2", "4G", None),
    ("isapc", "4G", None),
]


def _check_x86(binary: str, machine: str, memory: str, below: str | None, extra: list[str] = ()) -> None:
    from vfio_ramfb_mig.ram.limits import parse_size

    option = f",max-ram-below-4g={below}" if below else ""
    seen = mtree_regions(binary, machine + option, memory, list(extra))
    assert seen, f"no pc.ram aliases in info mtree for {machine} -m {memory}"
    layout = ram.memory_map(machine, {"pc.ram": parse_size(memory)},
                            max_ram_below_4g=parse_size(below) if below else None)
    assert {(r.start, r.length, r.block, r.block_offset) for r in layout.regions} == seen


@pytest.mark.qemu
@pytest.mark.parametrize(("machine", "memory", "below"), X86_CASES)
def test_x86_memory_map_is_qemus(qemu10, machine: str, memory: str, below: str | None) -> None:
    _check_x86(qemu10.path, machine, memory, below)


@pytest.mark.qemu
@pytest.mark.parametrize(("machine", "memory", "below"), X86_72_CASES)
def test_x86_memory_map_is_qemu72s(qemu72, machine: str, memory: str, below: str | None) -> None:
    _check_x86(qemu72.path, machine, memory, below, list(qemu72.argv_prefix[1:]))


@pytest.mark.qemu
@pytest.mark.parametrize("memory", ["64M", "3G"])
def test_aarch64_virt_memory_map_is_qemus(qemu10, memory: str) -> None:
    from vfio_ramfb_mig.ram.limits import parse_size

    binary = str(Path(qemu10.path).with_name("qemu-system-aarch64"))
    seen = mtree_regions(binary, "virt", memory)
    layout = ram.memory_map("virt-10.0", {"mach-virt.ram": parse_size(memory)})
    assert {(r.start, r.length, r.block, r.block_offset) for r in layout.regions} == seen


def test_memory_map_choices() -> None:
    # the main block by name, or the largest plain one (-machine memory-backend=ID)
    layout = ram.memory_map("pc-q35-10.0", {"vmig-ram": 1 * GiB, "/rom@etc/acpi/tables": 0x20000,
                                            "pc.bios": 0x40000})
    assert [r.block for r in layout.regions] == ["vmig-ram"]
    # no configuration record: pc.ram alone says x86, fine while both chipsets agree
    assert ram.memory_map("", {"pc.ram": 16 * MiB}).regions[0].length == 16 * MiB
    with pytest.raises(InputError, match="split it differently"):
        ram.memory_map("", {"pc.ram": 3 * GiB})
    assert ram.memory_map("", {"mach-virt.ram": 16 * MiB}).regions[0].start == 0x40000000
    with pytest.raises(InputError, match="no guest-physical memory map"):
        ram.memory_map("s390-ccw-virtio-10.0", {"s390.ram": 16 * MiB})
    with pytest.raises(InputError, match="no RAM block 'nope'"):
        ram.memory_map("pc-q35-10.0", {"pc.ram": 16 * MiB}, ram_block="nope")
