"""The capture helper (vfio_ramfb_mig.qemu) against real QEMU 10.0 and 7.2.

Paused captures are byte-for-byte reproducible with the same Debian QEMU and
firmware packages, so re-capturing every bundled paused fixture must give
exactly the sha256 recorded in its sidecar.  Load tests record what real QEMU
says about streams (its verdict is the ground truth vmig is judged by).
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import time
from pathlib import Path

import pytest
from paths import CAPTURES

import vfio_ramfb_mig.qemu as vq
from vfio_ramfb_mig.qemu import QemuBinary, QemuError, capture, dump_vmstate, find_qemu, load
from vfio_ramfb_mig.qemurun import QemuRun

DATA = Path(vq.__file__).parent / "data"


def _metas() -> list[tuple[str, dict]]:
    out = []
    for meta in sorted(CAPTURES.glob("*.meta.json")):
        out.append((meta.name[: -len(".meta.json")], json.loads(meta.read_text())))
    return out


PAUSED = [(name, m) for name, m in _metas() if m.get("mode") == "paused"]


def _recapture(q: QemuBinary, meta: dict, out: Path, trace: tuple[str, ...] = ()) -> vq.CaptureResult:
    argv = meta["argv"]
    extra = ["-uuid", argv[argv.index("-uuid") + 1]] if "-uuid" in argv else []
    firmware = (meta.get("firmware") or {}).get("path")
    return capture(
        q, out, meta["machine"],
        devices=meta["devices"], globals_=meta["globals"],
        capabilities=meta["migration_capabilities_set"],
        suppress_vmdesc="suppress-vmdesc=on" in meta.get("machine_options", ""),
        memory=meta.get("memory", "16M"), extra_args=extra, cpu=meta.get("cpu"), firmware=firmware, trace=trace,
    )


# ------------------------------------------------------------ no QEMU needed
def test_bundled_captures_have_sidecars():
    bins = sorted(CAPTURES.glob("*.bin"))
    assert bins, f"no captures in {CAPTURES}"
    for b in bins:
        meta = vq.sidecar_path(b)
        assert meta.is_file(), f"{b.name} has no sidecar"
        m = json.loads(meta.read_text())
        assert m["size"] == b.stat().st_size, b.name
        assert m["sha256"] == vq.sha256_file(b), b.name


def test_sidecar_path():
    assert vq.sidecar_path("x/a.bin") == Path("x/a.meta.json")
    assert vq.sidecar_path("x/a.stream") == Path("x/a.stream.meta.json")


def test_unknown_series_is_an_error():
    with pytest.raises(ValueError):
        find_qemu("9.1")


def test_missing_binary_gives_none(monkeypatch, tmp_path):
    monkeypatch.setenv("VMIG_QEMU_10", str(tmp_path / "no-such-qemu"))
    monkeypatch.setenv("VMIG_QEMU_72", str(tmp_path / "no-such-qemu"))
    assert find_qemu("10.0") is None
    assert find_qemu("7.2") is None


def _fake_qemu(tmp_path: Path, version_line: str) -> Path:
    p = tmp_path / "qemu-system-x86_64"
    p.write_text(f"#!/bin/sh\necho '{version_line}'\necho 'Copyright (c) 2003-2025'\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def test_version_must_match_series(monkeypatch, tmp_path):
    fake = _fake_qemu(tmp_path, "QEMU emulator version 9.1.3 (Debian 1:9.1.3)")
    monkeypatch.setenv("VMIG_QEMU_10", str(fake))
    assert find_qemu("10.0") is None
    q = find_qemu("10.0", strict=False)
    assert q is not None and q.version == "9.1.3" and q.series == "9.1"
    assert q.argv_prefix == (str(fake),)


def test_72_datadirs_from_env(monkeypatch, tmp_path):
    fake = _fake_qemu(tmp_path, "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)")
    monkeypatch.setenv("VMIG_QEMU_72", str(fake))
    monkeypatch.setenv("VMIG_QEMU_72_DATADIR", f"{tmp_path}/a:{tmp_path}/b")
    q = find_qemu("7.2")
    assert q is not None and q.version == "7.2.22" and not q.has_file_uri
    assert q.argv_prefix == (str(fake), "-L", f"{tmp_path}/a", "-L", f"{tmp_path}/b")


def test_architecture_from_the_binary_name():
    assert vq.arch_of("/usr/bin/qemu-system-aarch64") == "aarch64"
    assert vq.arch_of("qemu-system-x86_64") == "x86_64"
    assert vq.arch_of("/opt/qemu-7.2/usr/bin/qemu-system-aarch64") == "aarch64"


def test_unknown_architecture_is_an_error():
    with pytest.raises(ValueError):
        find_qemu("10.0", arch="riscv64")


def test_aarch64_binaries_from_env(monkeypatch, tmp_path):
    a10 = tmp_path / "10" / "qemu-system-aarch64"
    a72 = tmp_path / "72" / "bin" / "qemu-system-aarch64"
    for p, line in ((a10, "QEMU emulator version 10.0.2 (Debian)"), (a72, "QEMU emulator version 7.2.22 (Debian)")):
        p.parent.mkdir(parents=True)
        p.write_text(f"#!/bin/sh\necho '{line}'\n")
        p.chmod(0o755)
    (tmp_path / "72" / "share" / "qemu").mkdir(parents=True)
    monkeypatch.setenv("VMIG_QEMU_10_AARCH64", str(a10))
    monkeypatch.setenv("VMIG_QEMU_72_AARCH64", str(a72))
    monkeypatch.delenv("VMIG_QEMU_72_DATADIR", raising=False)
    q10 = find_qemu("10.0", arch="aarch64")
    q72 = find_qemu("7.2", arch="aarch64")
    assert q10 is not None and q10.arch == "aarch64" and q10.default_cpu == "cortex-a57"
    # an unpacked 7.2 elsewhere gets the -L directories of its own prefix
    assert q72 is not None and q72.argv_prefix == (str(a72), "-L", str(tmp_path / "72" / "share" / "qemu"))
    assert vq.qemu_env_var("7.2", "aarch64") == "VMIG_QEMU_72_AARCH64"


def test_aavmf_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VMIG_AAVMF", str(tmp_path / "none.fd"))
    assert vq.find_aavmf() is None
    (tmp_path / "QEMU_EFI.fd").write_bytes(b"x")
    monkeypatch.setenv("VMIG_AAVMF", str(tmp_path / "QEMU_EFI.fd"))
    assert vq.find_aavmf() == tmp_path / "QEMU_EFI.fd"


def test_qemu_error_carries_stderr():
    e = QemuError("boom", stderr="qemu-system-x86_64: bad thing\n", argv=["q"], returncode=1)
    assert "bad thing" in str(e) and "exit status 1" in str(e) and e.argv == ["q"]


def test_a_qemu_that_stops_answering_is_killed_at_the_deadline(tmp_path):
    """A QEMU that greets and then says nothing more: the command waits until the run's deadline, the
    error says so with QEMU's last words, and the process is gone (the whole group: sh and its sleep)."""
    fake = tmp_path / "fake-qemu"
    fake.write_text("#!/bin/sh\necho '{\"QMP\": {\"version\": {}, \"capabilities\": []}}'\n"
                    "echo 'qemu-system-x86_64: stuck' >&2\nsleep 300 & echo $! > sleeper; wait\n")
    fake.chmod(0o755)
    with pytest.raises(QemuError, match=r"^test: QEMU did not answer within 1 s: stuck$"):
        with QemuRun([str(fake)], timeout=1, what="test", qmp="stdio", cwd=tmp_path) as run:
            run.connect()
    sleeper = int((tmp_path / "sleeper").read_text())
    assert run.returncode() is not None

    def sleeper_gone() -> bool:
        try:
            return Path(f"/proc/{sleeper}/stat").read_text().split(") ")[1][0] == "Z"
        except FileNotFoundError:
            return True

    # SIGKILL went to the group; on a busy machine the sleep may not have been scheduled to die yet
    deadline = time.monotonic() + 10
    while not sleeper_gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeper_gone()


# ------------------------------------------------------------------ live QEMU
def _qemu_for(meta: dict, request: pytest.FixtureRequest) -> QemuBinary:
    ver = meta["qemu"]["version"]
    fixture = {"10.0": "qemu10", "7.2": "qemu72"}[".".join(ver.split(".")[:2])]
    if meta.get("arch", "x86_64") == "aarch64":
        fixture += "_arm"
    q = request.getfixturevalue(fixture)
    if q.version != ver:
        pytest.fail(f"fixture was made by QEMU {ver}, installed is {q.version}")
    return q


#: QEMU ends a RAM pass early once it has taken more than 50 ms of wall-clock time (migration/ram.c,
#: MAX_WAIT) and sends the remaining pages in another section part: the same pages, cut at another
#: place, other bytes. A paused 16 MiB guest's pass takes a few ms, but on a loaded machine (a
#: descheduled migration thread, a write stalled on a busy disk) it can take longer. This trace
#: event is QEMU saying it did so; a 2 GiB guest's capture (passes of ~0.2 s) shows it every time.
CUT_FOR_TIME = "ram_save_iterate_big_wait"
#: captures tried before a loaded machine is blamed; every one of them must be cut for time
ATTEMPTS = 5


@pytest.mark.qemu
@pytest.mark.parametrize("name,meta", PAUSED, ids=[n for n, _ in PAUSED])
def test_paused_capture_is_reproducible(name, meta, request, tmp_path):
    """Byte for byte the bundled stream. Only an attempt QEMU itself cut short for time is tried
    again: a stream that differs otherwise fails at once."""
    q = _qemu_for(meta, request)
    out = tmp_path / f"{name}.bin"
    for _ in range(ATTEMPTS):
        res = _recapture(q, meta, out, trace=(CUT_FOR_TIME,))
        assert res.query_migrate["status"] == "completed"
        if (res.size, res.sha256) == (meta["size"], meta["sha256"]):
            break
        assert res.sidecar["trace_counts"][CUT_FOR_TIME], \
            f"the stream differs ({res.size} bytes, {meta['size']} bundled) and QEMU cut no RAM pass for time"
    else:
        pytest.fail(f"QEMU cut a RAM pass short for time in all {ATTEMPTS} captures: the machine is too loaded")
    assert out.stat().st_size == meta["size"] and vq.sha256_file(out) == meta["sha256"]
    # the sidecar describes the capture; nothing but the stream is left in the directory
    sc = res.sidecar
    assert sc["sha256"] == meta["sha256"] and sc["size"] == meta["size"]
    assert sc["machine"] == meta["machine"] and sc["devices"] == meta["devices"]
    assert sc["qemu"]["version"] == q.version and "-S" in sc["argv"]
    assert sc["migrate_uri"].startswith("file:" if q.has_file_uri else "exec:cat > ")
    assert sorted(os.listdir(tmp_path)) == [out.name]


def test_bundled_paused_set_covers_both_qemus():
    versions = {m["qemu"]["version"] for _, m in PAUSED}
    assert {"10.0.2", "7.2.22"} <= versions


@pytest.mark.qemu
def test_capture_cli_writes_bin_and_sidecar(qemu10, tmp_path):
    out = tmp_path / "cli.bin"
    rc = vq.main(["capture", "--qemu", qemu10.path, "--machine", "pc-q35-8.2", "--device", "ramfb",
                  "-o", str(out)])
    assert rc == 0
    meta = json.loads((tmp_path / "cli.meta.json").read_text())
    ref = json.loads((CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.meta.json").read_text())
    assert meta["sha256"] == ref["sha256"] == vq.sha256_file(out)
    assert meta["format"] == "vmig-capture/1" and meta["devices"] == ["ramfb"]


@pytest.mark.qemu
@pytest.mark.parametrize("umask", [0o002, 0o077])
def test_capture_files_honour_the_umask(qemu10, tmp_path, umask):
    """The stream, its sidecar and a -dump-vmstate are output files like vmig's own: 0666 less the umask."""
    before = os.umask(umask)
    try:
        rc = vq.main(["capture", "--qemu", qemu10.path, "--machine", "pc-q35-8.2", "-o", str(tmp_path / "c.bin")])
        dump = dump_vmstate(qemu10, "pc-q35-8.2", tmp_path / "dump.json.gz")
    finally:
        os.umask(before)
    assert rc == 0
    for written in (tmp_path / "c.bin", tmp_path / "c.meta.json", dump):
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask, written.name


@pytest.mark.qemu
def test_failed_capture_raises_with_stderr_and_leaves_nothing(qemu10, tmp_path):
    out = tmp_path / "bad.bin"
    with pytest.raises(QemuError) as ei:
        capture(qemu10, out, "pc-q35-8.2", devices=["no-such-device"], timeout=30)
    assert "not a valid device model name" in ei.value.stderr
    assert "not a valid device model name" in str(ei.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.qemu
def test_qmp_events_are_kept_not_taken_for_replies(qemu10, tmp_path):
    """cont and stop make QEMU send RESUME and STOP between replies: the sidecar keeps them, and
    each command still gets its own reply."""
    res = capture(qemu10, tmp_path / "b.bin", "pc-q35-8.2", booted_seconds=0.5)
    events = [e["event"] for e in res.sidecar["qmp_events"]]
    assert events.index("RESUME") < events.index("STOP")
    assert res.sidecar["query_status_before_migrate"]["status"] == "paused"
    assert isinstance(res.sidecar["query_migrate_capabilities"], list)


@pytest.mark.qemu
def test_72_has_no_82_machine(qemu72, tmp_path):
    with pytest.raises(QemuError) as ei:
        capture(qemu72, tmp_path / "x.bin", "pc-q35-8.2", timeout=30)
    assert "unsupported machine type" in ei.value.stderr
    assert "pc-q35-8.2" not in qemu72.machines()


@pytest.mark.qemu
def test_ramfb_dev_section_is_refused_by_72(qemu10, qemu72, tmp_path):
    # 10.0 on the 7.2 machine type: x-migrate=on forces a ramfb-dev section that 7.2 never had
    stream = tmp_path / "q10-pc-q35-7.2-ramfb-xmig-on.bin"
    capture(qemu10, stream, "pc-q35-7.2", devices=["ramfb,x-migrate=on"])
    v = load(qemu72, stream, "pc-q35-7.2", devices=["ramfb"])
    assert not v.accepted and v.status == "failed"
    assert v.qemu_exited and v.returncode not in (0, None)
    assert "Unknown savevm section or instance 'ramfb-dev' 0" in v.stderr
    assert "load of migration failed" in v.stderr
    # ...and the same stream is fine for 10.0 itself
    assert load(qemu10, stream, "pc-q35-7.2", devices=["ramfb,x-migrate=on"]).accepted


@pytest.mark.qemu
@pytest.mark.parametrize("devices", [(), ("ramfb",)], ids=["no-ramfb", "ramfb"])
def test_10_made_72_stream_is_accepted_by_72(qemu72, devices):
    # With the default x-migrate (off on pc-q35-7.2) 10.0 writes no ramfb-dev section,
    # and QEMU 7.2 accepts 10.0's pc-q35-7.2 stream (with or without a ramfb device).
    for name in ("qemu-10.0.2__pc-q35-7.2__plain.bin", "qemu-10.0.2__pc-q35-7.2__ramfb.bin"):
        v = load(qemu72, CAPTURES / name, "pc-q35-7.2", devices=devices)
        assert v.accepted and v.status == "completed", (name, v.stderr)
        assert v.returncode == 0 and not v.qemu_exited


@pytest.mark.qemu
def test_72_stream_is_accepted_by_10(qemu10):
    v = load(qemu10, CAPTURES / "qemu-7.2.22__pc-q35-7.2__plain.bin", "pc-q35-7.2")
    assert v.accepted and v.status == "completed", v.stderr


@pytest.mark.qemu
def test_machine_type_mismatch_is_refused(qemu10):
    v = load(qemu10, CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin", "pc-q35-8.1", devices=["ramfb"])
    assert not v.accepted
    assert "Machine type received is 'pc-q35-8.2' and local is 'pc-q35-8.1'" in v.stderr


@pytest.mark.qemu
def test_missing_ramfb_device_is_refused_by_10(qemu10):
    v = load(qemu10, CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin", "pc-q35-8.2")
    assert not v.accepted
    assert "Unknown savevm section or instance 'ramfb-dev' 0" in v.stderr
    assert load(qemu10, CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin", "pc-q35-8.2",
                devices=["ramfb"]).accepted


@pytest.mark.qemu
def test_load_capabilities_must_match(qemu10):
    s = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+cap-x-ignore-shared.bin"
    v = load(qemu10, s, "pc-q35-10.0", devices=["ramfb"])
    assert not v.accepted
    assert "Capability x-ignore-shared is off, but received capability is on" in v.stderr
    assert load(qemu10, s, "pc-q35-10.0", devices=["ramfb"], capabilities=["x-ignore-shared"]).accepted


@pytest.mark.qemu
def test_nofooter_stream_needs_matching_global(qemu72):
    s = CAPTURES / "qemu-10.0.2__pc-q35-7.2__nofooter.bin"
    v = load(qemu72, s, "pc-q35-7.2")
    assert not v.accepted and "Missing section footer for ram" in v.stderr
    assert load(qemu72, s, "pc-q35-7.2", globals_=["migration.send-section-footer=off"]).accepted


@pytest.mark.qemu
def test_truncated_stream_is_refused(qemu10, tmp_path):
    src = (CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(src[:100_000])
    v = load(qemu10, cut, "pc-q35-8.2", devices=["ramfb"])
    assert not v.accepted and "error while loading state section id" in v.stderr


@pytest.mark.qemu
def test_load_cli_verdict(qemu72, capsys):
    rc = vq.main(["load", "--qemu", "7.2", "--machine", "pc-q35-7.2",
                  str(CAPTURES / "qemu-7.2.22__pc-q35-7.2__plain.bin")])
    assert rc == 0 and "ACCEPTED" in capsys.readouterr().out


VMSTATE_DATA = sorted(DATA.glob("vmstate-qemu-*.json.gz")) if DATA.is_dir() else []


@pytest.mark.qemu
@pytest.mark.parametrize("data", VMSTATE_DATA, ids=[p.name for p in VMSTATE_DATA])
def test_dump_vmstate_matches_bundled_data(data, request, tmp_path):
    bundled = json.loads(gzip.decompress(data.read_bytes()))
    ver, _, arch = data.name[len("vmstate-qemu-"): -len(".json.gz")].partition("-")  # 10.0.2[-aarch64]
    q = _qemu_for({"qemu": {"version": ver}, "arch": arch or "x86_64"}, request)
    machine = bundled["vmschkmachine"]["Name"]
    out = dump_vmstate(q, machine, tmp_path / "dump.json.gz")
    again = dump_vmstate(q, machine, tmp_path / "again.json.gz")
    assert out.read_bytes() == again.read_bytes()  # gzip without timestamps: reproducible
    assert json.loads(gzip.decompress(out.read_bytes())) == bundled


# ---------------------------------------------------------------- aarch64 virt
RAMFB_DEV = b"\x09ramfb-dev"


@pytest.mark.qemu
def test_aarch64_virt_capture_and_load(qemu10_arm, qemu72_arm, tmp_path):
    # virt-8.2 migrates ramfb (ramfb-dev section); virt-8.1 does not (hw_compat_8_1)
    res = capture(qemu10_arm, tmp_path / "v82.bin", "virt-8.2", devices=["ramfb"])
    assert res.sidecar["arch"] == "aarch64" and res.sidecar["cpu"] == "cortex-a57"
    assert ["-cpu", "cortex-a57"] == res.argv[res.argv.index("-cpu"):res.argv.index("-cpu") + 2]
    assert RAMFB_DEV in res.path.read_bytes()
    assert load(qemu10_arm, res.path, "virt-8.2", devices=["ramfb"]).accepted
    v = load(qemu10_arm, res.path, "virt-8.2")
    assert not v.accepted and "Unknown savevm section or instance 'ramfb-dev' 0" in v.stderr
    assert RAMFB_DEV not in capture(qemu10_arm, tmp_path / "v81.bin", "virt-8.1", devices=["ramfb"]).path.read_bytes()
    # QEMU 7.2's own aarch64 build: exec: URI, its stream loads into itself
    r72 = capture(qemu72_arm, tmp_path / "v72.bin", "virt-7.2", devices=["ramfb"])
    assert r72.sidecar["migrate_uri"].startswith("exec:cat > ") and RAMFB_DEV not in r72.path.read_bytes()
    assert load(qemu72_arm, r72.path, "virt-7.2", devices=["ramfb"]).accepted


@pytest.mark.qemu
def test_firmware_goes_into_argv_and_sidecar(qemu10_arm, aavmf, tmp_path):
    res = capture(qemu10_arm, tmp_path / "fw.bin", "virt-8.2", firmware=aavmf)
    assert res.argv[res.argv.index("-bios") + 1] == str(aavmf)
    assert res.sidecar["firmware"]["sha256"] == vq.sha256_file(aavmf)
    # the firmware image sits in the first flash RAM block of the (paused) stream
    assert aavmf.read_bytes()[:4096] in res.path.read_bytes()
    assert load(qemu10_arm, res.path, "virt-8.2", firmware=aavmf).accepted


# ------------------------------------------------------------ running guests
DIRTIER = CAPTURES.parent / "live" / "dirtier.img"


def test_dirtier_kernel_is_the_scripts():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dirtier", CAPTURES.parents[1] / "tools" / "captures" / "dirtier.py")
    dirtier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dirtier)
    data = dirtier.kernel()
    assert DIRTIER.read_bytes() == data and len(data) == 55
    # the framebuffer dirtier of live+xbzrle+ramfb: the same loop over 12-13 MiB
    fb = DIRTIER.with_name("dirtier-fb.img").read_bytes()
    assert fb == dirtier.kernel(0xC00000, 0xD00000) and fb != data
    magic, flags, checksum = (int.from_bytes(data[i:i + 4], "little") for i in (0, 4, 8))
    assert magic == 0x1BADB002 and (magic + flags + checksum) % (1 << 32) == 0  # the multiboot rule


def test_helper_bits_without_qemu(tmp_path):
    ram = tmp_path / "ram"
    ram.write_bytes(bytes(4096) + b"\1" + bytes(4095) + bytes(1 << 20))
    d = vq.guest_ram_digest(ram, "pc.ram")
    assert d["nonzero_pages"] == 1 and d["size"] == 8192 + (1 << 20) and len(d["sha256_per_mib"]) == 2
    assert vq._migrate_value({"ram": {"dirty-sync-count": 5}}, "ram.dirty-sync-count") == 5
    assert vq._migrate_value({"ram": {}}, "xbzrle-cache.pages") == 0
    log = tmp_path / "trace.log"
    log.write_text("123@1.5:save_xbzrle_page_skipping \nsave_xbzrle_page_overflow \nram_save_page pc.ram\n"
                   "save_xbzrle_page_skipping \n")
    assert vq._count_trace(str(log), ["save_xbzrle_page_skipping", "ram_save_page"]) == {
        "save_xbzrle_page_skipping": 2, "ram_save_page": 1}
    with pytest.raises(ValueError):
        capture(QemuBinary("q", "10.0.2", ""), tmp_path / "x.bin", "q35", booted_seconds=1, live_seconds=1)
    with pytest.raises(ValueError, match="keys"):  # typed into a guest that runs on while it migrates
        capture(QemuBinary("q", "10.0.2", ""), tmp_path / "x.bin", "q35", wait_screen=5, keys=["a"])


@pytest.mark.qemu
def test_live_capture_iterates_until_told(qemu10, tmp_path):
    params = {"downtime-limit": 1, "max-bandwidth": 8_000_000, "avail-switchover-bandwidth": 1_000_000}
    res = capture(qemu10, tmp_path / "live.bin", "pc-q35-10.0", kernel=DIRTIER, live_seconds=0.5,
                  parameters=params, switchover_after={"ram.dirty-sync-count": 3}, hash_ram=True,
                  trace=["ram_save_page"], timeout=60)
    sc = res.sidecar
    assert sc["mode"] == "live" and sc["kernel"]["sha256"] == vq.sha256_file(DIRTIER)
    assert sc["switchover"]["query_migrate"]["ram"]["dirty-sync-count"] >= 3
    assert sc["switchover"]["set"] == {"downtime-limit": vq.SWITCHOVER_DOWNTIME_MS, "avail-switchover-bandwidth": 0}
    ram = sc["query_migrate"]["ram"]
    assert ram["dirty-sync-count"] > 3 and sc["trace_counts"]["ram_save_page"] == ram["normal"]
    # the dirtied pages went more than once: more pages sent than the RAM has pages with data
    assert ram["normal"] > sc["guest_ram"]["nonzero_pages"] + 256
    v = load(qemu10, res.path, "pc-q35-10.0", hash_ram=True)
    assert v.accepted and v.guest_ram["sha256"] == sc["guest_ram"]["sha256"]
    assert sorted(os.listdir(tmp_path)) == ["live.bin"]


@pytest.mark.qemu
def test_failed_migration_kept_only_when_allowed(qemu10, tmp_path):
    kw = dict(capabilities=["postcopy-ram"], kernel=DIRTIER, live_seconds=0.2, timeout=60)
    with pytest.raises(QemuError, match="migration failed"):
        capture(qemu10, tmp_path / "no.bin", "pc-q35-10.0", **kw)
    assert os.listdir(tmp_path) == []
    res = capture(qemu10, tmp_path / "pc.bin", "pc-q35-10.0", hash_ram=True, allow_failed=True, **kw)
    assert res.query_migrate["status"] == "failed" and res.sidecar["guest_ram"] is None
    # QEMU may fail the migration before a poll sees it active: the counters are then absent,
    # but whatever it did report must show pages sent, and the kept stream must hold RAM
    last_active = res.sidecar["query_migrate_last_active"]
    assert last_active is None or last_active["ram"]["normal"] > 0
    assert res.sidecar["size"] > 1 << 20
    assert load(qemu10, res.path, "pc-q35-10.0", capabilities=["postcopy-ram"]).accepted


@pytest.mark.qemu
def test_keys_typed_once_the_screen_settled_then_live(qemu10, tmp_path):
    """wait_screen with live_seconds: the guest runs on after its screen settled, gets the keys
    (QEMU's send-key: a key code it does not know fails the capture) and migrates running."""
    rc = vq.main(["capture", "--qemu", qemu10.path, "--machine", "pc-q35-10.0", "--device", "ramfb",
                  "--wait-screen", "60", "--live", "0.2", "--key", "a", "--key", "shift+b", "--key", "ret",
                  "--timeout", "90", "-o", str(tmp_path / "k.bin")])
    assert rc == 0
    sc = json.loads((tmp_path / "k.meta.json").read_text())
    assert sc["mode"] == "live" and sc["screen"]["settled_after_s"] >= 3
    assert sc["keys"] == ["a", ["shift", "b"], "ret"] and sc["query_status_before_migrate"]["running"]
    with pytest.raises(QemuError, match="send-key"):
        capture(qemu10, tmp_path / "no.bin", "pc-q35-10.0", devices=["ramfb"], wait_screen=60, live_seconds=0.2,
                keys=["no-such-key"], timeout=90)
    assert sorted(os.listdir(tmp_path)) == ["k.bin", "k.meta.json"]


@pytest.mark.qemu
def test_wait_screen_then_screendump(qemu10, tmp_path):
    # SeaBIOS's ramfb VGA BIOS sets a mode within a second or two of TCG
    png = tmp_path / "screen.png"
    res = capture(qemu10, tmp_path / "s.bin", "pc-q35-10.0", devices=["ramfb"], wait_screen=60, screendump=png)
    sc = res.sidecar
    assert sc["mode"] == "screen" and sc["screen"]["settled_after_s"] >= 3
    assert sc["screendump"]["sha256"] == vq.sha256_file(png)
    assert tuple(sc["screendump"]["size"]) == tuple(sc["screen"]["size"]) != tuple(sc["screen"]["initial_size"])
    assert sc["query_status_before_migrate"]["status"] == "paused"
