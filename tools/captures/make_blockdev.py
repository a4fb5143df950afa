"""Make fixtures/blockdev/: streams whose sections carry block-layer state.

* ``dirty-bitmap``: a qcow2 disk (virtio-blk-pci, drive ``d0``) holding a persistent dirty
  bitmap ``bm0`` (granularity 64 KiB) in which ``qemu-io`` set bits by writing two ranges,
  migrated with the ``dirty-bitmaps`` capability: a "dirty-bitmap" section (START with the
  bitmap's name and granularity, END with its bits; a PART per pass in between), for
  QEMU 10.0.2 and 7.2.22. The destination gets a fresh qcow2 of the same size (a bitmap of
  that name there would make QEMU refuse it).
* ``block``: QEMU 7.2.22's block migration (capability ``block``, removed in 9.1) of a 1 MiB
  raw disk with a fixed pattern: a "block" section, kept opaque by vmig. Its sidecar records
  that 7.2.22 loads it and 10.0.2 refuses it ("Unknown savevm section or instance 'block' 0").

Paused guests (``-S``, never run), 16 MiB of RAM, with the project's capture helper; every
file is stored xz'd. Each sidecar's ``qemu_loads`` says which QEMU loaded it, paused, with
the same command line. These QEMU builds are not needed to run the tests.

    python tools/captures/make_blockdev.py                  # every case
    python tools/captures/make_blockdev.py 10.0/dirty-bitmap
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import FIXTURES, check, finish, run_cases

from vfio_ramfb_mig.qemu import capture, find_qemu, load

OUT = FIXTURES / "blockdev"
CASES = ["10.0/dirty-bitmap", "7.2/dirty-bitmap", "7.2/block"]
MEMORY = "16M"
#: QEMU decides on switchover only once it has measured a bandwidth (every 100 ms): until then a
#: paused guest's migration spins, each pass adding an empty dirty-bitmap PART (33k of them at the
#: helper's default bandwidth). At 1 MB/s the RAM pass itself lasts past the first measurement.
PARAMETERS = {"max-bandwidth": 1_000_000}
DISK_SIZE = 8 << 20


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def bitmap_disk(path: Path) -> None:
    """A qcow2 with persistent bitmap bm0 and bits set in two ranges (the writes mark them)."""
    qemu_img("create", "-q", "-f", "qcow2", str(path), str(DISK_SIZE))
    qemu_img("bitmap", "--add", "-g", "64K", str(path), "bm0")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", "-c", "write -P 0xa5 3M 192k", str(path)],
                   check=True, capture_output=True)


def patterned_disk(path: Path) -> None:
    """1 MiB raw: every 4 KiB block filled with its own index (not random: the capture repeats)."""
    path.write_bytes(b"".join(bytes([i % 251 + 1]) * 4096 for i in range(256)))


def make(case: str) -> None:
    series, variant = case.split("/")
    q = find_qemu(series, strict=False)
    check(q is not None, f"QEMU {series} is there (../shared/docs/qemu-setup.md)")
    machine = f"pc-q35-{series}"
    devices = ["virtio-blk-pci,drive=d0"]
    with tempfile.TemporaryDirectory(prefix="vmig-blockdev-") as tmp:
        src, dst = Path(tmp) / "src.img", Path(tmp) / "dst.img"
        if variant == "dirty-bitmap":
            bitmap_disk(src)
            qemu_img("create", "-q", "-f", "qcow2", str(dst), str(DISK_SIZE))
            fmt, caps = "qcow2", ["dirty-bitmaps"]
        else:
            patterned_disk(src)
            dst.write_bytes(bytes(1 << 20))
            fmt, caps = "raw", ["block"]
        drive = ["-drive", f"if=none,id=d0,format={fmt},file="]
        out = OUT / f"qemu-{q.version}__{machine}__{variant}.bin"
        res = capture(q, out, machine, devices=devices, capabilities=caps, parameters=PARAMETERS, memory=MEMORY,
                      extra_args=[*drive[:-1], drive[-1] + str(src)])
        loads: list[dict[str, Any]] = []
        for other in ("10.0", "7.2") if variant == "block" else (series,):
            dest = find_qemu(other, strict=False)
            v = load(dest, out, machine, devices=devices, memory=MEMORY, extra_args=[*drive[:-1], drive[-1] + str(dst)])
            loads.append({"qemu": dest.version, "devices": devices, "accepted": v.accepted, "status": v.status,
                          "errors": v.errors})
    own = next(x for x in loads if x["qemu"] == q.version)
    check(own["accepted"], f"{case}: QEMU refuses its own stream: {own['errors']}")
    recipe = {"qemu": q.version, "machine": machine, "devices": devices, "memory": MEMORY, "capabilities": caps,
              "disk": variant}
    meta = finish(res.sidecar, out, recipe, "tools/captures/make_blockdev.py", {"qemu_loads": loads}, compress=True)
    print(f"{case}: {res.size} bytes -> {meta}")


def main(argv: list[str] | None = None) -> int:
    return run_cases(__doc__, OUT, CASES, make, argv)


if __name__ == "__main__":
    sys.exit(main())
