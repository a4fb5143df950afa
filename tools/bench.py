#!/usr/bin/env python3
"""Benchmark ``vmig decode`` against the cost of just reading the stream.

For every stream (default: fixtures/captures/*.bin, plus /tmp/vmig-large/large.bin
when it exists) this times, best of ``--repeat`` runs (default 5):

* ``cat FILE > /dev/null``                 (read the file: the floor)
* hashlib.sha256 over the file, 1 MiB chunks (one cheap pass in Python)
* ``vmig decode --json FILE > /dev/null``
* ``vmig decode FILE > /dev/null``

and prints seconds, the ratios vmig/cat and vmig/sha256, and vmig's peak RSS
(per run, from wait4()).  ``vmig`` is the one next to ``sys.executable``
(i.e. ``.venv/bin/vmig`` under ``make bench``).  A vmig run that fails is
reported for that file; the other files and measurements go on.

``--make-large`` first builds /tmp/vmig-large/large.bin with real QEMU 10.0:
a pc-q35-10.0 guest with 1 GiB of RAM backed by a deterministic 1 GiB file
(random.Random(20240101)): 256 MiB random pages, 256 MiB zero pages, 256 MiB
of one repeated random page, 256 MiB mixed per page (random / zero / filled
with one byte / zero except its last 8 bytes), migrated paused with
``vfio_ramfb_mig.qemu.capture``.

Usage::

    python tools/bench.py [--repeat N] [--json] [--no-vmig] [STREAM ...]
    python tools/bench.py --make-large          # then benchmarks it too
    make bench BENCH_ARGS='--make-large'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "fixtures" / "captures"
LARGE_DIR = Path("/tmp/vmig-large")
LARGE_STREAM = LARGE_DIR / "large.bin"
LARGE_SEED = 20240101
MiB = 1 << 20
PAGE = 4096


# ------------------------------------------------------------------ timing
@dataclass
class Timing:
    seconds: float | None = None      # best of N; None if it failed
    max_rss_kib: int | None = None    # peak RSS of the child (largest over runs)
    error: str | None = None


@dataclass
class FileResult:
    path: str
    size: int
    cat: Timing = field(default_factory=Timing)
    sha256: Timing = field(default_factory=Timing)
    vmig_json: Timing = field(default_factory=Timing)
    vmig_text: Timing = field(default_factory=Timing)


def _run_child(argv: list[str], timeout: float) -> tuple[float, int, int, str]:
    """Run argv with stdout to /dev/null; (seconds, exit status, max RSS KiB, stderr tail)."""
    with open(os.devnull, "wb") as null, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=null, stderr=err)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)  # rusage of this very child
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, _, ru = os.wait4(proc.pid, 0)
                proc.returncode = -9
                return time.perf_counter() - t0, -9, ru.ru_maxrss, f"timed out after {timeout}s"
            time.sleep(0.0005)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return elapsed, proc.returncode, ru.ru_maxrss, err.read().decode("utf-8", "replace")[-2000:]


def time_child(argv: list[str], repeat: int, timeout: float) -> Timing:
    best: float | None = None
    rss = 0
    for _ in range(repeat):
        try:
            secs, rc, maxrss, err = _run_child(argv, timeout)
        except OSError as e:
            return Timing(error=f"cannot run {argv[0]}: {e}")
        rss = max(rss, maxrss)
        if rc != 0:
            last = [ln for ln in err.strip().splitlines() if ln.strip()]
            return Timing(max_rss_kib=rss, error=f"exit {rc}: {last[-1] if last else '(no stderr)'}")
        best = secs if best is None else min(best, secs)
    return Timing(seconds=best, max_rss_kib=rss)


def sha256_pass(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(MiB)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def time_sha256(path: Path, repeat: int) -> Timing:
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        sha256_pass(path)
        secs = time.perf_counter() - t0
        best = secs if best is None else min(best, secs)
    return Timing(seconds=best)


def vmig_path() -> Path:
    return Path(sys.executable).parent / "vmig"


def bench_file(path: Path, repeat: int, timeout: float, with_vmig: bool) -> FileResult:
    res = FileResult(path=str(path), size=path.stat().st_size)
    res.cat = time_child(["cat", str(path)], repeat, timeout)
    res.sha256 = time_sha256(path, repeat)
    if with_vmig:
        vmig = vmig_path()
        if not os.access(vmig, os.X_OK):
            msg = f"{vmig} not found (run inside the venv: make bench)"
            res.vmig_json = Timing(error=msg)
            res.vmig_text = Timing(error=msg)
        else:
            res.vmig_json = time_child([str(vmig), "decode", "--json", str(path)], repeat, timeout)
            res.vmig_text = time_child([str(vmig), "decode", str(path)], repeat, timeout)
    else:
        res.vmig_json = Timing(error="skipped (--no-vmig)")
        res.vmig_text = Timing(error="skipped (--no-vmig)")
    return res


# ------------------------------------------------------------------ report
def _secs(t: Timing) -> str:
    if t.seconds is not None:
        return f"{t.seconds:.4f}"
    return "skip" if t.error and t.error.startswith("skipped") else "FAIL"


def _ratio(a: Timing, b: Timing) -> str:
    if a.seconds is None or not b.seconds:
        return "-"
    return f"{a.seconds / b.seconds:.1f}x"


def _rss(*ts: Timing) -> str:
    vals = [t.max_rss_kib for t in ts if t.max_rss_kib]
    return f"{max(vals) / 1024:.1f}" if vals else "-"


def print_table(results: list[FileResult], out=sys.stdout) -> None:
    cols = ["stream", "MiB", "cat s", "sha256 s", "json s", "json/cat", "json/sha",
            "text s", "text/cat", "text/sha", "vmig RSS MiB"]
    rows = []
    for r in results:
        rows.append([
            Path(r.path).name, f"{r.size / MiB:.2f}", _secs(r.cat), _secs(r.sha256),
            _secs(r.vmig_json), _ratio(r.vmig_json, r.cat), _ratio(r.vmig_json, r.sha256),
            _secs(r.vmig_text), _ratio(r.vmig_text, r.cat), _ratio(r.vmig_text, r.sha256),
            _rss(r.vmig_json, r.vmig_text),
        ])
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cols))
    print(line, file=out)
    print("-" * len(line), file=out)
    for row in rows:
        print("  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(row)),
              file=out)
    failures = [(Path(r.path).name, what, t.error) for r in results
                for what, t in (("cat", r.cat), ("vmig decode --json", r.vmig_json),
                                ("vmig decode", r.vmig_text))
                if t.error and not t.error.startswith("skipped")]
    if failures:
        print("\nfailures:", file=out)
        for name, what, err in failures:
            print(f"  {name}: {what}: {err}", file=out)


# ------------------------------------------------------------- large stream
def make_ram_image(path: Path, seed: int = LARGE_SEED) -> None:
    """Deterministic 1 GiB RAM image; reused when it exists with the same seed."""
    stamp = path.with_name(path.name + ".seed")
    if path.exists() and path.stat().st_size == 1024 * MiB and stamp.exists() \
            and stamp.read_text().strip() == str(seed):
        print(f"[bench] reusing {path}", file=sys.stderr)
        return
    print(f"[bench] writing 1 GiB RAM image {path} (seed {seed})", file=sys.stderr)
    rng = random.Random(seed)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for _ in range(256):                                  # [0, 256) MiB: random
            f.write(rng.randbytes(MiB))
        zero_mib = bytes(MiB)
        for _ in range(256):                                  # [256, 512): zero
            f.write(zero_mib)
        one_page = rng.randbytes(PAGE)                        # [512, 768): one page repeated
        block = one_page * (MiB // PAGE)
        for _ in range(256):
            f.write(block)
        zero_page = bytes(PAGE)                               # [768, 1024): mixed per page
        tail_page = bytes(PAGE - 8) + bytes(range(1, 9))
        first = 768 * MiB // PAGE
        for i in range(first, first + 256 * MiB // PAGE):
            kind = i % 4
            if kind == 0:
                f.write(rng.randbytes(PAGE))
            elif kind == 1:
                f.write(zero_page)
            elif kind == 2:
                f.write(bytes([(i & 0xFF) | 1]) * PAGE)
            else:
                f.write(tail_page)
    os.replace(tmp, path)
    stamp.write_text(f"{seed}\n")


def make_large(out: Path = LARGE_STREAM, seed: int = LARGE_SEED, timeout: float = 900) -> Path:
    sys.path.insert(0, str(ROOT))
    from vfio_ramfb_mig.qemu import capture, find_qemu, sha256_file, sidecar_path, write_sidecar

    q = find_qemu("10.0")
    if q is None:
        raise SystemExit("--make-large needs QEMU 10.0 (qemu-system-x86_64 from bookworm-backports)")
    out.parent.mkdir(parents=True, exist_ok=True)
    img = out.parent / f"ramfill-seed{seed}.img"
    make_ram_image(img, seed)
    extra = ["-object", f"memory-backend-file,id=vmig-ram,size=1G,mem-path={img},share=off",
             "-machine", "memory-backend=vmig-ram"]
    print(f"[bench] capturing {out} with {q.version_text}", file=sys.stderr)
    t0 = time.perf_counter()
    res = capture(q, out, "pc-q35-10.0", devices=["ramfb"], memory="1024M", extra_args=extra,
                  timeout=timeout)
    res.sidecar["large_ram_image"] = {"path": str(img), "seed": seed, "sha256": sha256_file(img)}
    write_sidecar(res.sidecar, sidecar_path(out))
    print(f"[bench] wrote {out}: {res.size / MiB:.1f} MiB in {time.perf_counter() - t0:.1f}s, "
          f"sha256 {res.sha256}", file=sys.stderr)
    return out


# --------------------------------------------------------------------- main
def default_streams() -> list[Path]:
    streams = sorted(CAPTURES.glob("*.bin"))
    if LARGE_STREAM.is_file():
        streams.append(LARGE_STREAM)
    return streams


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("streams", nargs="*", type=Path, help="streams to benchmark (default: see --help)")
    ap.add_argument("-n", "--repeat", type=int, default=5, help="runs per measurement; best is kept")
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed for one vmig run")
    ap.add_argument("--make-large", action="store_true", help=f"build {LARGE_STREAM} with QEMU 10.0 first")
    ap.add_argument("--no-vmig", action="store_true", help="only time cat and sha256")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    if args.make_large:
        make_large()
    streams = args.streams or default_streams()
    if not streams:
        print("no streams to benchmark", file=sys.stderr)
        return 2
    missing = [s for s in streams if not s.is_file()]
    if missing:
        print("not found: " + ", ".join(map(str, missing)), file=sys.stderr)
        return 2

    print(f"[bench] python {platform.python_version()}, {os.cpu_count()} CPUs, best of {args.repeat}, "
          f"vmig = {vmig_path()}", file=sys.stderr)
    results = []
    for s in streams:
        print(f"[bench] {s.name} ...", file=sys.stderr)
        results.append(bench_file(s, args.repeat, args.timeout, not args.no_vmig))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print_table(results)
    failed = [t for r in results for t in (r.cat, r.sha256, r.vmig_json, r.vmig_text)
              if t.error and not t.error.startswith("skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
