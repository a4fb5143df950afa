"""Make fixtures/live/: x86 streams of a RUNNING guest, written by real QEMU 10.0.2.

The guest is tools/captures/dirtier.py's 55-byte multiboot kernel, which keeps
changing every page of guest-physical 2-3 MiB, on pc-q35-10.0 with 16 MiB of
RAM.  Each case starts QEMU paused, sets the migration capabilities and
parameters, lets the guest run 1 s, migrates it to a file while it runs, and
keeps it iterating (``downtime-limit`` 1 ms, ``avail-switchover-bandwidth`` 1
MB/s: QEMU's completion threshold is then under one page) until a counter is reached; then the helper raises downtime-limit,
clears the switchover bandwidth, and QEMU completes.  A case whose
migration converged before its counters were reached is made again (a busy
host can starve the guest between two dirty-bitmap syncs).

For every case the sidecar records, besides the capture helper's own record:

* ``guest_ram``: sha256 (whole, per MiB) and count of non-zero pages of the
  source's pc.ram, read from its memory-backend-file once QEMU stopped the
  guest at completion (not for postcopy: the source fails and runs on);
* ``destination_guest_ram``: the same of a QEMU 10.0 destination that loaded
  the stream (paused, pc.ram in a shared file): the guest memory real QEMU
  rebuilt from the stream;
* ``qemu_loads``: the verdicts of those loads (postcopy: with and without the
  postcopy-ram capability);
* ``trace_counts`` (xbzrle): QEMU's trace of pages it counted but did not send
  (skipped: unchanged since the cached copy; overflow: sent as normal pages),
  so ``xbzrle_records`` = xbzrle-cache.pages - skipped - overflow is what the
  stream must hold.

``live+xbzrle+ramfb`` adds a ramfb display (SeaBIOS's ramfb vgabios sets a
1024x768 mode at 12 MiB before the kernel boots) and runs dirtier-fb.img,
which dirties guest-physical 12-13 MiB instead: the top 256 rows of that
framebuffer (the firmware's text among them) change while the guest is
migrated, so the screen is drawn from XBZRLE records applied to pages that
hold more than the changed bytes.  The script checks that the stream's ramfb config
is set and that the dirtied pages lie inside the framebuffer.

    python tools/captures/make_live.py               # every case
    python tools/captures/make_live.py live+xbzrle   # some
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common import FIXTURES, ITERATE, XBZRLE_TRACE, check, finish, relpath, run_cases, same_ram, xbzrle_records

import dirtier

from vfio_ramfb_mig.qemu import CaptureResult, capture, find_qemu, load

OUT = FIXTURES / "live"
# the guests (not .bin: that is a stream to vmig golden), and the guest-physical range each dirties
KERNELS = {"dirtier.img": (dirtier.FIRST, dirtier.END),
           # inside the framebuffer SeaBIOS's ramfb vgabios puts at 12 MiB (1024x768, stride 4096) in
           # a 16 MiB guest: rows 0-255 of the screen (the firmware's text among them), one page each
           "dirtier-fb.img": (0xC00000, 0xD00000)}
MACHINE = "pc-q35-10.0"
MEMORY = "16M"
# ITERATE's 8 MB/s: the first pass over 16 MiB takes ~0.3 s
SYNCS = {"ram.dirty-sync-count": 4}                             # 1 full pass + at least 3 of dirty pages
# one event per page QEMU sends whole (not zero, not XBZRLE, not multifd): postcopy's failed
# migration reports no counters at the end, this count stands in for ram.normal
PAGE_TRACE = ["ram_save_page"]

CASES: dict[str, dict[str, Any]] = {
    # pages re-sent: several PART sections and the END section carry the dirtied pages again
    "live": dict(capabilities=[], parameters=ITERATE, switchover_after=SYNCS, trace=PAGE_TRACE),
    # a slow link and the XBZRLE cache: the dirtied pages go as XBZRLE deltas, thousands of them
    "live+xbzrle": dict(capabilities=["xbzrle"], parameters={**ITERATE, "max-bandwidth": 1_000_000},
                        switchover_after={"xbzrle-cache.pages": 4000}, trace=XBZRLE_TRACE,
                        min_xbzrle_records=3000),
    # pages at fixed file offsets (a re-sent page overwrites itself), stored xz'd (sparse, ~23 MB raw)
    "live+mapped-ram": dict(capabilities=["mapped-ram"], parameters=ITERATE, switchover_after=SYNCS,
                            compress=True),
    "live+multifd+mapped-ram": dict(capabilities=["multifd", "mapped-ram"], parameters=ITERATE,
                                    switchover_after=SYNCS, compress=True),
    # OPEN_RETURN_PATH, PING, POSTCOPY_ADVISE; the source fails (a file has no return path) after
    # writing the whole stream, and resumes the guest
    # a ramfb screen whose rows the guest keeps changing: the picture comes from XBZRLE records
    "live+xbzrle+ramfb": dict(capabilities=["xbzrle"], parameters={**ITERATE, "max-bandwidth": 1_000_000},
                              devices=["ramfb"], kernel="dirtier-fb.img",
                              switchover_after={"xbzrle-cache.pages": 2000}, trace=XBZRLE_TRACE,
                              min_xbzrle_records=1500, compress=True),
    "live+postcopy-ram": dict(capabilities=["postcopy-ram"], parameters=ITERATE, switchover_after=SYNCS,
                              trace=PAGE_TRACE, allow_failed=True),
}
ATTEMPTS = 6


def attempt(q, name: str, spec: dict[str, Any], out: Path) -> CaptureResult | None:
    res = capture(q, out, MACHINE, memory=MEMORY, kernel=OUT / spec.get("kernel", "dirtier.img"),
                  devices=spec.get("devices", ()), live_seconds=1, hash_ram=True,
                  capabilities=spec["capabilities"], parameters=spec["parameters"],
                  switchover_after=spec["switchover_after"], trace=spec.get("trace", ()),
                  allow_failed=spec.get("allow_failed", False), timeout=180)
    sc = res.sidecar
    if sc["switchover"] is None:
        print(f"  {name}: converged on its own before {spec['switchover_after']}; again", file=sys.stderr)
        return None
    if spec.get("min_xbzrle_records") and xbzrle_records(sc) < spec["min_xbzrle_records"]:
        print(f"  {name}: only {xbzrle_records(sc)} XBZRLE records; again", file=sys.stderr)
        return None
    return res


def check_screen(name: str, stream: Path, dirtied: tuple[int, int]) -> None:
    """The firmware set a ramfb mode, and the guest's dirtied pages lie inside its framebuffer."""
    from vfio_ramfb_mig.codec.decode import decode
    from vfio_ramfb_mig.screen.config import choose_display

    cfg = choose_display(decode(str(stream), ram_runs=False)).cfg
    check(cfg.addr != 0 and cfg.width and cfg.height, f"{name}: the firmware set no ramfb mode ({cfg})")
    check(cfg.addr <= dirtied[0] and dirtied[1] <= cfg.addr + cfg.size,
          f"{name}: the dirtied pages {dirtied[0]:#x}..{dirtied[1]:#x} are not all inside the framebuffer"
          f" at {cfg.addr:#x} (+{cfg.size:#x})")


def make(name: str) -> None:
    spec = CASES[name]
    q = find_qemu("10.0")
    check(q is not None, "QEMU 10.0 (qemu-system-x86_64) is installed")
    out = OUT / f"qemu-{q.version}__{MACHINE}__{name}.bin"
    for _ in range(ATTEMPTS):
        res = attempt(q, name, spec, out)
        if res is not None:
            break
    else:
        raise SystemExit(f"{name}: no capture met its counters in {ATTEMPTS} attempts")
    sc = res.sidecar
    status = sc["query_migrate"]["status"]
    check(status == ("failed" if spec.get("allow_failed") else "completed"), f"{name}: migration {status}")

    # what real QEMU makes of the stream: load it, paused, with pc.ram in a shared file
    caps = [c for c in spec["capabilities"] if c != "xbzrle"]  # xbzrle needs nothing on the destination
    loads = []
    verdict = load(q, out, MACHINE, devices=spec.get("devices", ()), memory=MEMORY, capabilities=caps, hash_ram=True, timeout=60)
    loads.append({"capabilities": caps, "accepted": verdict.accepted, "status": verdict.status,
                  "errors": verdict.errors})
    check(verdict.accepted, f"{name}: QEMU 10.0 refuses its own stream: {verdict.errors}")
    if "postcopy-ram" in caps:
        refused = load(q, out, MACHINE, memory=MEMORY, timeout=60)
        loads.append({"capabilities": [], "accepted": refused.accepted, "status": refused.status,
                      "errors": refused.errors})
        check(not refused.accepted, f"{name}: a destination without postcopy-ram accepts it")
    if "ramfb" in spec.get("devices", ()):
        check_screen(name, out, KERNELS[spec["kernel"]])
    if sc["guest_ram"] is not None:
        check(same_ram(sc["guest_ram"], verdict.guest_ram),
              f"{name}: the destination's RAM differs from the source's")
    extra: dict[str, Any] = {"destination_guest_ram": verdict.guest_ram, "qemu_loads": loads}
    if spec.get("min_xbzrle_records"):
        extra["xbzrle_records"] = xbzrle_records(sc)
    recipe = {k: v for k, v in spec.items() if k != "compress"}
    recipe.update(machine=MACHINE, memory=MEMORY, kernel=relpath(OUT / spec.get("kernel", "dirtier.img")),
                  live_seconds=1)
    meta = finish(sc, out, recipe, "tools/captures/make_live.py", extra, compress=spec.get("compress", False))
    counters = sc["query_migrate"] if status == "completed" else sc["query_migrate_last_active"]
    print(f"{name}: {sc['size']} bytes, {status}, syncs {counters['ram']['dirty-sync-count']}"
          f"{', xbzrle records ' + str(extra['xbzrle_records']) if 'xbzrle_records' in extra else ''} -> {meta}")


def main(argv: list[str] | None = None) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for file, (first, end) in KERNELS.items():
        kernel = dirtier.kernel(first, end)
        if not (OUT / file).is_file() or (OUT / file).read_bytes() != kernel:
            (OUT / file).write_bytes(kernel)
    return run_cases(__doc__, OUT, list(CASES), make, argv)


if __name__ == "__main__":
    sys.exit(main())
