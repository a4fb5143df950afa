"""Make fixtures/other-arch/: streams of architectures vmig has no bundled QEMU build for.

vmig's machine data, schemas and load rules come from x86_64 and aarch64 QEMU builds; a
stream of any other target must still decode whole (from its vmdesc), encode back byte for
byte, and be recognised as coming from elsewhere (`vmig check` must not judge riscv64's
unversioned ``virt`` as aarch64's ``virt`` alias). Written by QEMU 10.0.2 from Debian's
bookworm-backports (``qemu-system-misc`` for riscv64 and s390x, ``qemu-system-ppc`` for
ppc64), paused (``-S``, never run), with the project's capture helper:

* ``riscv64/virt/ramfb``: ``qemu-system-riscv64 -M virt -m 64M -device ramfb`` (riscv64's
  virt is not versioned; the guest never ran, so the ramfb config is all zero);
* ``s390x/s390-ccw-virtio-10.0/plain``: ``qemu-system-s390x -M s390-ccw-virtio-10.0 -m 64M``
  (its ``s390-storage_attributes`` section has no vmstate description: kept opaque);
* ``ppc64/pseries-10.0/plain``: ``qemu-system-ppc64 -M pseries-10.0 -m 256M -nodefaults``
  (SLOF wants at least 80 MiB; ``spapr/htab`` has no vmstate description: kept opaque).

Each sidecar records ``qemu_loads``: the same QEMU loading the stream (paused, same command
line). These QEMU binaries are not needed to run the tests: CI reads the bundled files.

    python tools/captures/make_other_arch.py                        # every case
    python tools/captures/make_other_arch.py riscv64/virt/ramfb
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from common import FIXTURES, check, finish, run_cases

from vfio_ramfb_mig.qemu import capture, load, qemu_from_path

OUT = FIXTURES / "other-arch"
#: "ARCH/MACHINE/VARIANT" -> (-m, extra QEMU arguments)
CASES = {
    "riscv64/virt/ramfb": ("64M", []),
    "s390x/s390-ccw-virtio-10.0/plain": ("64M", []),
    "ppc64/pseries-10.0/plain": ("256M", ["-nodefaults"]),
}


def make(case: str) -> None:
    arch, machine, variant = case.split("/")
    binary = shutil.which(f"qemu-system-{arch}")
    check(binary is not None, f"qemu-system-{arch} is installed (apt-get install -t bookworm-backports "
                              f"{'qemu-system-ppc' if arch.startswith('ppc') else 'qemu-system-misc'})")
    q = qemu_from_path(binary)
    devices = ["ramfb"] if variant == "ramfb" else []
    memory, extra_args = CASES[case]
    out = OUT / f"qemu-{q.version}__{arch}__{machine}__{variant}.bin"
    res = capture(q, out, machine, devices=devices, memory=memory, extra_args=extra_args)
    v = load(q, out, machine, devices=devices, memory=memory, extra_args=extra_args, timeout=120)
    check(v.accepted, f"{case}: QEMU refuses its own stream: {v.errors}")
    extra: dict[str, Any] = {"qemu_loads": [{"devices": devices, "accepted": v.accepted, "status": v.status,
                                             "errors": v.errors}]}
    recipe = {"qemu": q.version, "arch": arch, "machine": machine, "devices": devices, "memory": memory,
              "extra_args": extra_args}
    meta = finish(res.sidecar, out, recipe, "tools/captures/make_other_arch.py", extra, compress=True)
    print(f"{case}: {res.size} bytes -> {meta}")


def main(argv: list[str] | None = None) -> int:
    return run_cases(__doc__, OUT, list(CASES), make, argv)


if __name__ == "__main__":
    sys.exit(main())
