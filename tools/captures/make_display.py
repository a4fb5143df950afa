"""Make fixtures/display/: x86 streams with a display device that brings its own RAM block.

``VGA`` has ``vga.vram`` (``vgamem_mb``, 16 MiB by default), ``qxl-vga`` has
``qxl.vram``, ``qxl.vrom``, ``qxl.vgavram`` ...  A destination whose block is
another size refuses a stream before it reads any device section, with
"Size mismatch: 0000:00:01.0/vga.vram: 0x4000000 != 0x1000000": the captures
with ``vgamem_mb=64`` and the default give both sides of that verdict.

Paused, QEMU 10.0.2, pc-q35-10.0, 16 MiB: byte-for-byte reproducible.  Each
sidecar's ``qemu_loads`` holds what real QEMU says when it loads the stream
with the same device and with the other vgamem size.

    python tools/captures/make_display.py
"""

from __future__ import annotations

import sys
from typing import Any

from common import FIXTURES, capture_twice_alike, check, finish, run_cases

from vfio_ramfb_mig.qemu import capture, find_qemu, load

OUT = FIXTURES / "display"
MACHINE = "pc-q35-10.0"
# variant -> -device
CASES = {
    "vga": "VGA",
    "vga-64m": "VGA,vgamem_mb=64",
    "qxl-vga": "qxl-vga",
}
# the destination each stream is also loaded into, to record the size verdict
OTHER = {"vga": "VGA,vgamem_mb=64", "vga-64m": "VGA", "qxl-vga": "qxl-vga,vram_size_mb=32"}


def make(variant: str) -> None:
    q = find_qemu("10.0")
    check(q is not None, "QEMU 10.0 (qemu-system-x86_64) is installed")
    device = CASES[variant]
    out = OUT / f"qemu-{q.version}__{MACHINE}__{variant}.bin"
    res = capture_twice_alike(lambda path: capture(q, path, MACHINE, devices=[device]), out)
    loads: list[dict[str, Any]] = []
    for dest in (device, OTHER[variant]):
        v = load(q, out, MACHINE, devices=[dest])
        loads.append({"devices": [dest], "accepted": v.accepted, "status": v.status, "errors": v.errors})
    check(loads[0]["accepted"], f"{variant}: QEMU refuses its own stream: {loads[0]['errors']}")
    check(not loads[1]["accepted"], f"{variant}: QEMU accepts it with {OTHER[variant]}")
    recipe = {"qemu": "10.0", "machine": MACHINE, "devices": [device], "memory": "16M"}
    meta = finish(res.sidecar, out, recipe, "tools/captures/make_display.py", {"qemu_loads": loads})
    print(f"{variant}: {res.size} bytes; with {OTHER[variant]}: {loads[1]['errors'][:1]} -> {meta}")


def main(argv: list[str] | None = None) -> int:
    return run_cases(__doc__, OUT, list(CASES), make, argv)


if __name__ == "__main__":
    sys.exit(main())
