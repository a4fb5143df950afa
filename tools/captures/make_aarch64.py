"""Make fixtures/aarch64/: streams of aarch64 `virt` machines, written by real QEMU.

Booted (``uefi+ramfb``): ``-accel tcg -cpu cortex-a57 -m 128M -bios QEMU_EFI.fd
-device ramfb -nodefaults -display none`` (128 MiB is the least this AAVMF boots
with: 64 and 96 MiB stop before it sets a mode).  The firmware configures ramfb
(800x600) after ~5 s of TCG and shows the UEFI shell after ~20 s; the helper polls
QEMU's screendump until the screen has settled (three identical dumps a second
apart), stops the guest, saves QEMU's own screendump of that moment
(NAME.screendump.png) and migrates.  QEMU 10.0.2 on virt-8.1 (no ramfb-dev
section: hw_compat_8_1), virt-8.2, virt-10.0 and virt-7.2 (for the cross-version
verdicts); QEMU 7.2.22 on its virt-7.2.  Raw streams are ~28 MB (UEFI fills ~26 MB
of RAM), so they are stored xz'd (NAME.bin.xz, ~2.7 MB).

Paused (``plain``, ``ramfb``): the same command line without firmware, 16 MiB,
``-machine ...,dtb-randomness=off`` (no random seeds in the device tree the machine
leaves in RAM), never run: byte-for-byte reproducible; virt-8.1 and virt-8.2, with
and without ramfb.

Live (``live+xbzrle+ramfb``): the same booted guest, plus a USB keyboard
(``-device qemu-xhci -device usb-kbd``), migrated RUNNING with the xbzrle capability
while its screen changes: once the shell is up, the helper types ``dmem 47800000
800000`` and Enter (QMP send-key), and the shell scrolls a hex dump of the top of
RAM over the ramfb screen for minutes; meanwhile QEMU migrates the guest to a file,
kept iterating (``downtime-limit`` 1 ms, ``avail-switchover-bandwidth`` 1 MB/s,
``max-bandwidth`` 1 MB/s: ~30 s for the first pass) until it has counted 2000
XBZRLE pages, then completes.  The framebuffer's pages go again and again, from the
second pass on as XBZRLE deltas against the copy QEMU cached.  (An idle shell dirties
no page at all: QEMU then completes at the first pass that finds nothing to send, so
the guest must keep drawing.)  Recorded as make_live.py records it: ``guest_ram``,
``trace_counts`` and ``xbzrle_records`` (xbzrle-cache.pages - skipped - overflow);
NAME.screendump.png is the screendump of the destination that loaded the stream
(the source ran on until the end: no picture of it before ``migrate`` shows the
stream's screen).  The script checks that some XBZRLE records fall inside the
framebuffer the stream's ramfb config names, and makes the capture again when they
do not, or when the migration converged on its own.

Each booted sidecar also holds ``guest_ram`` (sha256 of mach-virt.ram, read from its
memory-backend-file after QEMU stopped the guest), ``destination_guest_ram`` and
``destination_screendump`` (a QEMU of the same build that loaded the stream,
paused) and ``qemu_loads`` (virt-7.2: also into the other QEMU build, which refuses
it: 10.0 says "Operation not permitted" for 7.2's cpu state, 7.2 says "Invalid value
274 expecting positive value <= 258" for 10.0's).

    python tools/captures/make_aarch64.py                  # every case
    python tools/captures/make_aarch64.py 10.0/virt-8.2/uefi+ramfb
    python tools/captures/make_aarch64.py 10.0/virt-10.0/live+xbzrle+ramfb
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (FIXTURES, ITERATE, XBZRLE_TRACE, capture_twice_alike, check, finish, run_cases, same_ram,
                    xbzrle_records)

from vfio_ramfb_mig.qemu import CaptureResult, capture, find_aavmf, find_qemu, load, sha256_file

OUT = FIXTURES / "aarch64"
BOOT_MEMORY = "128M"
SCREEN_WAIT = 300  # seconds of TCG at most (about 20 on an idle core)

# "QEMU/machine/variant"
BOOTED = ["10.0/virt-8.1/uefi+ramfb", "10.0/virt-8.2/uefi+ramfb", "10.0/virt-10.0/uefi+ramfb",
          "10.0/virt-7.2/uefi+ramfb", "7.2/virt-7.2/uefi+ramfb"]
PAUSED = ["10.0/virt-8.1/plain", "10.0/virt-8.1/ramfb", "10.0/virt-8.2/plain", "10.0/virt-8.2/ramfb"]
LIVE = ["10.0/virt-10.0/live+xbzrle+ramfb"]
# the running guest: UEFI shell commands typed on a USB keyboard (QEMU key codes), a hex dump of the
# top 8 MiB of RAM (the firmware's code and data: every line differs) that scrolls for minutes
KEYBOARD = ["qemu-xhci", "usb-kbd"]
DMEM = [*"dmem", "spc", *"47800000", "spc", *"800000", "ret"]
LIVE_SPEC: dict[str, Any] = dict(
    capabilities=["xbzrle"], parameters={**ITERATE, "max-bandwidth": 1_000_000}, keys=DMEM, live_seconds=1,
    switchover_after={"xbzrle-cache.pages": 2000}, trace=XBZRLE_TRACE)
MIN_XBZRLE_RECORDS = 1500
ATTEMPTS = 6


def cross_loads(series: str, machine: str, devices: list[str], stream: Path) -> list[dict[str, Any]]:
    """virt-7.2 streams into the other QEMU build (the cross-version verdicts real QEMU gives)."""
    if machine != "virt-7.2":
        return []
    other = find_qemu("7.2" if series == "10.0" else "10.0", arch="aarch64")
    check(other is not None, "both QEMU builds (10.0 and 7.2, aarch64) are installed")
    v = load(other, stream, machine, devices=devices, memory=BOOT_MEMORY, firmware=find_aavmf(), timeout=120)
    return [{"qemu": other.version, "devices": devices, "firmware": "aavmf", "accepted": v.accepted,
             "status": v.status, "errors": v.errors}]


def framebuffer_xbzrle(stream: Path) -> int:
    """XBZRLE records of pages inside the framebuffer the stream's ramfb config names."""
    from vfio_ramfb_mig import ram
    from vfio_ramfb_mig.codec.decode import decode
    from vfio_ramfb_mig.model import RamBody, RamMemSize, RamPages
    from vfio_ramfb_mig.screen.config import choose_display

    decoded = decode(str(stream))
    cfg = choose_display(decoded).cfg
    items = [i for s in decoded.sections if isinstance(s.body, RamBody) for i in s.body.items]
    blocks = {b.idstr: b.used_length for i in items if isinstance(i, RamMemSize) for b in i.blocks}
    found = ram.memory_map(decoded.configuration.machine, blocks).locate(cfg.addr)
    check(found is not None, f"{stream.name}: the framebuffer at {cfg.addr:#x} is in no RAM block")
    region, start = found
    return sum(1 for i in items if isinstance(i, RamPages) and i.kind == "xbzrle" and i.block == region.block
               and start - 4096 < i.offset < start + cfg.size)


def live_capture(case: str, q, machine: str, devices: list[str], fw: Path, out: Path) -> CaptureResult:
    """A capture of the running guest that met its counters (made again when it did not)."""
    for _ in range(ATTEMPTS):
        res = capture(q, out, machine, devices=devices, memory=BOOT_MEMORY, firmware=fw, wait_screen=SCREEN_WAIT,
                      hash_ram=True, timeout=SCREEN_WAIT + 300, **LIVE_SPEC)
        sc = res.sidecar
        if sc["switchover"] is None:
            print(f"  {case}: converged on its own before {LIVE_SPEC['switchover_after']}; again", file=sys.stderr)
        elif xbzrle_records(sc) < MIN_XBZRLE_RECORDS:
            print(f"  {case}: only {xbzrle_records(sc)} XBZRLE records; again", file=sys.stderr)
        elif not framebuffer_xbzrle(out):
            print(f"  {case}: no XBZRLE record inside the framebuffer; again", file=sys.stderr)
        else:
            return res
    raise SystemExit(f"{case}: no capture met its counters in {ATTEMPTS} attempts")


def make(case: str) -> None:
    series, machine, variant = case.split("/")
    q = find_qemu(series, arch="aarch64")
    check(q is not None, f"QEMU {series} aarch64 is installed")
    devices = ["ramfb"] if "ramfb" in variant.split("+") else []
    live = variant.startswith("live")
    if live:
        devices += KEYBOARD
    out = OUT / f"qemu-{q.version}__{machine}__{variant}.bin"
    recipe: dict[str, Any] = {"qemu": series, "arch": "aarch64", "machine": machine, "devices": devices}
    extra: dict[str, Any] = {}
    if variant.startswith("uefi") or live:
        fw = find_aavmf()
        check(fw is not None, "AAVMF (qemu-efi-aarch64) is installed")
        png = out.with_suffix(".screendump.png")
        if live:
            res = live_capture(case, q, machine, devices, fw, out)
            extra["xbzrle_records"] = xbzrle_records(res.sidecar)
        else:
            res = capture(q, out, machine, devices=devices, memory=BOOT_MEMORY, firmware=fw,
                          wait_screen=SCREEN_WAIT, screendump=png, hash_ram=True, timeout=SCREEN_WAIT + 120)
            png.chmod(0o644)
        # real QEMU of the same build loads it; its memory and screen are the stream's
        with tempfile.TemporaryDirectory(prefix="captures-aarch64-") as tmp:
            dest_png = Path(tmp) / "dest.png"
            v = load(q, out, machine, devices=devices, memory=BOOT_MEMORY, firmware=fw, hash_ram=True,
                     screendump=dest_png, timeout=120)
            check(v.accepted, f"{case}: QEMU refuses its own stream: {v.errors}")
            check(same_ram(res.sidecar["guest_ram"], v.guest_ram), f"{case}: destination RAM differs")
            if live:  # the source ran on until the switchover: the destination's is the stream's screen
                png.write_bytes(dest_png.read_bytes())
                png.chmod(0o644)
                extra["destination_screendump"] = {"file": png.name, "sha256": sha256_file(dest_png)}
            else:
                extra["destination_screendump"] = {"sha256": sha256_file(dest_png),
                                                   "same_as_source": dest_png.read_bytes() == png.read_bytes()}
        extra["destination_guest_ram"] = v.guest_ram
        extra["qemu_loads"] = [{"devices": devices, "firmware": "aavmf", "accepted": v.accepted,
                                "status": v.status, "errors": v.errors},
                               *cross_loads(series, machine, devices, out)]
        recipe.update(memory=BOOT_MEMORY, firmware="aavmf", wait_screen=SCREEN_WAIT, screendump=png.name,
                      hash_ram=True)
        if live:
            recipe.update(LIVE_SPEC, screendump=f"{png.name} (the destination's)",
                          min_xbzrle_records=MIN_XBZRLE_RECORDS)
        compress = True
    else:
        # without dtb-randomness=off the device tree in guest RAM holds fresh random seeds each time
        res = capture_twice_alike(
            lambda path: capture(q, path, machine, devices=devices, machine_options=["dtb-randomness=off"]), out)
        v = load(q, out, machine, devices=devices)
        check(v.accepted, f"{case}: QEMU refuses its own stream: {v.errors}")
        extra["qemu_loads"] = [{"devices": devices, "accepted": v.accepted, "status": v.status, "errors": v.errors}]
        recipe.update(memory="16M", machine_options=["dtb-randomness=off"])
        compress = False
    meta = finish(res.sidecar, out, recipe, "tools/captures/make_aarch64.py", extra, compress=compress)
    screen = res.sidecar.get("screen") or {}
    print(f"{case}: {res.size} bytes{', screen ' + str(screen.get('size')) + ' after ' + str(screen.get('settled_after_s')) + ' s' if screen else ''} -> {meta}")


def main(argv: list[str] | None = None) -> int:
    return run_cases(__doc__, OUT, PAUSED + BOOTED + LIVE, make, argv)


if __name__ == "__main__":
    sys.exit(main())
