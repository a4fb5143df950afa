"""vmig profile: a real destination described by running it, and bad profiles refused.

The facts in a profile are checked against what an independent path says: a capture of
the same VM made by the test suite's own capture helper (vfio_ramfb_mig.qemu), never
against vmig's own output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from schemacheck import assert_schema

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.compat.profile import digest, profile_destination, read_profile
from vfio_ramfb_mig.errors import InputError
from vfio_ramfb_mig.model import RamBody, RamMemSize
from vfio_ramfb_mig.qemu import BASE_ARGS, DEFAULT_CPU, QemuBinary, capture

#: the CPU the aarch64 cases run (qemu10_arm / qemu72_arm come from conftest.py)
CPU = ["-cpu", DEFAULT_CPU["aarch64"]]

VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]


def vm_command(qemu: QemuBinary, machine: str, devices: list[str], extra: list[str]) -> list[str]:
    """The command line qemu.capture runs (without its -S/-qmp/-rtc), as a user would type it."""
    argv = [*qemu.argv_prefix, "-machine", machine, "-accel", "tcg", "-m", "16M", *BASE_ARGS[2:], *extra]
    for d in devices:
        argv += ["-device", d]
    return argv


def captured_facts(qemu: QemuBinary, tmp_path: Path, machine: str, devices: list[str], extra: list[str]):
    out = tmp_path / "capture.bin"
    capture(qemu, out, machine, devices=devices, extra_args=extra)
    stream = decode(str(out))
    sections = [(s.idstr, s.instance_id, s.version_id) for s in stream.sections if s.long_header]
    blocks = [(b.idstr, b.used_length) for s in stream.sections if isinstance(s.body, RamBody)
              for item in s.body.items if isinstance(item, RamMemSize) for b in item.blocks]
    return sections, blocks


CASES = {
    "aarch64-10.0-virt-8.2-ramfb": ("qemu10_arm", "virt-8.2", ["ramfb"], CPU, "aarch64", 12),
    "aarch64-7.2-virt-7.2": ("qemu72_arm", "virt-7.2", [], CPU, "aarch64", 12),
    "x86_64-10.0-q35-8.2-ramfb": ("qemu10", "pc-q35-8.2", ["ramfb"], [], "x86_64", None),
}


@pytest.mark.qemu
@pytest.mark.parametrize("case", list(CASES))
def test_profile_says_what_the_destination_saves(request: pytest.FixtureRequest, tmp_path: Path, case: str) -> None:
    fixture, machine, devices, extra, arch, page_bits = CASES[case]
    qemu: QemuBinary = request.getfixturevalue(fixture)
    doc = profile_destination(vm_command(qemu, machine, devices, extra), timeout=60)
    assert_schema("profile", doc)
    sections, blocks = captured_facts(qemu, tmp_path, machine, devices, extra)
    assert [(s["idstr"], s["instance_id"], s["version_id"]) for s in doc["sections"]] == sections
    assert [(b["name"], b["used"]) for b in doc["ram_blocks"] if b["migrated"]] == blocks
    assert doc["qemu"]["version"] == qemu.version and doc["qemu"]["arch"] == arch
    assert doc["machine"]["name"] == machine and doc["target_page_bits"] == page_bits
    assert [d["type"] for d in doc["devices"]] == devices
    if qemu.version_tuple >= (9, 1):
        assert doc["compat_props"]["source"] == "query-machines"
        # virt-8.2 / pc-q35-8.2 get hw_compat_9_0's entries, 8.1's do not apply
        props = {(p["driver"], p["property"]): p["value"] for p in doc["compat_props"]["props"]}
        assert props[("migration", "zero-page-detection")] == "legacy"
        assert ("ramfb", "x-migrate") not in props
    else:  # read back from the devices with qom-get (test_older_qemu_compat_values_are_read_back)
        assert doc["compat_props"]["source"] == "qom-get"
    if arch == "aarch64":
        (cpu,) = doc["cpus"]
        assert cpu["idstr"] == "cpu" and len(cpu["cpreg_indexes"]) > 100
        assert cpu["cpreg_indexes"] == sorted(cpu["cpreg_indexes"])
    path = tmp_path / "dest.json"
    path.write_text(json.dumps(doc))
    assert read_profile(path).machine == machine


def fake_qemu(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!/bin/sh\necho $$ >> {tmp_path}/pids\n{body}\n")
    script.chmod(0o755)
    return script


def pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmig: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_qemu_that_hangs_is_killed_after_the_timeout(tmp_path: Path) -> None:
    qemu = fake_qemu(tmp_path, "sleep 300")
    start = time.monotonic()
    result = subprocess.run([*VMIG, "profile", "--timeout", "1", "-o", str(tmp_path / "p.json"), "--", str(qemu)],
                            capture_output=True, text=True, timeout=60)
    line = one_line_error(result)
    assert "did not open its QMP socket within 1 s" in line
    assert time.monotonic() - start < 20
    assert pids(tmp_path) and not any(alive(p) for p in pids(tmp_path))
    assert not (tmp_path / "p.json").exists()


def test_a_qemu_that_exits_early_says_why(tmp_path: Path) -> None:
    qemu = fake_qemu(tmp_path, 'echo "qemu-system-aarch64: unsupported machine type: \\"nosuch\\"" >&2; exit 1')
    result = subprocess.run([*VMIG, "profile", "-o", str(tmp_path / "p.json"), "--", str(qemu), "-M", "nosuch"],
                            capture_output=True, text=True, timeout=60)
    assert 'exited (status 1) before it answered on QMP: unsupported machine type: "nosuch"' in one_line_error(result)


@pytest.mark.parametrize(("given", "added"), [
    ([], ["-display", "none"]),  # QEMU's default would be a GTK/SDL window: on a server it exits
    (["-display", "vnc=:5"], []),
    (["-nographic"], []),
    (["--display=none"], []),
    (["-vnc", ":1"], []),
])
def test_profile_opens_no_window(tmp_path: Path, given: list[str], added: list[str]) -> None:
    qemu = fake_qemu(tmp_path, f'printf "%s\\n" "$@" > {tmp_path}/argv; exit 1')
    result = subprocess.run([*VMIG, "profile", "-o", str(tmp_path / "p.json"), "--", str(qemu), "-M", "q35", *given],
                            capture_output=True, text=True, timeout=60)
    assert "exited (status 1)" in one_line_error(result)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:2 + len(given) + len(added)] == ["-M", "q35", *given, *added]
    assert argv.count("-display") + argv.count("--display=none") == (0 if given[:1] in (["-nographic"], ["-vnc"]) else 1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_profile_kills_its_qemu_when_interrupted(tmp_path: Path, sig: signal.Signals) -> None:
    marker = f"sleep 300.{os.getpid()}{int(sig)}{time.monotonic_ns() % 100000}"  # no other process has this line
    qemu = fake_qemu(tmp_path, f"{marker} & wait")  # a child of its own, as exec: migration makes
    # SIGINT at its default even when the suite runs as a shell's background job (which ignores it)
    proc = subprocess.Popen([*VMIG, "profile", "--timeout", "120", "-o", str(tmp_path / "p.json"), "--", str(qemu)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids(tmp_path), "the fake QEMU never started"
    time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "Traceback" not in err
    time.sleep(0.3)
    started = pids(tmp_path)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert not any(alive(p) for p in started) and not left
    assert not (tmp_path / "p.json").exists()


def test_profile_refuses_daemonize_and_no_command(tmp_path: Path) -> None:
    result = subprocess.run([*VMIG, "profile", "-o", str(tmp_path / "p.json"), "--", "qemu-system-x86_64",
                             "-daemonize"], capture_output=True, text=True, timeout=60)
    assert "-daemonize" in one_line_error(result)


# ---------------------------------------------------------------- reading profiles


def minimal_profile() -> dict:
    doc = {"format": "vmig-profile/1", "vmig": "0", "command": ["q"], "dropped": [], "added": {},
           "qemu": {"version": "10.0.2", "package": "", "arch": "aarch64"},
           "machine": {"name": "virt-8.2", "qom_type": "virt-8.2-machine"},
           "capabilities": {"known": [], "set": []}, "devices": [], "compat_props": {"source": None, "props": []},
           "ram_blocks": [], "configuration_machine": "virt-8.2", "target_page_bits": 12, "stream_capabilities": [],
           "section_footers": True, "vmdesc": True, "sections": [], "cpus": [], "schema": {}}
    doc["digest"] = digest(doc)
    return doc


@pytest.mark.parametrize("mangle, message", [
    (lambda text: text[: len(text) // 2], "not JSON"),
    (lambda text: text.replace('"virt-8.2"', '"virt-8.1"', 1), "does not match its digest"),
    (lambda text: json.dumps({"format": "libvirt-domcaps", "x": 1}), "is not a vmig profile"),
    (lambda text: json.dumps([1, 2]), "not an object"),
    (lambda text: text.replace("vmig-profile/1", "vmig-profile/9"), "vmig-profile/9 profile; this vmig reads"),
    (lambda text: "\udcff", "not"),
])
def test_bad_profiles_are_refused(tmp_path: Path, mangle, message: str) -> None:
    path = tmp_path / "dest.json"
    text = json.dumps(minimal_profile())
    read_profile(_write(path, text))  # the untouched one is fine
    with pytest.raises(InputError, match=message):
        read_profile(_write(path, mangle(text)))


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def test_check_against_a_bad_profile_is_one_line(tmp_path: Path) -> None:
    stream = Path(__file__).parents[1] / "fixtures/captures/qemu-10.0.2__pc-q35-8.2__plain.bin"
    text = json.dumps(minimal_profile())
    for name, content in {"truncated": text[:100], "edited": text.replace("aarch64", "x86_64"),
                          "foreign": '{"name": "libvirt"}'}.items():
        path = _write(tmp_path / f"{name}.json", content)
        result = subprocess.run([*VMIG, "check", str(stream), "--against", str(path)], capture_output=True,
                                text=True, timeout=60)
        one_line_error(result)
    result = subprocess.run([*VMIG, "check", str(stream), "--against", str(path), "--target", "pc-q35-8.2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "does not take --target" in result.stderr


@pytest.mark.qemu
def test_older_qemu_compat_values_are_read_back(qemu72: QemuBinary) -> None:
    """QEMU 7.2 does not report compat properties; the profile reads back, with qom-get, the values
    its devices have for the properties vmig's table from 7.2's source sets on that machine. Real
    QEMU agrees with the table (and the values are not the devices' defaults: 7.2's own machine
    has none of these entries)."""
    devices = ["virtio-rng-pci", "e1000e"]
    old = profile_destination(vm_command(qemu72, "pc-q35-6.0", devices, []), timeout=60)
    assert old["compat_props"]["source"] == "qom-get"
    seen = {(p["driver"], p["property"]): p for p in old["compat_props"]["props"]}
    assert {("virtio-device", "queue_reset"), ("e1000e", "init-vet")} <= set(seen)
    truth = {"on": "true", "off": "false"}
    for p in seen.values():
        assert p["value"] == truth.get(p["compat_value"], p["compat_value"]), p
    new = profile_destination(vm_command(qemu72, "pc-q35-7.2", devices, []), timeout=60)
    assert new["compat_props"]["props"] == []
