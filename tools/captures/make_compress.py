"""Make fixtures/compress/: an x86 stream QEMU 7.2 wrote with the `compress` capability.

QEMU 7.2's `compress` (deprecated in 8.2, removed in 9.1) sends a RAM page through
a compression thread as a COMPRESS_PAGE record: the page header (CONTINUE set:
the first page of each block goes out as a normal page), a be32 length and the
page deflated by zlib at `compress-level`.  Each thread writes its records into
a buffer of its own, which the migration thread copies into the stream when it
hands the thread its next page or flushes all of them (a new block, the end of
a pass): the records come out of address order, and a thread's zero pages go
out among them as ZERO records.

The guest is pc-q35-7.2 with a ramfb display and 32 MiB, booted for 2 s
(SeaBIOS, its ramfb vgabios, no boot device) then stopped; migrated to a file
with compress-threads 2 and compress-level 1 (the pages compress a little,
so the records are real zlib streams of varying length).  The sidecar records,
besides the capture helper's own record:

* ``guest_ram``: sha256 (whole, per MiB) and count of non-zero pages of the
  source's pc.ram, read from its memory-backend-file once the guest stopped;
* ``destination_guest_ram``: the same of a QEMU 7.2 destination with `compress`
  on that loaded the stream (paused, pc.ram in a shared file);
* ``qemu_loads``: the verdicts of real loads: QEMU 7.2 with `compress` (loads),
  QEMU 7.2 without it ("Received an unexpected compressed page"), and QEMU 10.0
  on the same machine type, which no longer knows the record ("Unknown
  combination of migration flags").

The counters in ``query_migrate`` say what the stream must hold: ``compression.pages``
compressed records, ``ram.normal`` normal pages, ``ram.duplicate`` zero pages.

    python tools/captures/make_compress.py
"""

from __future__ import annotations

import sys
from typing import Any

from common import FIXTURES, check, finish, run_cases, same_ram

from vfio_ramfb_mig.qemu import capture, find_qemu, load

OUT = FIXTURES / "compress"
MACHINE = "pc-q35-7.2"
MEMORY = "32M"
CASES: dict[str, dict[str, Any]] = {
    "booted+compress": dict(capabilities=["compress"], parameters={"compress-threads": 2, "compress-level": 1},
                            devices=["ramfb"], booted_seconds=2),
}
#: a capture with fewer compressed records is made again (a busy host sends more pages whole)
MIN_COMPRESSED = 100


def make(name: str) -> None:
    spec = CASES[name]
    q7, q10 = find_qemu("7.2"), find_qemu("10.0")
    check(q7 is not None and q10 is not None, "QEMU 7.2 and 10.0 (qemu-system-x86_64) are installed")
    assert q7 is not None and q10 is not None
    out = OUT / f"qemu-{q7.version}__{MACHINE}__{name}.bin"
    for _ in range(4):
        res = capture(q7, out, MACHINE, devices=spec["devices"], capabilities=spec["capabilities"],
                      parameters=spec["parameters"], memory=MEMORY, booted_seconds=spec["booted_seconds"],
                      hash_ram=True, timeout=120)
        sc = res.sidecar
        if sc["query_migrate"]["compression"]["pages"] >= MIN_COMPRESSED:
            break
    else:
        raise SystemExit(f"{name}: fewer than {MIN_COMPRESSED} compressed pages in every attempt")
    check(sc["query_migrate"]["status"] == "completed", f"{name}: migration {sc['query_migrate']['status']}")

    loads = []
    accepted = load(q7, out, MACHINE, devices=spec["devices"], memory=MEMORY, capabilities=["compress"],
                    hash_ram=True, timeout=60)
    loads.append({"capabilities": ["compress"], "accepted": accepted.accepted, "status": accepted.status,
                  "errors": accepted.errors})
    check(accepted.accepted, f"{name}: QEMU 7.2 refuses its own stream: {accepted.errors}")
    check(same_ram(sc["guest_ram"], accepted.guest_ram), f"{name}: the destination's RAM differs from the source's")
    without = load(q7, out, MACHINE, devices=spec["devices"], memory=MEMORY, timeout=60)
    loads.append({"capabilities": [], "accepted": without.accepted, "status": without.status,
                  "errors": without.errors})
    check(not without.accepted, f"{name}: QEMU 7.2 without compress accepts it")
    newer = load(q10, out, MACHINE, devices=spec["devices"], memory=MEMORY, timeout=60)
    loads.append({"qemu": q10.version, "capabilities": [], "accepted": newer.accepted, "status": newer.status,
                  "errors": newer.errors})
    check(not newer.accepted, f"{name}: QEMU {q10.version} accepts COMPRESS_PAGE records")

    recipe = dict(spec, machine=MACHINE, memory=MEMORY, min_compressed=MIN_COMPRESSED)
    meta = finish(sc, out, recipe, "tools/captures/make_compress.py",
                  {"destination_guest_ram": accepted.guest_ram, "qemu_loads": loads}, compress=True)
    mig = sc["query_migrate"]
    print(f"{name}: {sc['size']} bytes, {mig['compression']['pages']} compressed, {mig['ram']['normal']} normal, "
          f"{mig['ram']['duplicate']} zero pages -> {meta}")
    for entry in loads:
        print(f"  load {entry.get('qemu', q7.version)} {entry['capabilities']}: {entry['accepted']} "
              f"{entry['errors'][:1]}")


def main(argv: list[str] | None = None) -> int:
    return run_cases(__doc__, OUT, list(CASES), make, argv)


if __name__ == "__main__":
    sys.exit(main())
