"""Drive real QEMU binaries: capture migration streams, load them, dump vmstate.

This is vmig's *capture helper*.  It talks to an unmodified, distribution-built
QEMU over QMP on stdio (no sockets, no network), so every stream it writes and
every verdict it reports comes from the program that defines the format.
Standard library only, but for qemurun (every QEMU runs as a `qemurun.QemuRun`:
its own process group, killed on every path; failures are `errors.QemuError`)
and outfile's rule for a new file's mode (0666 less the umask): the streams and
dumps it writes are output files like vmig's own.

Supported QEMU series and architectures (see ``.ci/run`` for how CI installs
them):

``10.0``
    ``qemu-system-x86_64`` / ``qemu-system-aarch64`` on ``PATH`` (Debian
    bookworm-backports packages qemu-system-x86 / qemu-system-arm), or the
    binary named by ``VMIG_QEMU_10`` / ``VMIG_QEMU_10_AARCH64``.  Migrates with
    ``uri file:PATH``.
``7.2``
    ``/opt/qemu-7.2/usr/bin/qemu-system-x86_64`` / ``qemu-system-aarch64``
    (Debian bookworm packages unpacked with ``dpkg -x``), or the binary named by
    ``VMIG_QEMU_72`` / ``VMIG_QEMU_72_AARCH64``.  It always gets ``-L`` for its
    own firmware directories (``/opt/qemu-7.2/usr/share/qemu``,
    ``.../share/seabios``, ``.../lib/ipxe/qemu``; override with
    ``VMIG_QEMU_72_DATADIR``, ``:``-separated), otherwise it would pick up
    10.0's firmware.  7.2 has no ``file:`` URI, so it migrates with
    ``exec:cat > PATH``.

The architecture comes from the binary's name (``qemu-system-ARCH``).  aarch64
runs get ``-cpu cortex-a57`` unless another ``cpu`` is given (``virt``'s own
default is the 32-bit cortex-a15).  ``firmware`` becomes ``-bios PATH``; the
UEFI build for aarch64 ``virt`` is AAVMF (Debian's qemu-efi-aarch64,
:func:`find_aavmf`, env ``VMIG_AAVMF``).

Every QEMU run uses ``-accel tcg -m 16M -nodefaults -display none -net none
-no-user-config -rtc base=2024-01-01T00:00:00,clock=vm``; captures also use
``-S`` and ``max-bandwidth`` 8 GiB/s.  A paused capture never runs the guest,
so it is byte-for-byte reproducible with the same QEMU and firmware packages.

Command line::

    # capture: writes out.bin and out.meta.json (sidecar: how it was made)
    python -m vfio_ramfb_mig.qemu capture --qemu 10.0 --machine pc-q35-8.2 \\
        --device ramfb -o out.bin
    python -m vfio_ramfb_mig.qemu capture --qemu 10.0 --machine pc-q35-7.2 \\
        --device ramfb,x-migrate=on --booted 4 -o booted.bin
    python -m vfio_ramfb_mig.qemu capture --qemu 10.0 --arch aarch64 \\
        --machine virt-8.2 --device ramfb -o virt.bin
    #   more knobs: --global migration.send-section-footer=off, --cap NAME,
    #   --param NAME=VALUE, --suppress-vmdesc, --memory 16M, --timeout 60,
    #   --extra-arg=-uuid --extra-arg=...

    # load: the verdict real QEMU gives (exit 0 accepted, 1 refused, 2 error)
    python -m vfio_ramfb_mig.qemu load --qemu 7.2 --machine pc-q35-7.2 \\
        --device ramfb stream.bin

    # which binaries are found, and -dump-vmstate
    python -m vfio_ramfb_mig.qemu find
    python -m vfio_ramfb_mig.qemu dump-vmstate --qemu 10.0 --machine pc-q35-8.2 \\
        -o vmstate.json.gz

``--qemu`` takes ``10.0``, ``7.2`` or a path to a QEMU binary; ``--arch``
(``x86_64``, the default, or ``aarch64``) picks the series' binary.

Python::

    from vfio_ramfb_mig.qemu import find_qemu, capture, load
    q10 = find_qemu("10.0")
    res = capture(q10, "out.bin", "pc-q35-8.2", devices=["ramfb"])
    a10 = find_qemu("10.0", arch="aarch64")
    res = capture(a10, "virt.bin", "virt-8.2", devices=["ramfb"])
    verdict = load(find_qemu("7.2"), "out.bin", "pc-q35-7.2")
    verdict.accepted, verdict.status, verdict.stderr
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import QemuError
from .outfile import new_file_mode
from .qemurun import QemuRun, run_once

__all__ = [
    "AAVMF_DEFAULT",
    "ARCHES",
    "BASE_ARGS",
    "MAX_BANDWIDTH",
    "RTC",
    "CaptureResult",
    "LoadResult",
    "QemuBinary",
    "QemuError",
    "arch_of",
    "capture",
    "dump_vmstate",
    "find_aavmf",
    "find_qemu",
    "load",
    "qemu_env_var",
    "qemu_from_path",
    "sha256_file",
    "sidecar_path",
    "write_sidecar",
]

RTC = "base=2024-01-01T00:00:00,clock=vm"
MAX_BANDWIDTH = 8 * 1024 * 1024 * 1024  # bytes/s; speed only, not the format
BASE_ARGS: tuple[str, ...] = (
    "-accel", "tcg",
    "-nodefaults", "-display", "none", "-net", "none", "-no-user-config",
)
ARCHES = ("x86_64", "aarch64")
QEMU_10_DEFAULT = "qemu-system-x86_64"
QEMU_72_PREFIX = Path("/opt/qemu-7.2/usr")
QEMU_72_DEFAULT = QEMU_72_PREFIX / "bin" / "qemu-system-x86_64"
# series -> arch -> (environment variable naming the binary, default binary)
_BINARIES: dict[str, dict[str, tuple[str, str]]] = {
    "10.0": {"x86_64": ("VMIG_QEMU_10", QEMU_10_DEFAULT),
             "aarch64": ("VMIG_QEMU_10_AARCH64", "qemu-system-aarch64")},
    "7.2": {"x86_64": ("VMIG_QEMU_72", str(QEMU_72_DEFAULT)),
            "aarch64": ("VMIG_QEMU_72_AARCH64", str(QEMU_72_PREFIX / "bin" / "qemu-system-aarch64"))},
}
# -cpu when none is given: virt's own default CPU is the 32-bit cortex-a15
DEFAULT_CPU = {"aarch64": "cortex-a57"}
# the RAM block of guest memory (the machine's default RAM backend id): a
# memory-backend-file with this id keeps the stream's block name unchanged
MAIN_RAM_ID = {"x86_64": "pc.ram", "aarch64": "mach-virt.ram"}
# downtime-limit (ms) that lets a running migration finish at once (switchover_after)
SWITCHOVER_DOWNTIME_MS = 60_000
# seconds between two keys typed (capture's keys): a USB keyboard's queue holds a few, and the
# guest's firmware polls it on a timer
_KEY_INTERVAL = 0.2
# UEFI for aarch64 virt (Debian's qemu-efi-aarch64, "AAVMF"); env VMIG_AAVMF overrides
AAVMF_DEFAULT = Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
QEMU_72_DATADIRS = (
    QEMU_72_PREFIX / "share" / "qemu",
    QEMU_72_PREFIX / "share" / "seabios",
    QEMU_72_PREFIX / "lib" / "ipxe" / "qemu",
)
SIDECAR_FORMAT = "vmig-capture/1"
_VERSION_RE = re.compile(r"QEMU emulator version (\d+)\.(\d+)\.(\d+)")
_ARCH_RE = re.compile(r"qemu-system-([a-z0-9_]+)$")
_FINAL_STATES = ("completed", "failed", "cancelled")
_POLL = 0.05


# --------------------------------------------------------------------- binaries
@dataclass(frozen=True)
class QemuBinary:
    """One QEMU system emulator binary and how to invoke it."""

    path: str                      # absolute path of the binary
    version: str                   # "10.0.2"
    version_text: str              # first line of --version
    datadirs: tuple[str, ...] = ()  # each becomes one -L
    argv_prefix: tuple[str, ...] = ()  # path + -L dirs
    arch: str = "x86_64"           # target architecture: "x86_64", "aarch64", ...

    @property
    def default_cpu(self) -> str | None:
        """The ``-cpu`` vmig passes when none is given (None: QEMU's default)."""
        return DEFAULT_CPU.get(self.arch)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.version.split("."))

    @property
    def series(self) -> str:
        """``"10.0"`` for 10.0.2."""
        return ".".join(self.version.split(".")[:2])

    @property
    def has_file_uri(self) -> bool:
        """``file:`` migration URIs exist from QEMU 8.2 on."""
        return self.version_tuple[:2] >= (8, 2)

    def machines(self, timeout: float = 30) -> list[str]:
        """Machine types this binary knows (``-machine help``)."""
        _, out, _ = run_once([*self.argv_prefix, "-machine", "help"], timeout=timeout, what="-machine help")
        names = []
        for line in out.splitlines()[1:]:
            if line.strip():
                names.append(line.split()[0])
        return names


def arch_of(binary: str | os.PathLike[str]) -> str:
    """The target architecture a QEMU binary's name says (``qemu-system-aarch64`` -> aarch64).

    Distribution wrappers without the usual name (``qemu-kvm``) emulate the host.
    """
    m = _ARCH_RE.search(os.path.basename(str(binary)))
    return m.group(1) if m else platform.machine()


def qemu_from_path(path: str | os.PathLike[str], datadirs: Iterable[str | os.PathLike[str]] = (),
                   timeout: float = 30, arch: str | None = None) -> QemuBinary:
    """Build a :class:`QemuBinary` for ``path`` (a file or a name on PATH); raises QemuError.

    ``arch`` defaults to what the binary's name says (:func:`arch_of`).
    """
    p = str(path)
    resolved = shutil.which(p) if os.sep not in p else (p if os.access(p, os.X_OK) else None)
    if not resolved or not os.path.isfile(resolved):
        raise QemuError(f"QEMU binary {p!r} not found or not executable")
    resolved = os.path.abspath(resolved)
    dirs = tuple(os.path.abspath(str(d)) for d in datadirs)
    prefix = [resolved]
    for d in dirs:
        prefix += ["-L", d]
    status, out, err = run_once([*prefix, "--version"], timeout=timeout, what=f"{resolved} --version")
    first = out.splitlines()[0] if out.strip() else ""
    m = _VERSION_RE.search(first)
    if status != 0 or not m:
        raise QemuError(f"{resolved} --version gave no QEMU version", stderr=err + out, argv=[*prefix, "--version"],
                        returncode=status)
    return QemuBinary(path=resolved, version=".".join(m.groups()), version_text=first.strip(),
                      datadirs=dirs, argv_prefix=tuple(prefix), arch=arch or arch_of(p))


def _datadirs_72(binary: str, env_name: str, default: str) -> list[str]:
    env = os.environ.get("VMIG_QEMU_72_DATADIR")
    if env:
        return [d for d in env.split(":") if d]
    if Path(binary).resolve() == Path(default).resolve() or not os.environ.get(env_name):
        dirs = list(QEMU_72_DATADIRS)
    else:  # an unpacked tree elsewhere: PREFIX/bin/qemu -> PREFIX/share/...
        prefix = Path(binary).resolve().parent.parent
        dirs = [prefix / "share" / "qemu", prefix / "share" / "seabios", prefix / "lib" / "ipxe" / "qemu"]
    return [str(d) for d in dirs if d.is_dir()]


def _series(version: str) -> str:
    series = {"10.0": "10.0", "10": "10.0", "7.2": "7.2", "7": "7.2"}.get(version)
    if series is None:
        raise ValueError(f"unknown QEMU series {version!r} (want '10.0' or '7.2')")
    return series


def qemu_env_var(version: str, arch: str = "x86_64") -> str:
    """The environment variable that names the binary of a series and architecture."""
    return _BINARIES[_series(version)][_check_arch(arch)][0]


def _check_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r} (want one of {', '.join(ARCHES)})")
    return arch


def find_qemu(version: str, strict: bool = True, arch: str = "x86_64") -> QemuBinary | None:
    """The QEMU binary for series ``"10.0"`` or ``"7.2"`` and ``arch``, or None if absent.

    With ``strict`` (default) a binary whose ``--version`` is another series
    counts as absent.
    """
    series = _series(version)
    env_name, default = _BINARIES[series][_check_arch(arch)]
    binary = os.environ.get(env_name) or default
    dirs = _datadirs_72(binary, env_name, default) if series == "7.2" else []
    try:
        q = qemu_from_path(binary, dirs, arch=arch)
    except QemuError:
        return None
    if strict and q.series != series:
        return None
    return q


def find_aavmf() -> Path | None:
    """AAVMF, the UEFI firmware for aarch64 ``virt`` (``-bios``), or None if absent."""
    p = Path(os.environ.get("VMIG_AAVMF") or AAVMF_DEFAULT)
    return p if p.is_file() else None


def _resolve_qemu(spec: str | QemuBinary, arch: str = "x86_64") -> QemuBinary:
    if isinstance(spec, QemuBinary):
        return spec
    if spec in ("10.0", "10", "7.2", "7"):
        q = find_qemu(spec, arch=arch)
        if q is None:
            raise QemuError(f"QEMU {spec} {arch} not found (see .ci/run for how to install it; "
                            f"env {qemu_env_var(spec, arch)} overrides)")
        return q
    return qemu_from_path(spec)


# ------------------------------------------------------------------ helpers
def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def sidecar_path(stream_path: str | os.PathLike[str]) -> Path:
    """``x.bin`` -> ``x.meta.json``; any other name gets ``.meta.json`` appended."""
    p = Path(stream_path)
    if p.suffix == ".bin":
        return p.with_suffix(".meta.json")
    return p.with_name(p.name + ".meta.json")


def write_sidecar(sidecar: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a sidecar dict as indented JSON, atomically."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, p)
    return p


def _firmware_info(firmware: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """Path and sha256 of a ``-bios`` image, for sidecars (its bytes end up in the stream)."""
    if not firmware:
        return None
    path = os.path.realpath(firmware)
    return {"path": os.path.abspath(firmware), "realpath": path, "sha256": sha256_file(path)}


def _caps_arg(capabilities: Iterable[str | tuple[str, bool]]) -> list[dict[str, Any]]:
    caps = []
    for c in capabilities:
        name, state = (c, True) if isinstance(c, str) else (c[0], bool(c[1]))
        caps.append({"capability": name, "state": state})
    return caps


def _vm_args(qemu: QemuBinary, machine: str, memory: str, globals_: Iterable[str],
             devices: Iterable[str], extra_args: Iterable[str], mode_args: Iterable[str],
             cpu: str | None = None, firmware: str | os.PathLike[str] | None = None) -> list[str]:
    # same order as the bundled captures' argv: machine, base options, mode, globals, devices
    argv = [*qemu.argv_prefix, "-machine", machine, "-accel", "tcg"]
    cpu = cpu or qemu.default_cpu
    if cpu:
        argv += ["-cpu", cpu]
    if firmware:
        argv += ["-bios", os.path.abspath(firmware)]
    argv += ["-m", memory, *BASE_ARGS[2:], *mode_args]
    for g in globals_:
        argv += ["-global", g]
    for d in devices:
        argv += ["-device", d]
    argv += list(extra_args)
    return argv


def _file_info(path: str | os.PathLike[str] | None) -> dict[str, str] | None:
    if not path:
        return None
    return {"path": os.path.abspath(path), "sha256": sha256_file(path)}


def _scratch_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A private temporary directory, on tmpfs (/dev/shm) when there is one: QEMU accepts
    postcopy-ram only for RAM backed by tmpfs or hugetlbfs files."""
    shm = "/dev/shm"
    on_tmpfs = os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=shm if on_tmpfs else None)


def _ram_backend_args(qemu: QemuBinary, memory: str, ram_path: str) -> list[str]:
    """Guest RAM in a shared file: QEMU's own memory, readable after the VM stopped."""
    ram_id = MAIN_RAM_ID.get(qemu.arch)
    if ram_id is None:
        raise QemuError(f"no main RAM block name known for {qemu.arch}")
    return ["-object", f"memory-backend-file,id={ram_id},size={memory},mem-path={ram_path},share=on",
            "-machine", f"memory-backend={ram_id}"]


def guest_ram_digest(path: str | os.PathLike[str], block: str, chunk: int = 1 << 20,
                     page: int = 4096) -> dict[str, Any]:
    """sha256 of a guest RAM image, whole and per MiB (to say where two images differ),
    and how many of its ``page``-sized pages are not all zero."""
    whole = hashlib.sha256()
    per_mib = []
    size = nonzero = 0
    zero_page = bytes(page)
    with open(path, "rb") as f:
        while data := f.read(chunk):
            whole.update(data)
            per_mib.append(hashlib.sha256(data).hexdigest())
            size += len(data)
            nonzero += sum(1 for o in range(0, len(data), page) if data[o:o + page] != zero_page)
    return {"block": block, "size": size, "sha256": whole.hexdigest(), "nonzero_pages": nonzero,
            "page_size": page, "sha256_per_mib": per_mib}


def _migrate_value(mig: Mapping[str, Any], key: str) -> int:
    """``ram.dirty-sync-count`` -> mig["ram"]["dirty-sync-count"] (0 when absent)."""
    cur: Any = mig
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return 0
        cur = cur[part]
    return int(cur) if isinstance(cur, (int, float)) else 0


def _count_trace(log: str, events: Sequence[str]) -> dict[str, int]:
    """How often each trace event appears in QEMU's -D log (one line per occurrence)."""
    counts = dict.fromkeys(events, 0)
    pattern = re.compile(r"\b(" + "|".join(re.escape(e) for e in events) + r")\b")
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = pattern.search(line)
                if m:
                    counts[m.group(1)] += 1
    except FileNotFoundError:
        pass
    return counts


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _wait_screen(run: QemuRun, workdir: str, limit: float, settle: int = 3) -> dict[str, Any]:
    """Poll QMP screendump once a second until the guest's screen has settled.

    Settled: ``settle`` dumps in a row are the same picture, and it is not the
    picture QEMU showed right after ``cont`` (before any firmware ran, the
    console has no mode set).  Returns when and at which size; raises
    QemuError after ``limit`` seconds.
    """
    shot = os.path.join(workdir, "screen-poll.png")

    def dump() -> bytes:
        run.cmd("screendump", {"filename": shot, "format": "png"})
        with open(shot, "rb") as f:
            return f.read()

    t0 = time.monotonic()
    initial = dump()
    last, same = b"", 0
    while time.monotonic() - t0 < limit:
        time.sleep(1)
        now = dump()
        same = same + 1 if now == last else 1
        last = now
        if now != initial and same >= settle:
            os.unlink(shot)
            return {"settled_after_s": round(time.monotonic() - t0, 1), "size": _png_size(now),
                    "initial_size": _png_size(initial)}
    raise run.error(f"the guest's screen did not settle within {limit:g}s")


# ------------------------------------------------------------------ capture
@dataclass
class CaptureResult:
    path: Path
    size: int
    sha256: str
    query_migrate: dict[str, Any]
    argv: list[str]
    stderr: str
    sidecar: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


def capture(qemu: QemuBinary, out_path: str | os.PathLike[str], machine: str,
            devices: Sequence[str] = (), globals_: Sequence[str] = (),
            capabilities: Sequence[str | tuple[str, bool]] = (),
            parameters: Mapping[str, Any] | None = None, memory: str = "16M",
            booted_seconds: float = 0, suppress_vmdesc: bool = False, timeout: float = 60,
            extra_args: Sequence[str] = (), cpu: str | None = None,
            firmware: str | os.PathLike[str] | None = None, kernel: str | os.PathLike[str] | None = None,
            live_seconds: float = 0, switchover_after: Mapping[str, int] | None = None,
            wait_screen: float = 0, screendump: str | os.PathLike[str] | None = None,
            hash_ram: bool = False, allow_failed: bool = False, trace: Sequence[str] = (),
            machine_options: Sequence[str] = (), keys: Sequence[str | Sequence[str]] = ()) -> CaptureResult:
    """Migrate a VM into ``out_path``: paused, booted then stopped, or running.

    The VM starts paused (``-S``).  What happens before ``migrate``:

    * nothing (mode ``paused``): byte-for-byte reproducible;
    * ``booted_seconds``: ``cont``, run that long, ``stop`` (mode ``booted``);
    * ``wait_screen``: ``cont``, poll ``screendump`` until the guest's screen
      has settled (at most that many seconds), ``stop`` (mode ``screen``);
    * ``live_seconds``: ``cont``, run that long, then migrate the running
      guest (mode ``live``).  With ``switchover_after`` (dotted
      ``query-migrate`` counters -> minimum, e.g. ``{"ram.dirty-sync-count":
      4}``) the helper raises ``downtime-limit`` (and clears
      ``avail-switchover-bandwidth`` if ``parameters`` set it) once every
      counter is reached, so a migration kept iterating by a tiny
      downtime-limit finishes then.  QEMU weighs the pending bytes against
      downtime-limit x bandwidth, and measures the bandwidth of each
      iteration: a burst of small XBZRLE records looks fast, so keeping such
      a migration iterating also takes an ``avail-switchover-bandwidth``,
      which QEMU then uses instead (1 MB/s with 1 ms: a threshold under one
      page, but not 0, at which QEMU would complete whenever a pass ends).
      ``wait_screen`` with ``live_seconds``: the guest runs until its screen
      has settled, then that long, and is migrated running.  ``keys`` are
      typed into it first (QMP ``send-key``, one every 0.2 s; QEMU key codes
      such as ``"h"``, ``"ret"``, or a list of codes pressed together), e.g.
      a firmware shell command that keeps the screen changing while the guest
      migrates (an idle guest dirties no page, and QEMU completes as soon as
      a pass finds nothing left to send).

    ``screendump`` saves QEMU's picture of the screen (PNG) just before
    ``migrate``.  ``kernel`` is passed as ``-kernel``, ``firmware`` as
    ``-bios`` (path and sha256 of both go into the sidecar); ``cpu`` defaults
    to :attr:`QemuBinary.default_cpu`.  ``hash_ram`` backs the guest's main
    RAM block with a shared file (same block name) and, once the migration
    completed and the source is stopped, records that file's sha256 (whole and
    per MiB) as ``guest_ram`` in the sidecar: QEMU's own memory, to compare
    extracted RAM with.  ``allow_failed`` keeps a stream whose migration
    ended ``failed`` (e.g. postcopy-ram to a file: the stream is complete,
    but the source finds no return path); no ``guest_ram`` then, the source
    runs on.  ``trace`` names QEMU trace events (``-trace``) whose occurrences
    are counted into the sidecar's ``trace_counts`` (e.g.
    ``save_xbzrle_page_skipping``: XBZRLE pages QEMU counts but does not send).

    ``machine_options`` are appended to ``-machine`` (e.g.
    ``dtb-randomness=off``: aarch64 ``virt`` otherwise puts random seeds into
    the device tree it leaves in guest RAM, and no two captures are alike).

    The stream is written to a temporary file in the same directory and renamed
    only when QEMU is done.  Raises :class:`QemuError` (with QEMU's stderr) on
    any failure or when ``timeout`` seconds pass; QEMU is killed then.
    ``extra_args`` are appended to the QEMU command line.
    """
    modes = [m for m, on in (("booted", booted_seconds), ("screen", wait_screen), ("live", live_seconds)) if on]
    if len(modes) > 1 and modes != ["screen", "live"]:
        raise ValueError(f"pick one of booted_seconds, wait_screen, live_seconds (got {', '.join(modes)})")
    mode = modes[-1] if modes else "paused"
    if keys and mode != "live":
        raise ValueError("keys are typed into a guest that then migrates running: they need live_seconds")
    out = Path(out_path).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    options = [*machine_options, *(["suppress-vmdesc=on"] if suppress_vmdesc else [])]
    machine_arg = ",".join([machine, *options])
    scratch = _scratch_dir("vmig-capture-")  # guest RAM file, screen polls, trace log
    workdir = scratch.name
    ram_path = os.path.join(workdir, "guest-ram")
    trace_log = os.path.join(workdir, "trace.log")
    more = [*(["-kernel", os.path.abspath(kernel)] if kernel else []),
            *(_ram_backend_args(qemu, memory, ram_path) if hash_ram else [])]
    for event in trace:
        more += ["-trace", event]
    if trace:
        more += ["-D", trace_log]
    argv = _vm_args(qemu, machine_arg, memory, globals_, devices, [*more, *extra_args],
                    ["-S", "-rtc", RTC], cpu=cpu, firmware=firmware)
    fd, tmp_name = tempfile.mkstemp(prefix=".vmig-capture-", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp_base = os.path.basename(tmp_name)  # QEMU runs in out.parent: the URI holds no directory
    uri = f"file:{tmp_base}" if qemu.has_file_uri else f"exec:cat > {shlex.quote(tmp_base)}"
    params = {"max-bandwidth": MAX_BANDWIDTH, **dict(parameters or {})}
    run: QemuRun | None = None
    ok = False
    try:
        run = QemuRun(argv, timeout=timeout, what="capture", qmp="stdio", cwd=out.parent).start()
        argv = run.argv  # what ran: with -qmp stdio
        greeting = {"QMP": run.connect()}
        if capabilities:
            run.cmd("migrate-set-capabilities", {"capabilities": _caps_arg(capabilities)})
        run.cmd("migrate-set-parameters", params)
        caps_now = run.cmd("query-migrate-capabilities")
        params_now = run.cmd("query-migrate-parameters")
        screen: dict[str, Any] | None = None
        if mode != "paused":
            run.cmd("cont")
        if mode == "booted":
            time.sleep(booted_seconds)
            run.cmd("stop")
        elif mode == "screen":
            screen = _wait_screen(run, workdir, wait_screen)
            run.cmd("stop")
        elif mode == "live":
            if wait_screen:
                screen = _wait_screen(run, workdir, wait_screen)
            for key in keys:
                codes = [key] if isinstance(key, str) else list(key)
                run.cmd("send-key", {"keys": [{"type": "qcode", "data": c} for c in codes]})
                time.sleep(_KEY_INTERVAL)
            time.sleep(live_seconds)
        status_before = run.cmd("query-status")
        shot: dict[str, Any] | None = None
        if screendump is not None:
            shot_path = Path(screendump).absolute()
            run.cmd("screendump", {"filename": str(shot_path), "format": "png"})
            shot = {"file": shot_path.name, "sha256": sha256_file(shot_path),
                    "size": _png_size(shot_path.read_bytes())}
        run.cmd("migrate", {"uri": uri})
        mig: dict[str, Any] = {}
        last_active: dict[str, Any] | None = None  # a failed migration reports no counters
        switchover: dict[str, Any] | None = None
        while True:
            mig = run.cmd("query-migrate") or {}
            st = mig.get("status")
            if "ram" in mig and st not in _FINAL_STATES:
                last_active = mig
            if st == "completed":
                break
            if st == "failed" and allow_failed:
                break
            if st in ("failed", "cancelled"):
                raise run.error(f"migration {st}: {mig.get('error-desc', '')}".rstrip(": "))
            if (switchover is None and switchover_after and st == "active"
                    and all(_migrate_value(mig, k) >= v for k, v in switchover_after.items())):
                finish = {"downtime-limit": SWITCHOVER_DOWNTIME_MS}
                if "avail-switchover-bandwidth" in params:
                    finish["avail-switchover-bandwidth"] = 0  # back to the measured bandwidth
                run.cmd("migrate-set-parameters", finish)
                switchover = {"after": dict(switchover_after), "query_migrate": mig, "set": finish}
            if run.left() <= 0:
                raise run.error(f"migration did not finish within {timeout:g} s (status {st})")
            time.sleep(_POLL)
        guest_ram: dict[str, Any] | None = None
        if hash_ram and mig.get("status") == "completed":
            run.cmd("stop")  # already stopped after completion: a no-op that says so
            guest_ram = guest_ram_digest(ram_path, MAIN_RAM_ID[qemu.arch])
            guest_ram["taken_from"] = "the source's RAM file, VM stopped after the migration completed"
        rc = run.quit(wait=max(1.0, min(10.0, run.left())))
        if not qemu.has_file_uri:  # exec: 'cat' may still be draining the pipe, even after QEMU exited
            run.wait_group_gone()
        size = os.path.getsize(tmp_name)
        if size == 0:
            raise run.error("QEMU reported completed but wrote no stream")
        digest = sha256_file(tmp_name)
        os.chmod(tmp_name, new_file_mode())  # mkstemp made it 0600 (and QEMU's file: URI keeps that)
        stderr = run.stderr_text()
        trace_counts = _count_trace(trace_log, trace) if trace else None
        sidecar: dict[str, Any] = {
            "format": SIDECAR_FORMAT,
            "ok": True,
            "file": out.name,
            "size": size,
            "sha256": digest,
            "machine": machine,
            "arch": qemu.arch,
            "cpu": cpu or qemu.default_cpu,
            "firmware": _firmware_info(firmware),
            "machine_options": ",".join(options),
            "devices": list(devices),
            "globals": list(globals_),
            "memory": memory,
            "accel": "tcg",
            "mode": mode,
            "boot_seconds": booted_seconds or None,
            "live_seconds": live_seconds or None,
            "kernel": _file_info(kernel),
            "migration_capabilities_set": [c["capability"] for c in _caps_arg(capabilities)
                                           if c["state"]],
            "migration_parameters_set": params,
            "extra_args": list(extra_args),
            "migrate_uri": uri,
            "qemu": {
                "binary_path": qemu.path,
                "version": qemu.version,
                "version_text": qemu.version_text,
                "arch": qemu.arch,
                "datadir": ":".join(qemu.datadirs),
                "qmp_greeting": greeting,
            },
            "argv": argv,
            "command_line": shlex.join(argv),
            "query_migrate_capabilities": caps_now,
            "query_migrate_parameters": params_now,
            "query_status_before_migrate": status_before,
            "query_migrate": mig,
            "query_migrate_last_active": last_active if mig.get("status") != "completed" else None,
            "switchover": switchover,
            "keys": [k if isinstance(k, str) else list(k) for k in keys] or None,
            "screen": screen,
            "screendump": shot,
            "guest_ram": guest_ram,
            "trace_counts": trace_counts,
            "qmp_events": run.events,
            "qemu_exit_status": rc,
            "qemu_stderr": stderr[-4000:],
            "generator": "vfio_ramfb_mig.qemu",
        }
        os.replace(tmp_name, out)
        ok = True
        return CaptureResult(path=out, size=size, sha256=digest, query_migrate=mig, argv=argv,
                             stderr=stderr, sidecar=sidecar, events=list(run.events))
    finally:
        if run is not None:
            run.close()
        scratch.cleanup()
        if not ok:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------- load
@dataclass
class LoadResult:
    accepted: bool
    status: str                  # completed / failed / cancelled (from QEMU), or "exited"
    stderr: str
    argv: list[str]
    returncode: int | None       # QEMU's exit status (None if we had to kill it)
    qemu_exited: bool            # QEMU ended by itself before we asked it to quit
    query_migrate: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    guest_ram: dict[str, Any] | None = None  # load(hash_ram=True): the destination's RAM after the load

    @property
    def errors(self) -> list[str]:
        """QEMU's stderr lines without the ``qemu-system-x86_64: `` prefix."""
        out = []
        for line in self.stderr.splitlines():
            line = line.strip()
            if not line:
                continue
            head, sep, rest = line.partition(": ")
            out.append(rest if sep and head.startswith("qemu-system") else line)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["errors"] = self.errors
        return d


def load(qemu: QemuBinary, stream_path: str | os.PathLike[str], machine: str,
         devices: Sequence[str] = (), globals_: Sequence[str] = (),
         capabilities: Sequence[str | tuple[str, bool]] = (), timeout: float = 30,
         memory: str = "16M", extra_args: Sequence[str] = (),
         screendump: str | os.PathLike[str] | None = None, cpu: str | None = None,
         firmware: str | os.PathLike[str] | None = None, kernel: str | os.PathLike[str] | None = None,
         hash_ram: bool = False) -> LoadResult:
    """Feed ``stream_path`` to QEMU as an incoming migration; report its verdict.

    With ``screendump`` QEMU starts paused (``-S``: the guest does not run after the
    load, so its screen is the stream's) and, once the load completed, QMP
    ``screendump`` writes the first console's picture there as PNG.  With
    ``hash_ram`` (also paused) the destination's main RAM block lives in a
    shared file whose sha256 (whole and per MiB) is ``guest_ram``: the guest
    memory real QEMU loaded from the stream.  ``kernel`` is ``-kernel`` (a
    stream of a guest booted with one has its option ROM's RAM block).

    ``accepted`` is True only when QEMU's ``query-migrate`` says ``completed``.
    QEMU exits on a failed incoming migration; its stderr (e.g. ``Unknown
    savevm section or instance 'ramfb-dev' 0``) is in ``stderr``.  With
    ``capabilities`` QEMU starts with ``-incoming defer`` so they can be set
    before the stream is read.  Raises :class:`QemuError` if QEMU cannot be
    started or neither finishes nor exits within ``timeout`` seconds.
    """
    src = Path(stream_path).absolute()
    if not src.is_file():
        raise QemuError(f"stream {src} not found")
    with tempfile.TemporaryDirectory(prefix="vmig-load-") as tdir, _scratch_dir("vmig-load-ram-") as ram_dir:
        # QEMU reads a fixed, harmless name in its own directory: no quoting issues
        # in the URI whatever the real file is called.
        os.symlink(src, os.path.join(tdir, "stream.bin"))
        uri = "file:stream.bin" if qemu.has_file_uri else "exec:cat stream.bin"
        ram_path = os.path.join(ram_dir, "guest-ram")
        more = [*(["-kernel", os.path.abspath(kernel)] if kernel else []),
                *(_ram_backend_args(qemu, memory, ram_path) if hash_ram else [])]
        paused = screendump is not None or hash_ram
        argv = _vm_args(qemu, machine, memory, globals_, devices, [*more, *extra_args],
                        ["-rtc", RTC, "-incoming", "defer" if capabilities else uri, *(["-S"] if paused else [])],
                        cpu=cpu, firmware=firmware)
        # QMP on its own socket: an incoming migration may print to QEMU's stdout (7.2's block
        # migration prints "Receiving block device images" and its progress there)
        with QemuRun(argv, timeout=timeout, what="load", qmp="socket", cwd=tdir) as run:
            mig: dict[str, Any] = {}
            guest_ram: dict[str, Any] | None = None
            status = ""
            exited = False
            try:
                run.connect()
                if capabilities:
                    run.cmd("migrate-set-capabilities", {"capabilities": _caps_arg(capabilities)})
                    run.cmd("migrate-incoming", {"uri": uri})
                while True:
                    mig = run.cmd("query-migrate") or {}
                    status = mig.get("status", "")
                    if status in _FINAL_STATES:
                        break
                    if run.left() <= 0:
                        raise run.error(f"incoming migration did not finish within {timeout:g} s "
                                        f"(status {status or 'none'})")
                    time.sleep(_POLL)
            except QemuError:
                if run.running() and not run.eof:
                    raise
                exited = True  # QEMU died (e.g. refused the stream) before or while we asked
            if exited:
                rc = run.quit(wait=max(1.0, run.left()))  # it is on its way out: only waits
                if status not in _FINAL_STATES:
                    status = "failed" if rc else "exited"
            else:
                if screendump is not None and status == "completed":
                    run.cmd("screendump", {"filename": str(Path(screendump).absolute()), "format": "png"})
                if hash_ram and status == "completed":
                    guest_ram = guest_ram_digest(ram_path, MAIN_RAM_ID[qemu.arch])
                    guest_ram["taken_from"] = "the destination's RAM file, VM paused after the load completed"
                rc = run.quit(wait=10)
            return LoadResult(accepted=(status == "completed"), status=status, stderr=run.stderr_text(),
                              argv=run.argv, returncode=rc, qemu_exited=exited, query_migrate=mig,
                              events=list(run.events), guest_ram=guest_ram)


# -------------------------------------------------------------- dump-vmstate
def dump_vmstate(qemu: QemuBinary, machine: str, out_path: str | os.PathLike[str],
                 timeout: float = 60, cpu: str | None = None) -> Path:
    """``-dump-vmstate`` for ``machine`` into ``out_path`` (gzipped, reproducibly, if it ends in .gz)."""
    out = Path(out_path).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmig-dump-", dir=out.parent) as tdir:
        raw = os.path.join(tdir, "vmstate.json")
        cpu = cpu or qemu.default_cpu
        argv = [*qemu.argv_prefix, "-machine", machine, *(["-cpu", cpu] if cpu else []), *BASE_ARGS,
                "-dump-vmstate", raw]
        # (no -rtc/-m: irrelevant to the vmstate description)
        _, _, err = run_once(argv, timeout=timeout, what="-dump-vmstate", check=True)
        if not os.path.exists(raw):
            raise QemuError("-dump-vmstate wrote no file", stderr=err, argv=argv, returncode=0)
        tmp = os.path.join(tdir, "out")
        if out.name.endswith(".gz"):
            with (open(raw, "rb") as src, open(tmp, "wb") as dst,
                  gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=9) as gz):
                shutil.copyfileobj(src, gz)
        else:
            os.replace(raw, tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------- CLI
def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _firmware_arg(value: str | None) -> Path | None:
    if value is None:
        return None
    if value.lower() == "aavmf":
        fw = find_aavmf()
        if fw is None:
            raise QemuError(f"AAVMF not found at {AAVMF_DEFAULT} (install qemu-efi-aarch64; env VMIG_AAVMF)")
        return fw
    return Path(value)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vfio_ramfb_mig.qemu",
                                description="vmig's capture helper: drive real QEMU over QMP on stdio.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--qemu", required=True, help="10.0, 7.2 or a path to a QEMU binary")
        sp.add_argument("--arch", choices=ARCHES, default="x86_64",
                        help="which binary of the series --qemu 10.0 / 7.2 names (default x86_64)")
        sp.add_argument("--cpu", help="-cpu (default: cortex-a57 for aarch64, QEMU's own for x86_64)")
        sp.add_argument("--firmware", metavar="PATH",
                        help="-bios image; 'aavmf' is the installed aarch64 UEFI (qemu-efi-aarch64)")
        sp.add_argument("--kernel", metavar="PATH", help="-kernel image (e.g. tools/captures/dirtier.py's)")
        sp.add_argument("--hash-ram", action="store_true",
                        help="main RAM in a shared file; record its sha256 once the VM is stopped")
        sp.add_argument("--machine", "-M", required=True, help="machine type, e.g. pc-q35-8.2")
        sp.add_argument("--device", action="append", default=[], help="-device argument (repeatable)")
        sp.add_argument("--global", dest="globals_", action="append", default=[],
                        help="-global argument (repeatable)")
        sp.add_argument("--cap", action="append", default=[], help="migration capability to enable")
        sp.add_argument("--memory", "-m", default="16M")
        sp.add_argument("--extra-arg", action="append", default=[],
                        help="extra QEMU argument (repeatable; use --extra-arg=-foo)")

    c = sub.add_parser("capture", help="migrate a paused VM into a file (+ .meta.json sidecar)")
    common(c)
    c.add_argument("-o", "--output", required=True, help="stream file to write (e.g. out.bin)")
    c.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="migrate-set-parameters entry (value parsed as JSON if it can be)")
    c.add_argument("--booted", type=float, default=0, metavar="SECS",
                   help="cont, let the firmware run SECS seconds, stop, then migrate")
    c.add_argument("--wait-screen", type=float, default=0, metavar="SECS",
                   help="cont, poll screendump until the screen settles (at most SECS), stop, then migrate "
                        "(with --live: run on, then migrate it running)")
    c.add_argument("--live", type=float, default=0, metavar="SECS",
                   help="cont, let the guest run SECS seconds, then migrate it while it runs")
    c.add_argument("--key", action="append", default=[], metavar="QCODE[+QCODE]",
                   help="with --live: a key typed (send-key) before the guest's SECS begin, e.g. h, ret, "
                        "shift+a (repeatable, in order)")
    c.add_argument("--switchover-after", action="append", default=[], metavar="COUNTER=N",
                   help="raise downtime-limit once the query-migrate counter (dotted, e.g. "
                        "ram.dirty-sync-count) reaches N (repeatable: all of them)")
    c.add_argument("--screendump", metavar="PNG", help="QEMU's screendump of the source just before migrate")
    c.add_argument("--allow-failed", action="store_true",
                   help="keep the stream of a migration that ends 'failed' (postcopy-ram to a file)")
    c.add_argument("--suppress-vmdesc", action="store_true")
    c.add_argument("--machine-option", action="append", default=[], metavar="OPT",
                   help="appended to -machine (e.g. dtb-randomness=off; repeatable)")
    c.add_argument("--no-sidecar", action="store_true", help="do not write the .meta.json sidecar")
    c.add_argument("--timeout", type=float, default=60)

    ld = sub.add_parser("load", help="give a stream to QEMU as an incoming migration; print the verdict")
    common(ld)
    ld.add_argument("stream")
    ld.add_argument("--timeout", type=float, default=30)
    ld.add_argument("--json", action="store_true", help="print the verdict as JSON")

    d = sub.add_parser("dump-vmstate", help="-dump-vmstate for a machine type")
    d.add_argument("--qemu", required=True)
    d.add_argument("--arch", choices=ARCHES, default="x86_64")
    d.add_argument("--cpu", help="-cpu (default: cortex-a57 for aarch64)")
    d.add_argument("--machine", "-M", required=True)
    d.add_argument("-o", "--output", required=True, help="JSON file (gzipped if it ends in .gz)")
    d.add_argument("--timeout", type=float, default=60)

    sub.add_parser("find", help="show which QEMU binaries are found")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "find":
            rc = 0
            for series in ("10.0", "7.2"):
                for arch in ARCHES:
                    q = find_qemu(series, arch=arch)
                    if q is None:
                        print(f"{series} {arch}: not found (env {qemu_env_var(series, arch)})")
                        rc = 1
                    else:
                        print(f"{series} {arch}: {q.version_text}\n      {shlex.join(q.argv_prefix)}")
            fw = find_aavmf()
            print(f"AAVMF: {fw}" if fw else f"AAVMF: not found ({AAVMF_DEFAULT}; env VMIG_AAVMF)")
            return rc if fw else 1
        qemu = _resolve_qemu(args.qemu, args.arch)
        firmware = _firmware_arg(getattr(args, "firmware", None))
        if args.command == "capture":
            params = {}
            for item in args.param:
                name, sep, value = item.partition("=")
                if not sep:
                    raise SystemExit(f"--param wants NAME=VALUE, got {item!r}")
                params[name] = _param_value(value)
            switchover = {}
            for item in args.switchover_after:
                name, sep, value = item.partition("=")
                if not sep or not value.isdigit():
                    raise SystemExit(f"--switchover-after wants COUNTER=N, got {item!r}")
                switchover[name] = int(value)
            res = capture(qemu, args.output, args.machine, devices=args.device, globals_=args.globals_,
                          capabilities=args.cap, parameters=params, memory=args.memory,
                          booted_seconds=args.booted, suppress_vmdesc=args.suppress_vmdesc,
                          timeout=args.timeout, extra_args=args.extra_arg, cpu=args.cpu, firmware=firmware,
                          kernel=args.kernel, live_seconds=args.live, switchover_after=switchover or None,
                          wait_screen=args.wait_screen, screendump=args.screendump, hash_ram=args.hash_ram,
                          allow_failed=args.allow_failed, machine_options=args.machine_option,
                          keys=[k if "+" not in k else k.split("+") for k in args.key])
            msg = f"wrote {res.path} ({res.size} bytes, sha256 {res.sha256})"
            if not args.no_sidecar:
                msg += f"\nwrote {write_sidecar(res.sidecar, sidecar_path(res.path))}"
            print(msg)
            return 0
        if args.command == "load":
            v = load(qemu, args.stream, args.machine, devices=args.device, globals_=args.globals_,
                     capabilities=args.cap, timeout=args.timeout, memory=args.memory,
                     extra_args=args.extra_arg, cpu=args.cpu, firmware=firmware, kernel=args.kernel,
                     hash_ram=args.hash_ram)
            if args.json:
                print(json.dumps(v.to_dict(), indent=2))
            else:
                verdict = "ACCEPTED" if v.accepted else "REFUSED"
                print(f"{verdict}: QEMU {qemu.version} {args.machine} status={v.status}"
                      f" exit={v.returncode}")
                for line in v.errors:
                    print(f"  qemu: {line}")
                if v.guest_ram:
                    print(f"  {v.guest_ram['block']}: {v.guest_ram['size']} bytes, sha256 {v.guest_ram['sha256']}")
            return 0 if v.accepted else 1
        if args.command == "dump-vmstate":
            print(f"wrote {dump_vmstate(qemu, args.machine, args.output, timeout=args.timeout, cpu=args.cpu)}")
            return 0
    except QemuError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.stderr.strip():  # the one-line message has QEMU's last complaint; here is all it said
            print("QEMU stderr:\n" + e.stderr.rstrip(), file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
