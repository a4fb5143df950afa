#!/usr/bin/env python3
"""Measure how vmig reads a multi-GiB compressed save: time, memory and temp space (issue 13 #5).

Makes (or reuses) in $VMIG_BENCH_DIR (default /tmp/vmig-large) the stream of a paused guest
with --ram-mib MiB of RAM (default 4096), captured by QEMU 10.0 from tools/bench.py's RAM image
recipe (quarters of random, zero, repeated and mixed pages), and compresses it as a save is
(``migrate exec:zstd > FILE``, libvirt's zstd or gzip save formats): ``huge-<N>m.bin.zst``
(zstd -3) and ``.gz`` (gzip -1). The plain stream is kept beside them as the reference.

Then runs, once each, with $TMPDIR set to a directory of its own:

* the floor: ``zstd -dc`` / ``gzip -dc`` of the compressed file to /dev/null
* ``vmig decode --summary`` of the plain file (read in place), of each compressed file and of
  the zstd data piped into stdin (``-``), ``vmig check`` and ``vmig info`` of the zstd file:
  verbs that read forward, so a compressed or piped input takes a window of temp space
* ``vmig decode --json`` of the zstd file: a verb that reads by offset, so the whole stream
  is copied into temp space first (the comparison)

and reports for each: wall time, peak RSS (wait4()'s ru_maxrss; a child starts at the peak of
this small script, printed as the floor) and peak temp space (the disk blocks of the deleted
temporary files the process holds open in its $TMPDIR, polled every 10 ms). The summaries of
the compressed and piped inputs must be the summary of the plain file, byte for byte.

Usage::

    python tools/bench_streaming.py [--ram-mib 4096] [--json]
    python tools/bench_streaming.py --stream /tmp/vmig-large/large.bin   # tools/bench.py's stream

``--stream`` takes a plain stream already made (e.g. by tools/bench.py) instead of capturing
one; its compressed copies are written beside it, or in --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
POLL = 0.01


def _load_bench():
    spec = importlib.util.spec_from_file_location("vmig_bench", ROOT / "tools" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()
log = bench.log


@dataclass
class Run:
    label: str
    argv: list[str]
    stdin_argv: list[str] | None = None  # a producer piped into the command's stdin
    seconds: float = 0.0
    exit: int | None = None
    rss_mib: float = 0.0
    temp_mib: float = 0.0
    stdout: str | None = None            # kept for the summaries, which are compared
    error: str | None = None


def _temp_bytes(pid: int, tmpdir: str) -> int:
    """Disk blocks of the deleted files in `tmpdir` that process `pid` holds open, each file once
    (a mapping holds a second descriptor of its file: mmap dups it)."""
    blocks: dict[tuple[int, int], int] = {}
    fds = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return 0
    for n in names:
        try:
            target = os.readlink(f"{fds}/{n}")
            if target.startswith(tmpdir + "/"):
                st = os.stat(f"{fds}/{n}")
                blocks[st.st_dev, st.st_ino] = st.st_blocks * 512
        except OSError:
            continue
    return sum(blocks.values())


def run(r: Run, tmpdir: str, keep_stdout: bool, timeout: float) -> None:
    env = dict(os.environ, TMPDIR=tmpdir)
    producer = None
    stdin = subprocess.DEVNULL
    if r.stdin_argv:
        producer = subprocess.Popen(r.stdin_argv, stdout=subprocess.PIPE, env=env)
        stdin = producer.stdout
    out = tempfile.TemporaryFile(prefix="vmig-bench-out-") if keep_stdout else None
    err = tempfile.TemporaryFile(prefix="vmig-bench-err-")
    t0 = time.perf_counter()
    proc = subprocess.Popen(r.argv, stdin=stdin, stdout=out or subprocess.DEVNULL, stderr=err, env=env)
    if producer is not None:
        producer.stdout.close()  # the command holds the read end now
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _temp_bytes(proc.pid, tmpdir))
            time.sleep(POLL)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    r.seconds = time.perf_counter() - t0
    done.set()
    poller.join()
    proc.returncode = r.exit = os.waitstatus_to_exitcode(status)
    if producer is not None:
        producer.wait()
    r.rss_mib, r.temp_mib = usage.ru_maxrss / 1024, peak[0] / MiB
    if r.exit != 0:
        err.seek(0)
        lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        r.error = f"exit {r.exit}: {lines[-1] if lines else '(no stderr)'}"
    if out is not None:
        out.seek(0)
        r.stdout = out.read().decode("utf-8", "replace")
        out.close()
    err.close()


def make_inputs(d: Path, ram_mib: int, timeout: float, stream: Path | None = None,
                out_dir: Path | None = None) -> tuple[Path, Path, Path]:
    if stream is None:
        plain = bench.make_stream(bench.Recipe(f"huge-{ram_mib}m", ram_mib, "a"), d, timeout)
    else:
        plain = stream
    packed = []
    for suffix, argv in ((".zst", ["zstd", "-q", "-3", "-T2", "-c"]), (".gz", ["gzip", "-1", "-c"])):
        out = (out_dir or plain.parent) / (plain.name + suffix)
        stamp = out.with_name(out.name + ".of")  # the plain stream's size and time it was made from
        want = f"{plain.stat().st_size} {plain.stat().st_mtime_ns}\n"
        if not (out.is_file() and stamp.is_file() and stamp.read_text() == want):
            log(f"compressing {plain.name} -> {out.name}")
            with open(out, "wb") as f:
                subprocess.run([*argv, str(plain)], stdout=f, check=True)
            stamp.write_text(want)
        packed.append(out)
    return plain, packed[0], packed[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ram-mib", type=int, default=4096, help="the guest's RAM (a multiple of 4)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed for the capture or one command")
    ap.add_argument("--stream", type=Path, help="a plain stream to use instead of capturing one")
    ap.add_argument("--out", type=Path, help="where the compressed copies and temp space go (default: beside "
                    "the stream)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    for tool in ("zstd", "gzip"):
        if shutil.which(tool) is None:
            log(f"{tool} is needed (apt-get install {tool})")
            return 2
    d = args.out or bench.BENCH_DIR
    d.mkdir(parents=True, exist_ok=True)
    try:
        plain, zst, gz = make_inputs(d, args.ram_mib, args.timeout, args.stream, args.out)
    except (RuntimeError, OSError, subprocess.CalledProcessError, bench._qemu_helper().QemuError) as e:
        log(f"cannot make the stream: {e}")
        return 2
    vmig = str(bench.vmig_path())
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "vfio_ramfb_mig")], check=False)
    runs = [
        Run(f"zstd -dc {zst.name}", ["zstd", "-dc", str(zst)]),
        Run(f"gzip -dc {gz.name}", ["gzip", "-dc", str(gz)]),
        Run(f"decode --summary {plain.name}", [vmig, "decode", "--summary", str(plain)]),
        Run(f"decode --summary {zst.name}", [vmig, "decode", "--summary", str(zst)]),
        Run(f"decode --summary {gz.name}", [vmig, "decode", "--summary", str(gz)]),
        Run(f"zstd -dc {zst.name} | decode --summary -", [vmig, "decode", "--summary", "-"],
            stdin_argv=["zstd", "-dc", str(zst)]),
        Run(f"check {zst.name}", [vmig, "check", "--device", "ramfb", str(zst)]),  # the recipe's guest has one
        Run(f"info {zst.name}", [vmig, "info", str(zst)]),
        Run(f"decode --json {zst.name}", [vmig, "decode", "--json", str(zst)]),
    ]
    with open("/proc/self/status") as f:
        floor = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
    with tempfile.TemporaryDirectory(prefix="vmig-bench-tmp-", dir=d) as tmpdir:
        for r in runs:
            log(f"running {r.label}")
            run(r, tmpdir, keep_stdout="--summary" in r.argv, timeout=args.timeout)
    def unnamed(text: str | None) -> str | None:  # the first line names the input: "PATH: N bytes"
        return None if text is None else text.partition(": ")[2]

    reference = unnamed(runs[2].stdout)
    same = {r.label: unnamed(r.stdout) == reference for r in runs if r.stdout is not None and r is not runs[2]}
    result = {"stream": {"path": str(plain), "size": plain.stat().st_size},
              "compressed": [{"path": str(p), "size": p.stat().st_size} for p in (zst, gz)],
              "rss_floor_mib": floor, "cpus": os.cpu_count(),
              "runs": [{k: v for k, v in asdict(r).items() if k != "stdout"} for r in runs],
              "summary_equals_plain": same}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"stream {plain.name}: {plain.stat().st_size / MiB:.1f} MiB; "
              + ", ".join(f"{p.name}: {p.stat().st_size / MiB:.1f} MiB" for p in (zst, gz)))
        rows = [[r.label, "FAIL" if r.error else f"{r.seconds:.1f}", f"{r.rss_mib:.1f}", f"{r.temp_mib:.1f}"]
                for r in runs]
        print("\n".join(bench._table(["command", "s", "peak RSS MiB", "peak temp MiB"], rows)))
        print(f"(peak RSS is wait4()'s ru_maxrss, from a floor of {floor:.1f} MiB; temp space polled "
              f"every {POLL * 1000:g} ms)")
        for label, ok in same.items():
            print(f"{label}: {'the same summary as the plain file' if ok else 'A DIFFERENT SUMMARY'}")
        for r in runs:
            if r.error:
                print(f"{r.label}: {r.error}")
    return 1 if any(r.error for r in runs) or not all(same.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
