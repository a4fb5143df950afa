#!/usr/bin/env python3
"""Benchmark vmig on multi-gigabyte migration streams made by real QEMU.

``make bench`` first makes (or reuses) three streams in a cache directory
(/tmp/vmig-large, or $VMIG_BENCH_DIR), in this order:

* ``large-b.bin``  the large guest with about 1% of its pages changed (below)
* ``large.bin``    pc-q35-10.0 with ``-device ramfb`` and 1 GiB of RAM
* ``medium.bin``   the same recipe with 256 MiB of RAM (64 MiB quarters)

Each is written by QEMU 10.0 itself through the project's capture helper
(``vfio_ramfb_mig.qemu.capture``: a paused VM migrated to a file).  The guest's
RAM is a ``memory-backend-file`` (share=off) over a deterministic image written
next to the streams (``ramfill-*.img``), laid out in quarters from
random.Random(20240101): random pages; zero pages; one random page repeated;
and per page in turn random / zero / filled with one byte / zero except its
last 8 bytes.  The "b" image is the same bytes except every 61st page of the
random quarter re-randomised, every 97th zero page made non-zero and every
89th repeated page zeroed (2,488 of 262,144 pages), drawn from a second
generator, so ``vmig diff large.bin large-b.bin`` has real RAM differences to
find.  A stream's ``.meta.json`` sidecar records its recipe (``bench_recipe``)
and sha256; a stream is reused when both match, and made again otherwise.

Then, after one untimed read of every input (so round 1 does not pay for a
cold page cache), every command runs once per round, round after round
(``--rounds``, default 5), so that load from other processes spreads over all
commands instead of landing on one.  Reported per command: the median wall time,
the median CPU time (user + system, from the same wait4(): on a machine shared with
other work it does not count the waits for a core, so every ratio is shown in CPU
time too; the targets are wall time) and the largest peak RSS (ru_maxrss from
wait4() of that very child).  Linux starts a child's ru_maxrss at the peak RSS of the process that spawned it, so
the commands are spawned by a small separate interpreter (LAUNCHER), whose
~10 MiB is then the floor, instead of by this script.

* ``cat FILE`` > /dev/null                      reading the file: the floor
* ``python -I -c <sha256>`` FILE                a hashlib pass, 1 MiB readinto
                                                chunks, in a child of this
                                                interpreter (so start-up counts
                                                as it does for vmig)
* ``vmig decode FILE`` > /dev/null, ``vmig decode --json FILE`` > /dev/null
* ``python analyze-migration.py -f FILE``       QEMU's own script, only when
                                                $VMIG_BENCH_ANALYZE names it
* ``vmig diff large.bin large-b.bin``           exit 1 (differences) is success
* ``sha256 both``: ONE child hashing both diffed files (one start-up, like diff)
* ``vmig --help``                               start-up time

and on one stream (``--verbs STREAM``; large.bin with the made streams), after
writing its golden beside it and its ``decode --json`` to a scratch directory,
untimed:

* ``vmig golden check FILE``                    against the sha256 pass of FILE
* ``vmig encode --from-json FILE.json``         against ``cp --sparse=always``;
                                                its output must be FILE, byte for byte
* ``vmig diff FILE FILE``                       against one sha256 pass over FILE twice

and the targets: decode/analyze <= 0.2, diff/(sha256 both) <= 1.5 (both pairs),
golden check/sha256 <= 1.5, encode/cp <= 2, peak RSS <= 100 MiB for decode,
diff and golden check and <= 150 MiB for encode, and decode's peak RSS the same
(within 10 MiB) for the 256 MiB and the 1 GiB stream.  Beside the targets, every verb and
yardstick is shown against ``cat`` of the same file (``.../cat`` rows, no target), and
decode/analyze as n/a when $VMIG_BENCH_ANALYZE is not set.  A missed target is reported, not an
error: the exit status is 0 unless a command failed (1) or the streams could
not be made or found (2).  ``vmig`` is the one next to ``sys.executable``
(``.venv/bin/vmig`` under ``make bench``).

Usage::

    make bench                                  # make/reuse the streams, 5 rounds
    make bench BENCH_ARGS='--rounds 3 --json'
    VMIG_BENCH_ANALYZE=/path/to/qemu/scripts/analyze-migration.py make bench
    python tools/bench.py --make-only           # just make the streams
    python tools/bench.py --no-make             # use the cached streams as they are
    python tools/bench.py [--diff A B] [STREAM ...]   # explicit files; nothing is made
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("VMIG_BENCH_DIR") or "/tmp/vmig-large")
SEED = 20240101
MiB = 1 << 20
PAGE = 4096
PAGES_PER_MIB = MiB // PAGE

# Bump when write_ram_image() changes what it writes: cached streams made from
# the old images no longer match their recipe and are made again.
RECIPE_VERSION = 1

# "b" images: (quarter, every Nth page) -> what becomes of the page.  Primes, so
# the changed pages do not line up with the 256-page MiB chunks.
B_RANDOM_EVERY = 61      # random quarter: re-randomised
B_ZERO_EVERY = 97        # zero quarter: made non-zero
B_REPEAT_EVERY = 89      # repeated-page quarter: zeroed

# Targets from the "Multi-gigabyte streams" issue and issue 15 (one home for guest RAM).
DECODE_VS_ANALYZE_MAX = 0.2
DIFF_VS_SHA256_MAX = 1.5
GOLDEN_VS_SHA256_MAX = 1.5
ENCODE_VS_CP_MAX = 2.0
ENCODE_RSS_MAX_MIB = 150
RSS_MAX_MIB = 100
RSS_SAME_SLACK_MIB = 10  # "the same" RSS for 256 MiB and 1 GiB, allowing allocator noise

SHA256_CHILD = """\
import hashlib, sys
buf = bytearray(1 << 20)
view = memoryview(buf)
for path in sys.argv[1:]:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    print(h.hexdigest(), path)
"""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ the RAM images
def write_ram_image(path: Path, mib: int, seed: int = SEED, variant: str = "a") -> None:
    """Write the deterministic RAM image (see the module docstring) to ``path``.

    Variant "a" of 1024 MiB is byte for byte the image the old ``--make-large``
    wrote.  Variant "b" draws exactly the same bytes from ``rng`` and only then
    overwrites the chosen pages with bytes from ``mut``, so every other page is
    identical to "a".
    """
    if variant not in ("a", "b") or mib % 4 or mib < 4:
        raise ValueError(f"bad RAM image recipe: {mib} MiB variant {variant!r}")
    rng = random.Random(seed)
    mut = random.Random(f"{seed}-b")
    changed = variant == "b"
    quarter = mib // 4                                    # MiB per quarter
    zero_page = bytes(PAGE)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:

        def write_mib(chunk: bytes, first_page: int, every: int, new_page) -> None:
            # first_page: the chunk's page number in the image; pages whose number
            # is a multiple of `every` get new_page() in the "b" image.
            if changed:
                buf = bytearray(chunk)
                for p in range(first_page, first_page + PAGES_PER_MIB):
                    if p % every == 0:
                        off = (p - first_page) * PAGE
                        buf[off:off + PAGE] = new_page()
                chunk = buf
            f.write(chunk)

        page = 0
        for _ in range(quarter):                          # random pages
            write_mib(rng.randbytes(MiB), page, B_RANDOM_EVERY, lambda: mut.randbytes(PAGE))
            page += PAGES_PER_MIB
        for _ in range(quarter):                          # zero pages
            write_mib(bytes(MiB), page, B_ZERO_EVERY, lambda: mut.randbytes(PAGE))
            page += PAGES_PER_MIB
        block = rng.randbytes(PAGE) * PAGES_PER_MIB       # one random page, repeated
        for _ in range(quarter):
            write_mib(block, page, B_REPEAT_EVERY, lambda: zero_page)
            page += PAGES_PER_MIB
        tail_page = bytes(PAGE - 8) + bytes(range(1, 9))  # mixed, page by page
        for i in range(page, page + quarter * PAGES_PER_MIB):
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


# --------------------------------------------------------------- the streams
@dataclass(frozen=True)
class Recipe:
    name: str                 # the stream is <name>.bin in the bench directory
    ram_mib: int
    variant: str              # "a" base image, "b" with some pages changed
    seed: int = SEED
    machine: str = "pc-q35-10.0"
    devices: tuple[str, ...] = ("ramfb",)

    def params(self) -> dict:
        """What the sidecar records; a cached stream is reused only if it matches."""
        return {"recipe_version": RECIPE_VERSION, "machine": self.machine,
                "devices": list(self.devices), "ram_mib": self.ram_mib,
                "ram_image": {"seed": self.seed, "variant": self.variant}}

    def stream(self, d: Path) -> Path:
        return d / f"{self.name}.bin"

    def image(self, d: Path) -> Path:
        # ramfill-seed20240101.img is the name the old --make-large used for "a"
        b = "-b" if self.variant == "b" else ""
        size = "" if self.ram_mib == 1024 else f"-{self.ram_mib}m"
        return d / f"ramfill{b}{size}-seed{self.seed}.img"


# Made in this order: large-b first, since others wait for it.
RECIPES = {
    "large-b": Recipe("large-b", 1024, "b"),
    "large": Recipe("large", 1024, "a"),
    "medium": Recipe("medium", 256, "a"),
}


def _qemu_helper():
    sys.path.insert(0, str(ROOT))
    from vfio_ramfb_mig import qemu
    return qemu


def _legacy_large(meta: dict, r: Recipe) -> bool:
    """large.bin from the old ``--make-large`` recorded no recipe; it is recipe "large"."""
    old = meta.get("large_ram_image") or {}
    return (r.variant == "a" and r.ram_mib == 1024 and RECIPE_VERSION == 1
            and old.get("seed") == r.seed and meta.get("machine") == r.machine
            and meta.get("memory") == "1024M" and meta.get("devices") == list(r.devices))


def cached_stream_ok(r: Recipe, d: Path) -> bool:
    """True if <name>.bin exists, its sidecar has this recipe and its sha256 still holds."""
    q = _qemu_helper()
    path, meta_path = r.stream(d), q.sidecar_path(r.stream(d))
    try:
        meta = json.loads(meta_path.read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return False
    recipe = meta.get("bench_recipe")
    legacy = recipe is None and _legacy_large(meta, r)
    if not (recipe == r.params() or legacy) or meta.get("size") != size:
        return False
    if q.sha256_file(path) != meta.get("sha256"):
        log(f"{path.name}: sha256 differs from its sidecar")
        return False
    if legacy:  # record the recipe, so the next run takes the ordinary path
        meta["bench_recipe"] = r.params()
        q.write_sidecar(meta, meta_path)
    return True


def ensure_ram_image(r: Recipe, d: Path) -> Path:
    img = r.image(d)
    stamp = img.with_name(img.name + ".recipe")   # what the image was written from
    want = json.dumps(r.params()["ram_image"] | {"mib": r.ram_mib, "recipe_version": RECIPE_VERSION})
    if img.is_file() and img.stat().st_size == r.ram_mib * MiB and stamp.is_file() \
            and stamp.read_text().strip() == want:
        log(f"reusing RAM image {img}")
        return img
    log(f"writing {r.ram_mib} MiB RAM image {img} (variant {r.variant}, seed {r.seed})")
    write_ram_image(img, r.ram_mib, r.seed, r.variant)
    stamp.write_text(want + "\n")
    return img


def make_stream(r: Recipe, d: Path, timeout: float) -> Path:
    """Reuse <name>.bin if its recipe and sha256 match, else capture it with QEMU 10.0."""
    out = r.stream(d)
    if cached_stream_ok(r, d):
        log(f"reusing {out} (recipe and sha256 match)")
        return out
    q = _qemu_helper()
    binary = q.find_qemu("10.0")
    if binary is None:
        raise RuntimeError("making the benchmark streams needs QEMU 10.0 (qemu-system-x86_64 "
                           "from bookworm-backports, or $VMIG_QEMU_10)")
    d.mkdir(parents=True, exist_ok=True)
    img = ensure_ram_image(r, d)
    extra = ["-object", f"memory-backend-file,id=vmig-ram,size={r.ram_mib}M,mem-path={img},share=off",
             "-machine", "memory-backend=vmig-ram"]
    log(f"capturing {out} with {binary.version_text}")
    t0 = time.perf_counter()
    res = q.capture(binary, out, r.machine, devices=list(r.devices), memory=f"{r.ram_mib}M",
                    extra_args=extra, timeout=timeout)
    res.sidecar["bench_recipe"] = r.params()
    res.sidecar["bench_ram_image"] = {"path": str(img), "sha256": q.sha256_file(img)}
    q.write_sidecar(res.sidecar, q.sidecar_path(out))
    log(f"wrote {out}: {res.size / MiB:.1f} MiB in {time.perf_counter() - t0:.1f}s, sha256 {res.sha256}")
    return out


def make_streams(d: Path, timeout: float) -> dict[str, Path]:
    return {name: make_stream(r, d, timeout) for name, r in RECIPES.items()}


# ------------------------------------------------------------------ timing
@dataclass
class Command:
    label: str                       # row name, e.g. "decode large.bin"
    kind: str                        # cat, sha256, decode, decode --json, analyze, diff, sha256 both, help
    argv: list[str]
    files: list[str] = field(default_factory=list)
    # removed, untimed, before each run: a file system that discards freed blocks (ext4 -o discard)
    # makes replacing the last round's 700 MiB output cost seconds of system time, which is the
    # file system's work, not the command's (it swung cp and encode between 0.4 and 5 s)
    outputs: list[str] = field(default_factory=list)
    ok_exits: tuple[int, ...] = (0,)
    seconds: list[float] = field(default_factory=list)   # one per round
    cpu_seconds: list[float] = field(default_factory=list)  # user + system time of the same runs
    exits: list[int] = field(default_factory=list)
    max_rss_kib: int = 0
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds and not self.error else None

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds and not self.error else None

    @property
    def rss_mib(self) -> float | None:
        return self.max_rss_kib / 1024 if self.max_rss_kib else None


# Linux starts a child's ru_maxrss at the peak RSS of the process that spawned it
# (exec records the old mm's high-water mark), so a command spawned from this
# script could never report less than this script's own peak.  Commands are
# therefore spawned from this small, fresh interpreter, which times each one and
# reports wait4()'s ru_maxrss; its own peak (VmHWM, ~10 MiB) is the floor.
LAUNCHER = """\
import json, os, signal, sys, time
child = 0
timed_out = False
def on_alarm(signum, frame):
    global timed_out
    if child:
        timed_out = True
        os.kill(child, signal.SIGKILL)
signal.signal(signal.SIGALRM, on_alarm)
for line in sys.stdin:
    req = json.loads(line)
    io = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
          (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
          (os.POSIX_SPAWN_OPEN, 2, req["stderr"], os.O_WRONLY | os.O_TRUNC, 0)]
    timed_out = False
    t0 = time.perf_counter()
    try:
        child = os.posix_spawnp(req["argv"][0], req["argv"], os.environ, file_actions=io)
    except OSError as e:
        print(json.dumps({"error": f"cannot run {req['argv'][0]}: {e}"}), flush=True)
        continue
    signal.setitimer(signal.ITIMER_REAL, req["timeout"])
    _, status, ru = os.wait4(child, 0)
    child = 0
    signal.setitimer(signal.ITIMER_REAL, 0)
    secs = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        floor = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    print(json.dumps({"seconds": secs, "cpu_seconds": ru.ru_utime + ru.ru_stime,
                      "exit": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
                      "maxrss_kib": ru.ru_maxrss, "floor_kib": floor}), flush=True)
"""


class Launcher:
    """The small process that runs the timed commands (see LAUNCHER)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.err = tempfile.NamedTemporaryFile(prefix="vmig-bench-", suffix=".stderr")  # noqa: SIM115 (closed in close())
        self.floor_kib = 0

    def run(self, argv: list[str], timeout: float) -> tuple[float, float, int, int, str]:
        """Run argv, stdout to /dev/null: (seconds, CPU seconds, exit status, peak RSS KiB, stderr tail)."""
        self.proc.stdin.write(json.dumps({"argv": argv, "stderr": self.err.name, "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        r = json.loads(line)
        if "error" in r:
            raise OSError(r["error"])
        self.floor_kib = max(self.floor_kib, r["floor_kib"])
        self.err.seek(0)
        tail = self.err.read()[-2000:].decode("utf-8", "replace")
        if r["timed_out"]:
            tail = f"timed out after {timeout:g}s"
        return r["seconds"], r["cpu_seconds"], r["exit"], r["maxrss_kib"], tail

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.err.close()


def run_rounds(commands: list[Command], rounds: int, timeout: float) -> int:
    """Round r runs every command once; a command that fails is dropped from later rounds.

    Returns the launcher's own peak RSS in KiB: no command can report less.
    """
    launcher = Launcher()
    try:
        for n in range(1, rounds + 1):
            log(f"round {n}/{rounds}")
            for c in commands:
                if c.error:
                    continue
                for output in c.outputs:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(output)
                if c.outputs:
                    os.sync()  # the freed blocks are discarded now, not during the timed run
                try:
                    secs, cpu, code, rss, err = launcher.run(c.argv, timeout)
                except OSError as e:
                    c.error = str(e)
                    continue
                c.max_rss_kib = max(c.max_rss_kib, rss)
                c.exits.append(code)
                if code not in c.ok_exits:
                    last = [ln for ln in err.strip().splitlines() if ln.strip()]
                    c.error = f"exit {code}: {last[-1] if last else '(no stderr)'}"
                    continue
                c.seconds.append(secs)
                c.cpu_seconds.append(cpu)
    finally:
        launcher.close()
    return launcher.floor_kib


def vmig_path() -> Path:
    return Path(sys.executable).parent / "vmig"


@dataclass
class Verbs:
    """The verbs timed on one stream beyond decode (issue 15's targets): golden check against
    a golden written beforehand, encode --from-json of its decode --json, and diff with itself;
    with what they are held to: cp --sparse=always of the file and sha256 of it twice."""

    stream: Path
    json: Path          # its `vmig decode --json`, written before the rounds
    work: Path          # a scratch directory for encode's and cp's output

    @property
    def encoded(self) -> Path:
        return self.work / "encoded.bin"


def prepare_verbs(stream: Path, work: Path) -> Verbs:
    """Untimed: the stream's golden beside it (as `golden update` writes it) and its JSON form."""
    vmig = str(vmig_path())
    work.mkdir(parents=True, exist_ok=True)
    verbs = Verbs(stream, work / (stream.stem + ".json"), work)
    subprocess.run([vmig, "golden", "update", str(stream)], check=True, stdout=subprocess.DEVNULL)
    with open(verbs.json, "wb") as out:
        subprocess.run([vmig, "decode", "--json", str(stream)], check=True, stdout=out)
    return verbs


def verbs_commands(v: Verbs) -> list[Command]:
    vmig, py, f = str(vmig_path()), sys.executable, str(v.stream)
    return [
        Command(f"golden check {v.stream.name}", "golden check", [vmig, "golden", "check", f], [f]),
        Command(f"encode --from-json {v.json.name}", "encode", [vmig, "encode", "--from-json", str(v.json),
                                                                 "--source", f, "-o", str(v.encoded)], [f],
                outputs=[str(v.encoded)]),
        Command(f"cp --sparse=always {v.stream.name}", "cp", ["cp", "--sparse=always", f,
                                                               str(v.work / "copy.bin")], [f],
                outputs=[str(v.work / "copy.bin")]),
        Command(f"diff {v.stream.name} {v.stream.name}", "diff self", [vmig, "diff", f, f], [f, f]),
        Command(f"sha256 both {v.stream.name} {v.stream.name}", "sha256 self", [py, "-I", "-c", SHA256_CHILD, f, f],
                [f, f]),
    ]


def build_commands(streams: list[Path], diff_pair: tuple[Path, Path] | None,
                   analyze: Path | None, verbs: Verbs | None = None) -> list[Command]:
    vmig, py = str(vmig_path()), sys.executable
    cmds = []
    for s in streams:
        f = str(s)
        cmds += [
            Command(f"cat {s.name}", "cat", ["cat", f], [f]),
            Command(f"sha256 {s.name}", "sha256", [py, "-I", "-c", SHA256_CHILD, f], [f]),
            Command(f"decode {s.name}", "decode", [vmig, "decode", f], [f]),
            Command(f"decode --json {s.name}", "decode --json", [vmig, "decode", "--json", f], [f]),
        ]
        if analyze:
            cmds.append(Command(f"analyze {s.name}", "analyze", [py, str(analyze), "-f", f], [f]))
    if diff_pair:
        a, b = map(str, diff_pair)
        names = f"{diff_pair[0].name} {diff_pair[1].name}"
        cmds += [
            Command(f"diff {names}", "diff", [vmig, "diff", a, b], [a, b], ok_exits=(0, 1)),
            Command(f"sha256 both {names}", "sha256 both", [py, "-I", "-c", SHA256_CHILD, a, b], [a, b]),
        ]
    if verbs is not None:
        cmds += verbs_commands(verbs)
    cmds.append(Command("vmig --help", "help", [vmig, "--help"]))
    return cmds


# ---------------------------------------------------------------- checks
@dataclass
class Check:
    name: str
    value: float | None
    unit: str                        # "x" for ratios, "MiB"
    target: float | None = None      # value <= target is met
    met: bool | None = None          # None: no target, or not measurable
    cpu_value: float | None = None   # a ratio of CPU time (user + system) instead of wall time


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check(name: str, value: float | None, unit: str, target: float | None = None) -> Check:
    cpu = getattr(value, "cpu", None)  # a _Ratio's
    value = None if value is None else float(value)
    met = None if target is None or value is None else value <= target
    return Check(name, value, unit, target, met, cpu)


class _Ratio(float):
    """A ratio of median wall times that also knows the ratio of median CPU times (`cpu`): on a
    machine shared with other work, wall time counts the waits for a core, CPU time does not."""

    cpu: float | None = None


def _ratio(a: Command | None, b: Command | None) -> _Ratio | None:
    if a is None or b is None or a.median is None or not b.median:
        return None
    ratio = _Ratio(a.median / b.median)
    if a.cpu_median is not None and b.cpu_median:
        ratio.cpu = a.cpu_median / b.cpu_median
    return ratio


def compute_checks(cmds: list[Command], streams: list[Path], diff_pair: tuple[Path, Path] | None,
                   rss_pair: tuple[Path, Path] | None, verbs: Verbs | None = None) -> list[Check]:
    by = {(c.kind, tuple(c.files)): c for c in cmds}
    checks = []
    for s in streams:
        key = (str(s),)
        cat, sha, ana = by.get(("cat", key)), by.get(("sha256", key)), by.get(("analyze", key))
        for kind in ("decode", "decode --json"):
            dec = by.get((kind, key))
            checks.append(_check(f"{kind}/cat {s.name}", _ratio(dec, cat), "x"))
            checks.append(_check(f"{kind}/sha256 {s.name}", _ratio(dec, sha), "x"))
            if ana or kind == "decode":  # not measured without $VMIG_BENCH_ANALYZE: shown as n/a
                checks.append(_check(f"{kind}/analyze {s.name}", _ratio(dec, ana), "x",
                                     DECODE_VS_ANALYZE_MAX))
            checks.append(_check(f"{kind} peak RSS {s.name}", dec and dec.rss_mib, "MiB", RSS_MAX_MIB))
    if diff_pair:
        key = tuple(map(str, diff_pair))
        names = f"{diff_pair[0].name} {diff_pair[1].name}"
        diff, both = by.get(("diff", key)), by.get(("sha256 both", key))
        checks.append(_check(f"diff/(sha256 both) {names}", _ratio(diff, both), "x", DIFF_VS_SHA256_MAX))
        checks.append(_check(f"diff peak RSS {names}", diff and diff.rss_mib, "MiB", RSS_MAX_MIB))
    if verbs is not None:
        f, name = str(verbs.stream), verbs.stream.name
        sha, cp, cat = by.get(("sha256", (f,))), by.get(("cp", (f,))), by.get(("cat", (f,)))
        golden, encode = by.get(("golden check", (f,))), by.get(("encode", (f,)))
        self_diff, self_sha = by.get(("diff self", (f, f))), by.get(("sha256 self", (f, f)))
        checks.append(_check(f"golden check/sha256 {name}", _ratio(golden, sha), "x", GOLDEN_VS_SHA256_MAX))
        checks.append(_check(f"golden check peak RSS {name}", golden and golden.rss_mib, "MiB", RSS_MAX_MIB))
        checks.append(_check(f"encode --from-json/cp {name}", _ratio(encode, cp), "x", ENCODE_VS_CP_MAX))
        checks.append(_check(f"encode --from-json peak RSS {name}", encode and encode.rss_mib, "MiB",
                             ENCODE_RSS_MAX_MIB))
        same = None
        if encode is not None and not encode.error and verbs.encoded.exists():
            same = float(_sha256(verbs.encoded) != _sha256(verbs.stream))  # 0: byte-identical
        checks.append(_check(f"encode --from-json output == {name}", same, "flag", 0))
        checks.append(_check(f"diff/(sha256 both) {name} {name}", _ratio(self_diff, self_sha), "x",
                             DIFF_VS_SHA256_MAX))
        checks.append(_check(f"diff peak RSS {name} {name}", self_diff and self_diff.rss_mib, "MiB", RSS_MAX_MIB))
        # beside the targets, each verb against the floor of reading the file once (cat), and the
        # yardsticks against each other (how much of a target is the machine, not vmig)
        for label, verb in (("golden check", golden), ("encode --from-json", encode), ("diff self", self_diff),
                            ("sha256", sha), ("cp --sparse=always", cp)):
            checks.append(_check(f"{label}/cat {name}", _ratio(verb, cat), "x"))
    if rss_pair:
        small, big = rss_pair
        for kind in ("decode", "decode --json"):
            a, b = by.get((kind, (str(small),))), by.get((kind, (str(big),)))
            grow = b.rss_mib - a.rss_mib if a and b and a.rss_mib and b.rss_mib else None
            checks.append(_check(f"{kind} peak RSS {big.name} - {small.name}", grow, "MiB",
                                 RSS_SAME_SLACK_MIB))
    return checks


# ---------------------------------------------------------------- report
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r))
    return [fmt(header), "-" * len(fmt(header)), *map(fmt, rows)]


def format_report(cmds: list[Command], checks: list[Check], floor_kib: int) -> str:
    rows = []
    for c in cmds:
        size = sum(os.path.getsize(f) for f in c.files) / MiB if c.files else None
        rows.append([c.label, "-" if size is None else f"{size:.1f}",
                     "FAIL" if c.error else f"{c.median:.3f}",
                     "FAIL" if c.error or c.cpu_median is None else f"{c.cpu_median:.3f}", str(len(c.seconds)),
                     f"{c.rss_mib:.1f}" if c.rss_mib else "-",
                     ",".join(map(str, sorted(set(c.exits)))) or "-"])
    out = _table(["command", "MiB", "median s", "median CPU s", "runs", "peak RSS MiB", "exit"], rows)
    out.append(f"(peak RSS is wait4()'s ru_maxrss; a command starts at the peak of the process that "
               f"spawns it, about {floor_kib / 1024:.1f} MiB)")
    rows = []
    for k in checks:
        if k.unit == "flag":  # 0: the output is the input, byte for byte
            val, tgt = ("-" if k.value is None else "identical" if k.value == 0 else "DIFFERENT"), "identical"
        else:
            val = "-" if k.value is None else (f"{k.value:.2f}x" if k.unit == "x" else f"{k.value:.1f} MiB")
            tgt = "" if k.target is None else (f"<= {k.target:g}x" if k.unit == "x" else f"<= {k.target:g} MiB")
        verdict = "" if k.target is None else {True: "met", False: "MISSED", None: "n/a"}[k.met]
        rows.append([k.name, val, tgt, verdict, "" if k.cpu_value is None else f"{k.cpu_value:.2f}x"])
    if rows:
        out += ["", *_table(["check", "value", "target", "", "CPU time ratio"], rows)]
        out.append("(value and target: wall time, the medians' quotient; CPU time ratio: user + system time, "
                   "which a machine busy with other work does not inflate)")
    failed = [c for c in cmds if c.error]
    if failed:
        out += ["", "failures:", *(f"  {c.label}: {c.error}" for c in failed)]
    return "\n".join(out)


def report_json(cmds: list[Command], checks: list[Check], rounds: int, streams: list[Path],
                floor_kib: int) -> dict:
    return {
        "python": platform.python_version(), "cpus": os.cpu_count(), "rounds": rounds,
        "rss_floor_mib": floor_kib / 1024,
        "vmig": str(vmig_path()), "sha256_both": "one child hashing both files",
        "streams": [{"path": str(s), "size": s.stat().st_size} for s in streams],
        "commands": [{"label": c.label, "kind": c.kind, "argv": c.argv[:3] + ["..."] if c.kind.startswith("sha256")
                      else c.argv, "files": c.files, "seconds": c.seconds, "median_s": c.median,
                      "cpu_seconds": c.cpu_seconds, "median_cpu_s": c.cpu_median,
                      "max_rss_mib": c.rss_mib, "exits": c.exits, "error": c.error} for c in cmds],
        "checks": [asdict(k) for k in checks],
    }


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring of tools/bench.py for how the streams are made.")
    ap.add_argument("streams", nargs="*", type=Path,
                    help="streams to time instead of the made ones (nothing is made)")
    ap.add_argument("--diff", nargs=2, type=Path, metavar=("A", "B"),
                    help="the pair for vmig diff (default with made streams: large.bin large-b.bin)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; every command runs once per round")
    ap.add_argument("--no-make", action="store_true", help=f"use the streams in {BENCH_DIR} as they are")
    ap.add_argument("--make-only", action="store_true", help="make (or check) the streams, then stop")
    ap.add_argument("--verbs", type=Path, metavar="STREAM",
                    help="also time golden check, encode --from-json and diff with itself on STREAM (default with "
                         "made streams: large.bin); its golden is written beside it first")
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed for one command or capture")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    explicit = bool(args.streams or args.diff)
    if args.make_only and (explicit or args.no_make):
        ap.error("--make-only makes the cached streams: not with --no-make, STREAMs or --diff")

    rss_pair, verbs_stream = None, args.verbs
    if explicit:
        streams, diff_pair = list(args.streams), (tuple(args.diff) if args.diff else None)
    else:
        if args.no_make:
            made = {name: r.stream(BENCH_DIR) for name, r in RECIPES.items()}
        else:
            try:
                made = make_streams(BENCH_DIR, args.timeout)
            except (RuntimeError, OSError, _qemu_helper().QemuError) as e:  # QEMU missing or failing
                log(f"cannot make the benchmark streams: {e}")
                return 2
        if args.make_only:
            return 0
        streams = [made["large"], made["large-b"], made["medium"]]
        diff_pair, rss_pair = (made["large"], made["large-b"]), (made["medium"], made["large"])
        verbs_stream = verbs_stream or made["large"]

    inputs = [*streams, *(diff_pair or ())]
    missing = [str(p) for p in inputs if not p.is_file()]
    if missing or not inputs:
        log("not found: " + ", ".join(missing) if missing else "no streams to time")
        return 2
    # an editable install has no bytecode, and with PYTHONDONTWRITEBYTECODE (set on these machines)
    # every vmig run would compile its modules again (~30 ms); a regular pip install writes the
    # .pyc files at install time, so write them here too, untimed
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "vfio_ramfb_mig")], check=False)
    for p in dict.fromkeys(inputs):  # read once, untimed: round 1 should not pay for a cold cache
        with open(p, "rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass

    analyze = Path(os.environ["VMIG_BENCH_ANALYZE"]) if os.environ.get("VMIG_BENCH_ANALYZE") else None
    if analyze and not analyze.is_file():
        log(f"$VMIG_BENCH_ANALYZE: {analyze} not found")
        return 2
    log(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.rounds} rounds, "
        f"vmig = {vmig_path()}" + (f", analyze = {analyze}" if analyze else
                                   ", decode/analyze not measured: set $VMIG_BENCH_ANALYZE to QEMU's "
                                   "scripts/analyze-migration.py"))
    with tempfile.TemporaryDirectory(prefix="vmig-bench-") as work:
        verbs = None
        if verbs_stream is not None:
            if not verbs_stream.is_file():
                log(f"not found: {verbs_stream}")
                return 2
            if verbs_stream not in streams:
                streams.append(verbs_stream)  # its sha256 row is the golden check's yardstick
            log(f"writing {verbs_stream.name}'s golden and JSON form (untimed)")
            verbs = prepare_verbs(verbs_stream, Path(work))
        cmds = build_commands(streams, diff_pair, analyze, verbs)
        floor_kib = run_rounds(cmds, args.rounds, args.timeout)
        checks = compute_checks(cmds, streams, diff_pair, rss_pair, verbs)
    if args.json:
        print(json.dumps(report_json(cmds, checks, args.rounds, list(dict.fromkeys(inputs)), floor_kib), indent=2))
    else:
        print(format_report(cmds, checks, floor_kib))
    return 1 if any(c.error for c in cmds) else 0


if __name__ == "__main__":
    sys.exit(main())
