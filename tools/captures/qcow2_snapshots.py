"""Make qcow2 images holding internal snapshots with real QEMU `savevm`.

    python3 tools/captures/qcow2_snapshots.py fixtures/containers

Writes two images (QEMU 10.0 `qemu-system-x86_64` and `qemu-img` on PATH):

- qemu-10.0.2__pc-q35-8.2__v3-snapshots.qcow2: qcow2 version 3 (qemu-img's default), three
  snapshots: `first` and `second` taken by HMP `savevm` 0.5 s apart while the guest runs
  (each with its vmstate), then `disk-only` by `qemu-img snapshot -c` (no vmstate);
- qemu-10.0.2__pc-q35-8.2__v2-snapshot.qcow2: qcow2 version 2 (`-o compat=0.10`), one
  snapshot `only` taken by `savevm`.

The guest: q35, 32 MiB, `-device ramfb`, the disk attached to nothing (`-drive if=none`: savevm
needs one writable qcow2 image, not a guest device), booted from tools/captures/tinykernel.py.
Each image gets a sidecar NAME.meta.json with the commands, `qemu-img snapshot -l` and sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout
from tinykernel import kernel  # noqa: E402

from vfio_ramfb_mig.qemurun import QemuRun  # noqa: E402

MACHINE = "pc-q35-8.2"
DISK_SIZE = "1M"


def make(work: Path, out: Path, compat: str, snapshots: list[str], disk_only: str | None) -> dict:
    kernel_path = work / "kernel.bin"
    kernel_path.write_bytes(kernel())
    out.unlink(missing_ok=True)
    commands = [["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"compat={compat}", str(out), DISK_SIZE]]
    subprocess.run(commands[0], check=True)
    argv = ["qemu-system-x86_64", "-M", MACHINE, "-accel", "tcg", "-m", "32M", "-nodefaults", "-display", "none",
            "-net", "none", "-kernel", str(kernel_path), "-device", "ramfb",
            "-drive", f"file={out},if=none,id=disk0,format=qcow2"]
    with QemuRun(argv, timeout=120, what="savevm", qmp="stdio") as run:
        run.connect()
        for name in snapshots:
            time.sleep(0.5)
            said = run.hmp(f"savevm {name}")
            if said:  # savevm prints only on failure
                raise RuntimeError(f"savevm {name}: {said}")
        run.quit(wait=30)
    commands.append(run.argv)
    commands.extend(["human-monitor-command", f"savevm {name}"] for name in snapshots)
    if disk_only:
        commands.append(["qemu-img", "snapshot", "-c", disk_only, str(out)])
        subprocess.run(commands[-1], check=True)
    listing = subprocess.run(["qemu-img", "snapshot", "-l", str(out)], capture_output=True, text=True,
                             check=True).stdout
    data = out.read_bytes()
    meta = {
        "made_by": "tools/captures/qcow2_snapshots.py",
        "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "qcow2_compat": compat,
        "commands": [" ".join(c).replace(str(work), "WORK").replace(str(out.parent), ".") for c in commands],
        "snapshot_list": listing.replace(str(out.parent), "."),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for the images and their sidecars")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmig-qcow2-") as tmp:
        work = Path(tmp)
        for name, compat, snaps, disk_only in (
                ("v3-snapshots", "1.1", ["first", "second"], "disk-only"),
                ("v2-snapshot", "0.10", ["only"], None)):
            image = args.out / f"qemu-10.0.2__{MACHINE}__{name}.qcow2"
            meta = make(work, image, compat, snaps, disk_only)
            print(f"{image} ({meta['size']} bytes)\n{meta['snapshot_list']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
