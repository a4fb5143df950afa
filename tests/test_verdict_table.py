"""Verdicts agree with real QEMU: a table of stream x destination, each loaded into real QEMU.

Every row names a stream (captured live by real QEMU, or written by `vmig encode`) and a
destination (binary, machine, devices, memory, capabilities). The test loads the stream
into that destination with real QEMU (vfio_ramfb_mig.qemu.load) and requires vmig's
verdict to be the same, and to print the same lines, when vmig knows the destination
(a) from --target/--qemu/--device/--memory/--cap and (b) from a `vmig profile` of it.
Nothing in the table is a typed-in verdict: `expect` only names which rule should be the
first refusal (or None), as a guard that the row tests what it says it tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import resize_block
from paths import CAPTURES

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.compat.check import check_stream, destination
from vfio_ramfb_mig.compat.check.destination import destination_from_profile
from vfio_ramfb_mig.compat.profile import Profile, profile_destination
from vfio_ramfb_mig.qemurun import QemuRun
from vfio_ramfb_mig.codec.encode import encode_bytes
from vfio_ramfb_mig.devstream import DeviceRequest, build_device_stream
from vfio_ramfb_mig.model import Configuration, MigrationStream, Vmdesc
from vfio_ramfb_mig.qemu import DEFAULT_CPU, BASE_ARGS, QemuBinary, capture, load

#: the CPU the aarch64 VMs run (qemu10_arm / qemu72_arm come from conftest.py)
CPU = ["-cpu", DEFAULT_CPU["aarch64"]]

pytestmark = pytest.mark.qemu

FIXTURE = {("aarch64", "10.0"): "qemu10_arm", ("aarch64", "7.2"): "qemu72_arm",
           ("x86_64", "10.0"): "qemu10", ("x86_64", "7.2"): "qemu72"}


@dataclass(frozen=True)
class VM:
    """A VM as its QEMU command line says: which binary, machine, devices, -m, capabilities."""

    arch: str
    qemu: str
    machine: str
    devices: tuple[str, ...] = ()
    memory: str = "16M"
    caps: tuple[str, ...] = ()

    @property
    def extra(self) -> list[str]:
        return list(CPU) if self.arch == "aarch64" else []

    def binary(self, request: pytest.FixtureRequest) -> QemuBinary:
        return request.getfixturevalue(FIXTURE[(self.arch, self.qemu)])

    def command(self, q: QemuBinary) -> list[str]:
        argv = [*q.argv_prefix, "-machine", self.machine, "-accel", "tcg", "-m", self.memory, *BASE_ARGS[2:],
                *self.extra]
        for d in self.devices:
            argv += ["-device", d]
        return argv


@dataclass(frozen=True)
class Row:
    stream: VM | str  # a VM to capture, or "encode:MACHINE:DEVICE" (vmig encode --machine ... --device ...)
    dest: VM
    expect: str | None  # the rule of the first refusal, None when it loads
    modes: tuple[str, ...] = ("target", "profile")
    postcopy: bool = field(default=False)


A10, A72, X10, X72 = ("aarch64", "10.0"), ("aarch64", "7.2"), ("x86_64", "10.0"), ("x86_64", "7.2")
ROWS = {
    # aarch64 virt 8.1 / 8.2 / 10.0, with and without ramfb
    "virt-8.2+ramfb into virt-8.2+ramfb": Row(VM(*A10, "virt-8.2", ("ramfb",)), VM(*A10, "virt-8.2", ("ramfb",)), None),
    "virt-8.2+ramfb into virt-8.2": Row(VM(*A10, "virt-8.2", ("ramfb",)), VM(*A10, "virt-8.2"), "unknown-section"),
    "virt-8.1+ramfb into virt-8.1+ramfb": Row(VM(*A10, "virt-8.1", ("ramfb",)), VM(*A10, "virt-8.1", ("ramfb",)), None),
    "virt-8.1+ramfb into virt-8.1": Row(VM(*A10, "virt-8.1", ("ramfb",)), VM(*A10, "virt-8.1"), None),
    "virt-8.1+ramfb into virt-8.2+ramfb": Row(VM(*A10, "virt-8.1", ("ramfb",)), VM(*A10, "virt-8.2", ("ramfb",)),
                                             "machine-type"),
    "virt-8.2+ramfb into virt-8.1+ramfb": Row(VM(*A10, "virt-8.2", ("ramfb",)), VM(*A10, "virt-8.1", ("ramfb",)),
                                             "machine-type"),
    "virt-10.0+ramfb into virt-10.0+ramfb": Row(VM(*A10, "virt-10.0", ("ramfb",)), VM(*A10, "virt", ("ramfb",)), None),
    "virt-10.0+ramfb into virt-10.0": Row(VM(*A10, "virt-10.0", ("ramfb",)), VM(*A10, "virt-10.0"), "unknown-section"),
    "virt-10.0 into virt-10.0+ramfb": Row(VM(*A10, "virt-10.0"), VM(*A10, "virt-10.0", ("ramfb",)), None),
    # vmig's own streams (vmig encode --machine virt-X.Y --device ramfb)
    "encode virt-8.2 ramfb into virt-8.2+ramfb": Row("encode:virt-8.2:ramfb", VM(*A10, "virt-8.2", ("ramfb",)), None),
    "encode virt-8.1 ramfb into virt-8.1+ramfb": Row("encode:virt-8.1:ramfb", VM(*A10, "virt-8.1", ("ramfb",)), None),
    "encode virt-8.2 ramfb into virt-8.1+ramfb": Row("encode:virt-8.2:ramfb", VM(*A10, "virt-8.1", ("ramfb",)),
                                                    "machine-type"),
    # the same stream without its target-page-bits subsection: an arm destination assumes 10 bits
    "virt-8.2 stream without page bits": Row("nobits:virt-8.2:ramfb", VM(*A10, "virt-8.2", ("ramfb",)),
                                             "target-page-bits"),
    # QEMU 7.2 <-> 10.0, both ways, both architectures
    "aarch64 7.2 virt-7.2 into 10.0": Row(VM(*A72, "virt-7.2"), VM(*A10, "virt-7.2"), "cpu-registers"),
    "aarch64 10.0 virt-7.2 into 7.2": Row(VM(*A10, "virt-7.2"), VM(*A72, "virt-7.2"), "cpu-registers"),
    "aarch64 7.2 virt-7.2 into 7.2": Row(VM(*A72, "virt-7.2"), VM(*A72, "virt-7.2"), None),
    "x86_64 7.2 pc-q35-7.2 into 10.0": Row(VM(*X72, "pc-q35-7.2"), VM(*X10, "pc-q35-7.2"), None),
    "x86_64 10.0 pc-q35-7.2 into 7.2": Row(VM(*X10, "pc-q35-7.2"), VM(*X72, "pc-q35-7.2"), None),
    "x86_64 7.2 pc-i440fx-7.2 into 10.0": Row(VM(*X72, "pc-i440fx-7.2"), VM(*X10, "pc-i440fx-7.2"), None),
    # postcopy with and without the capability
    "postcopy into no postcopy-ram": Row(VM(*X10, "pc-q35-8.2"), VM(*X10, "pc-q35-8.2"), "postcopy-advise",
                                         postcopy=True),
    "postcopy into postcopy-ram": Row(VM(*X10, "pc-q35-8.2"), VM(*X10, "pc-q35-8.2", caps=("postcopy-ram",)), None,
                                      postcopy=True),
    # a RAM block of another size
    "pc.ram 16M into -m 32M": Row(VM(*X10, "pc-q35-8.2"), VM(*X10, "pc-q35-8.2", memory="32M"), "ram-blocks"),
    "mach-virt.ram 16M into -m 32M": Row(VM(*A10, "virt-8.2"), VM(*A10, "virt-8.2", memory="32M"), "ram-blocks"),
    # the stream's block list says another length: a resizeable block is resized, then a page past its new end
    # is refused; one longer than the block's maximum is refused outright (only a profile knows the maximum)
    "acpi tables shrunk to 0x10000": Row("resize:/rom@etc/acpi/tables:0x10000", VM(*X10, "pc-q35-8.2"),
                                         "illegal-ram-offset"),
    "table-loader grown past its maximum": Row("resize:/rom@etc/table-loader:0x20000", VM(*X10, "pc-q35-8.2"),
                                               "ram-blocks", modes=("profile",)),
    "a VGA's vga.vram into a destination without VGA": Row(VM(*X10, "pc-q35-8.2", ("VGA",)), VM(*X10, "pc-q35-8.2"),
                                                           "ram-blocks"),
    "vga.vram 32M into 16M": Row(VM(*X10, "pc-q35-8.2", ("VGA,vgamem_mb=32",)), VM(*X10, "pc-q35-8.2", ("VGA",)),
                                 "ram-blocks", modes=("profile",)),
}


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("verdicts")


_streams: dict[str, Path] = {}
_profiles: dict[VM, Profile] = {}


def postcopy_capture(q: QemuBinary, vm: VM, out: Path) -> None:
    """migrate with postcopy-ram to a file: the source fails (no return path) but the file is whole
    (OPEN_RETURN_PATH, PING, POSTCOPY_ADVISE, then precopy), as real-world-captures.md says."""
    with QemuRun([*vm.command(q), "-S"], timeout=60, what="postcopy capture") as run:
        run.connect()
        run.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "postcopy-ram", "state": True}]})
        run.cmd("migrate", {"uri": f"file:{out}"})
        while run.cmd("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.05)
        run.quit()


def stream_of(request: pytest.FixtureRequest, workdir: Path, row: Row) -> Path:
    key = repr((row.stream, row.postcopy))
    if key in _streams:
        return _streams[key]
    out = workdir / f"stream-{len(_streams)}.bin"
    if isinstance(row.stream, str) and row.stream.startswith("resize:"):
        _, block, length = row.stream.split(":")
        out.write_bytes(resize_block((CAPTURES / "qemu-10.0.2__pc-q35-8.2__plain.bin").read_bytes(), block, int(length, 16)))
    elif isinstance(row.stream, str):
        how, machine, device = row.stream.split(":")
        built = build_device_stream(DeviceRequest(machine=machine, device=device))
        if how == "nobits":  # the configuration as an x86 source would write it: the machine name only
            records = tuple(Configuration(machine=machine) if isinstance(r, Configuration) else r
                            for r in built.stream.records if not isinstance(r, Vmdesc))
            out.write_bytes(encode_bytes(MigrationStream(records=records, size=0)))
        else:
            out.write_bytes(built.data)
    elif row.postcopy:
        postcopy_capture(row.stream.binary(request), row.stream, out)
    else:
        vm = row.stream
        capture(vm.binary(request), out, vm.machine, devices=list(vm.devices), memory=vm.memory, extra_args=vm.extra)
    _streams[key] = out
    return out


def profile_of(request: pytest.FixtureRequest, vm: VM) -> Profile:
    if vm not in _profiles:
        _profiles[vm] = Profile(profile_destination(vm.command(vm.binary(request)), timeout=60), f"profile of {vm}")
    return _profiles[vm]


@pytest.mark.parametrize("name", list(ROWS))
def test_verdict_table(request: pytest.FixtureRequest, workdir: Path, name: str) -> None:
    row = ROWS[name]
    path = stream_of(request, workdir, row)
    dest_vm = row.dest
    q = dest_vm.binary(request)
    real = load(q, path, dest_vm.machine, devices=list(dest_vm.devices), capabilities=list(dest_vm.caps),
                memory=dest_vm.memory, extra_args=dest_vm.extra)
    said = tuple(line for line in real.errors if not line.startswith("warning:"))
    stream = decode(str(path))
    for mode in row.modes:
        if mode == "target":
            dest = destination(qemu=dest_vm.qemu, machine=dest_vm.machine, devices=dest_vm.devices,
                               capabilities=dest_vm.caps, memory=dest_vm.memory)
        else:
            dest = destination_from_profile(profile_of(request, dest_vm), capabilities=dest_vm.caps)
        verdict = check_stream(stream, dest)
        assert (verdict.loadable, verdict.qemu_output) == (real.accepted, said), (mode, verdict.findings)
        first = verdict.first
        assert (first.rule_id if first else None) == row.expect, mode


def test_diff_compat_against_profiles(request: pytest.FixtureRequest, workdir: Path, tmp_path: Path) -> None:
    """vmig diff --compat with --profile-a/--profile-b: each stream judged against a profile of where the
    other was made, as real QEMU judges it."""
    import json

    from click.testing import CliRunner

    from vfio_ramfb_mig.cli.main import cli

    vm_a, vm_b = VM(*A72, "virt-7.2"), VM(*A10, "virt-7.2")
    a = stream_of(request, workdir, Row(vm_a, vm_a, None))
    b = stream_of(request, workdir, Row(vm_b, vm_b, None))
    paths = []
    for vm, name in ((vm_a, "a.json"), (vm_b, "b.json")):
        (tmp_path / name).write_text(json.dumps(dict(profile_of(request, vm).doc)))
        paths.append(str(tmp_path / name))
    result = CliRunner().invoke(cli, ["diff", "--compat", "--json", str(a), str(b), "--profile-a", paths[0],
                                      "--profile-b", paths[1]])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)["compat"]
    for verdict, stream, vm in ((doc["a_where_b_was_made"], a, vm_b), (doc["b_where_a_was_made"], b, vm_a)):
        real = load(vm.binary(request), stream, vm.machine, memory=vm.memory, extra_args=vm.extra)
        said = [line for line in real.errors if not line.startswith("warning:")]
        assert (verdict["loadable"], verdict["qemu_output"]) == (real.accepted, said)
