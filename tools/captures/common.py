"""What the fixture-making scripts in tools/captures/ share.

Each script drives real QEMU through the project's capture helper
(vfio_ramfb_mig.qemu), then adds to every sidecar what a reader needs to make
the same file again and what tests can check against QEMU itself: the Debian
package versions, the recipe, the script that ran, and (for big streams) how
the file is stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout: python tools/captures/make_*.py

from vfio_ramfb_mig.qemu import sha256_file, sidecar_path, write_sidecar  # noqa: E402

FIXTURES = ROOT / "fixtures"
# Debian packages whose bytes can end up in a stream (binaries, firmware, option ROMs)
PACKAGES = ("qemu-system-x86", "qemu-system-arm", "qemu-system-misc", "qemu-system-ppc", "qemu-system-data", "seabios",
            "qemu-efi-aarch64", "ipxe-qemu")
# QEMU 7.2 is unpacked, not installed: its versions are the ones .ci/run pins
Q72_PACKAGES = {"qemu-system-x86": "1:7.2+dfsg-7+deb12u18+b3", "qemu-system-arm": "1:7.2+dfsg-7+deb12u18+b3",
                "qemu-system-data": "1:7.2+dfsg-7+deb12u18", "seabios": "1.16.2-1",
                "ipxe-qemu": "1.0.0+git-20190125.36a4c85-5.1"}

# A running guest's migration kept iterating until the capture helper's switchover: QEMU completes
# once the pending bytes are below downtime-limit x switchover bandwidth: 1 ms at 1 MB/s is 1000
# bytes, less than one page, yet above 0, so that the end of a pass makes QEMU sync the dirty
# bitmap (and find the guest's pages) rather than complete.  A pass that finds nothing dirty
# completes it all the same: the guest must keep writing.
ITERATE = {"downtime-limit": 1, "max-bandwidth": 8_000_000, "avail-switchover-bandwidth": 1_000_000}
# pages QEMU counts as XBZRLE but does not send as XBZRLE records (trace events, one per page):
# skipped (unchanged since the cached copy) and overflow (the delta too big: sent whole)
XBZRLE_TRACE = ["save_xbzrle_page_skipping", "save_xbzrle_page_overflow"]


def installed_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in PACKAGES:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out[pkg] = res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else None
    return out


def packages_for(qemu_version: str) -> dict[str, Any]:
    """The Debian packages a capture by this QEMU used (7.2: unpacked, plus installed firmware)."""
    installed = installed_versions()
    if qemu_version.startswith("7.2"):
        return {"unpacked_in_/opt/qemu-7.2": dict(Q72_PACKAGES),
                "installed": {"qemu-efi-aarch64": installed["qemu-efi-aarch64"]}}
    return {"installed": installed}


def relpath(path: str | os.PathLike[str]) -> str:
    """A path inside the checkout, relative to it (sidecars must not depend on where it lives)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(path)


def store_xz(raw: Path) -> dict[str, Any]:
    """Replace RAW with RAW.xz (xz -9, CRC64, deterministic); return how it is stored."""
    dest = raw.with_name(raw.name + ".xz")
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(raw, "rb") as src, lzma.open(tmp, "wb", preset=9, check=lzma.CHECK_CRC64) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)
    raw.unlink()
    return {"file": dest.name, "compression": "xz", "size": dest.stat().st_size, "sha256": sha256_file(dest)}


def finish(sidecar: dict[str, Any], stream: Path, recipe: dict[str, Any], script: str,
           extra: dict[str, Any] | None = None, compress: bool = False) -> Path:
    """Complete a capture's sidecar (packages, recipe, script, checks) and write it.

    With ``compress`` the stream is stored as STREAM.xz; ``size`` and
    ``sha256`` stay those of the raw stream, ``stored_as`` describes the file.
    """
    sc = dict(sidecar)
    sc["packages"] = packages_for(sc["qemu"]["version"])
    sc["made_by"] = {"script": script, "recipe": recipe}
    for key in ("kernel", "firmware"):
        if sc.get(key):
            sc[key] = {**sc[key], "path": relpath(sc[key]["path"])}
    sc.update(extra or {})
    sc["stored_as"] = store_xz(stream) if compress else {"file": stream.name, "compression": None,
                                                         "size": sc["size"], "sha256": sc["sha256"]}
    return write_sidecar(sc, sidecar_path(stream))


def capture_twice_alike(capture_fn, out: Path, attempts: int = 6):
    """A paused capture QEMU writes the same way twice in a row.

    QEMU cuts a RAM pass into PART sections by time (it checks the clock every
    64 pages and stops after 50 ms), so on a busy host a capture may hold one
    section more than usual.  The bundled file is the one that comes out the
    same twice in a row, as it does on a quiet machine.
    """
    previous = None
    for _ in range(attempts):
        res = capture_fn(out)
        if previous is not None and res.sha256 == previous:
            return res
        previous = res.sha256
    raise SystemExit(f"{out.name}: no two captures in a row were alike in {attempts} attempts")


def run_cases(doc: str, out: Path, cases: Sequence[str], make: Callable[[str], None],
              argv: list[str] | None = None) -> int:
    """A script's command line: make the cases named (default: all of them) into OUT."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("cases", nargs="*", help=f"default: all of {' '.join(cases)}")
    args = p.parse_args(argv)
    unknown = [c for c in args.cases if c not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {' '.join(cases)}")
    out.mkdir(parents=True, exist_ok=True)
    for case in args.cases or cases:
        make(case)
    return 0


def xbzrle_records(sidecar: dict[str, Any]) -> int:
    """XBZRLE records QEMU wrote: the pages it counts, minus the skipped and the overflowed ones."""
    counts = sidecar["trace_counts"]
    return (sidecar["query_migrate"]["xbzrle-cache"]["pages"] - counts["save_xbzrle_page_skipping"]
            - counts["save_xbzrle_page_overflow"])


def same_ram(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    keys = ("block", "size", "sha256", "nonzero_pages")
    return a is not None and b is not None and all(a[k] == b[k] for k in keys)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"check failed: {what}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
