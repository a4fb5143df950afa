"""Make libvirt save images with real libvirt (`virsh save`), one per save_image_format.

    python3 tools/captures/libvirt_saves.py fixtures/containers            # every format
    python3 tools/captures/libvirt_saves.py /tmp/out --formats raw,xz

Needs root, libvirt's QEMU driver (Debian: libvirt-daemon-system libvirt-clients
libvirt-daemon-driver-qemu), QEMU 10.0, and the compressors (gzip bzip2 xz-utils lzop zstd).
No systemd is needed: the script starts virtlogd and libvirtd itself (`-d`), with the
settings a container needs in /etc/libvirt/qemu.conf (real-world-captures.md), and puts
qemu.conf back and stops the daemons it started when done. libvirt reads
`save_image_format` only at start, so libvirtd is restarted for each format.

The guest: a transient `type='qemu'` q35 domain, 32 MiB, ramfb video, no disk, booted from
tools/captures/tinykernel.py (it keeps writing to RAM). Each image gets a sidecar
NAME.meta.json: versions, the format, the domain XML given to libvirt, sha256.

A format this libvirt does not write (libvirt 9.0 has no zstd: its save formats are raw, gzip,
bzip2, xz and lzop) is reported and skipped.

The test suite uses `LibvirtDaemons` and `save_domain` from here for its live test
(tests/test_containers_libvirt.py), which saves, re-encodes with vmig and restores.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tinykernel import kernel  # noqa: E402

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
#: one user of the system libvirtd and its qemu.conf at a time on this machine (several test runs
#: may share it): held from configure() to close()
LOCK = Path("/tmp/vmig-libvirt.lock")
FORMATS = ("raw", "gzip", "bzip2", "xz", "lzop", "zstd")
DOMAIN = "vmig-save"
MACHINE = "pc-q35-8.2"


def domain_xml(kernel_path: str, name: str = DOMAIN, machine: str = MACHINE) -> str:
    # <acpi/>: without it libvirt 9.0 passes -no-acpi, which QEMU 10.0 refuses for q35
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='{machine}'>hvm</type><kernel>{kernel_path}</kernel></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <video><model type='ramfb'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


class LibvirtError(RuntimeError):
    pass


class LibvirtDaemons:
    """virtlogd + libvirtd started by us (never by systemd), with a qemu.conf of ours.

    `can_run()` says why not when this machine cannot (not root, not installed, a libvirtd we did
    not start is running)."""

    def __init__(self, workdir: Path, wait: float = 600) -> None:
        self.workdir, self.wait = workdir, wait
        self.backup: bytes | None = None
        self.pids: dict[str, int] = {}
        self.lock: int | None = None

    @staticmethod
    def can_run() -> str | None:
        if os.geteuid() != 0:
            return "libvirt's system daemon needs root"
        for prog in ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64"):
            if shutil.which(prog) is None and not Path("/usr/sbin", prog).exists():
                return f"{prog} is not installed (Debian: libvirt-daemon-system libvirt-clients)"
        return None

    def acquire(self) -> str | None:
        """Wait for other users of this code to finish; then say why not if a libvirtd that is
        not ours runs (its qemu.conf cannot be changed under it)."""
        self.lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return f"another run held {LOCK} for {self.wait:.0f} s"
                time.sleep(1)
        if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode == 0:
            return "a libvirtd this code did not start is running (its qemu.conf cannot be changed under it)"
        return None

    def configure(self, save_format: str) -> None:
        if self.backup is None:
            self.backup = QEMU_CONF.read_bytes() if QEMU_CONF.exists() else b""
        # no security driver, cgroups or mount namespace: none of them works in a container
        extra = ("\n# written by vmig's tools/captures/libvirt_saves.py (restored when it ends)\n"
                 'security_driver = "none"\ncgroup_controllers = [ ]\nnamespaces = [ ]\n'
                 f'save_image_format = "{save_format}"\n')
        QEMU_CONF.write_bytes(self.backup + extra.encode())

    def start(self, save_format: str) -> None:
        self.stop_libvirtd()
        self.configure(save_format)
        if "virtlogd" not in self.pids:
            self.pids["virtlogd"] = self._daemon("virtlogd")
        self.pids["libvirtd"] = self._daemon("libvirtd")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if virsh("version", check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise LibvirtError("libvirtd did not answer within 30 s")

    def _daemon(self, prog: str) -> int:
        pid_file = self.workdir / f"{prog}.pid"
        pid_file.unlink(missing_ok=True)
        subprocess.run([prog, "-d", "-p", str(pid_file)], check=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return int(pid_file.read_text().strip())
            time.sleep(0.1)
        raise LibvirtError(f"{prog} wrote no pid file")

    def stop_libvirtd(self) -> None:
        pid = self.pids.pop("libvirtd", None)
        if pid is not None:
            _kill(pid)

    def close(self) -> None:
        self.stop_libvirtd()
        pid = self.pids.pop("virtlogd", None)
        if pid is not None:
            _kill(pid)
        if self.backup is not None:
            QEMU_CONF.write_bytes(self.backup)
            self.backup = None
        if self.lock is not None:
            os.close(self.lock)  # releases the flock
            self.lock = None

    def __enter__(self) -> LibvirtDaemons:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill(pid: int, wait: float = 15) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def virsh(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise LibvirtError(f"virsh {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


def destroy(name: str = DOMAIN) -> None:
    virsh("destroy", name, check=False)


def save_domain(workdir: Path, out: Path, name: str = DOMAIN, run_for: float = 1.0) -> str:
    """Start the transient domain, let it run, `virsh save` it to `out`; returns the XML given."""
    kernel_path = workdir / "kernel.bin"
    kernel_path.write_bytes(kernel())
    xml = domain_xml(str(kernel_path), name)
    xml_path = workdir / f"{name}.xml"
    xml_path.write_text(xml)
    destroy(name)
    virsh("create", str(xml_path))
    try:
        time.sleep(run_for)
        out.unlink(missing_ok=True)
        virsh("save", name, str(out))
    except BaseException:
        destroy(name)
        raise
    return xml


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vmig-libvirt-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for the images and their sidecars")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated save_image_format values")
    args = parser.parse_args(argv)
    why = LibvirtDaemons.can_run()
    if why:
        print(f"cannot run libvirt here: {why}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    libvirt_version = tool_version(["libvirtd", "--version"])
    qemu_version = tool_version(["qemu-system-x86_64", "--version"])
    with workspace() as work, LibvirtDaemons(work) as daemons:
        busy = daemons.acquire()
        if busy:
            print(f"cannot run libvirt here: {busy}", file=sys.stderr)
            return 2
        for fmt in args.formats.split(","):
            daemons.start(fmt)
            stem = f"libvirt-9.0.0__{MACHINE}__{fmt}"
            image = args.out / f"{stem}.save"
            try:
                xml = save_domain(work, image)
            except LibvirtError as exc:
                print(f"{fmt}: libvirt did not save: {exc}", file=sys.stderr)
                continue
            data = image.read_bytes()
            meta = {
                "made_by": "tools/captures/libvirt_saves.py",
                "libvirt": libvirt_version,
                "qemu": qemu_version,
                "save_image_format": fmt,
                "compressor": tool_version([fmt, "--version"]) if fmt != "raw" else None,
                "command": f"virsh create {DOMAIN}.xml; sleep 1; virsh save {DOMAIN} {image.name}",
                "domain_xml": xml,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            image.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            print(f"{fmt}: {image} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
