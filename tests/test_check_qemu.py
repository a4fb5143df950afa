"""vmig check against real QEMU: the same streams loaded with `-incoming` into QEMU 10.0.2 and 7.2.22.

For every pair (stream, destination) the test asks real QEMU (vfio_ramfb_mig.qemu.load)
and vmig's verdict, and requires both to agree: accepted iff loadable, and QEMU's
stderr (without its startup "warning:" lines) equal to `Verdict.qemu_output`, line
for line. The VFIODisplay-on-7.2 case needs VFIO hardware to load for real; it is
judged by rule in test_check.py, and here only its no-VFIO-device half is run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import rename_machine, vfio_stream
from paths import CAPTURES
from test_check import CASES, EINVAL, UNKNOWN, case_stream

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.compat.check import check_stream, destination, destinations_data, section_vmsd_name
from vfio_ramfb_mig.qemu import BASE_ARGS, QemuBinary, capture, load

pytestmark = pytest.mark.qemu


def qemu_for(request: pytest.FixtureRequest, series: str) -> QemuBinary:
    return request.getfixturevalue({"10.0": "qemu10", "7.2": "qemu72"}[series])


def real_and_vmig(request: pytest.FixtureRequest, tmp_path: Path, data: bytes, series: str, machine: str,
                  devices: tuple[str, ...] = (), caps: tuple[str, ...] = (), memory: str | None = None,
                  footers: bool = True) -> tuple[bool, tuple[str, ...], bool, tuple[str, ...]]:
    path = tmp_path / "stream.bin"
    path.write_bytes(data)
    result = load(qemu_for(request, series), path, machine, devices=list(devices), capabilities=list(caps),
                  memory=memory or "16M",
                  globals_=[] if footers else ["migration.send-section-footer=off"])
    real = tuple(line for line in result.errors if not line.startswith("warning:"))
    verdict = check_stream(decode(data), destination(qemu=series, machine=machine, devices=devices,
                                                     capabilities=caps, memory=memory, section_footers=footers))
    return result.accepted, real, verdict.loadable, verdict.qemu_output


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_verdict_agrees_with_real_qemu(request: pytest.FixtureRequest, tmp_path: Path, case: str) -> None:
    stream, series, machine, devices, caps, memory, expected = CASES[case]
    accepted, real, loadable, output = real_and_vmig(request, tmp_path, case_stream(stream), series, machine,
                                                     devices, caps, memory)
    assert (accepted, real) == (loadable, output)
    assert real == expected  # and both say what test_check.py pins


@pytest.fixture(scope="session")
def q72_with_ramfb_dev(qemu10: QemuBinary, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A pc-q35-7.2 stream written by QEMU 10.0 with -device ramfb,x-migrate=on: it carries ramfb-dev."""
    out = tmp_path_factory.mktemp("ramfb") / "q35-7.2-ramfb-xmig-on.bin"
    capture(qemu10, out, "pc-q35-7.2", devices=["ramfb,x-migrate=on"])
    data = out.read_bytes()
    assert any(s.idstr == "ramfb-dev" for s in decode(data).sections)
    return data


@pytest.mark.parametrize("series, devices, loads", [
    ("7.2", ("ramfb",), False),   # 7.2's ramfb device has no vmstate: refused even with the device
    ("7.2", (), False),
    ("10.0", ("ramfb",), True),
    ("10.0", (), False),
])
def test_ramfb_dev_section_on_72_and_100(request: pytest.FixtureRequest, tmp_path: Path, q72_with_ramfb_dev: bytes,
                                         series: str, devices: tuple[str, ...], loads: bool) -> None:
    accepted, real, loadable, output = real_and_vmig(request, tmp_path, q72_with_ramfb_dev, series, "pc-q35-7.2",
                                                     devices)
    assert (accepted, real) == (loadable, output)
    assert accepted is loads
    if not loads:
        assert real == (UNKNOWN.format("ramfb-dev", 0), EINVAL)


@pytest.mark.parametrize("series", ["10.0", "7.2"])
def test_vfio_stream_without_a_vfio_device(request: pytest.FixtureRequest, tmp_path: Path, series: str) -> None:
    """The VFIODisplay stream needs a VFIO device at the destination; without one both QEMUs refuse the
    section by name (the with-device half is judged by rule: test_check.py::test_vfio_display_refused_before_82)."""
    accepted, real, loadable, output = real_and_vmig(request, tmp_path, vfio_stream(b"pc-q35-7.2"), series,
                                                     "pc-q35-7.2")
    assert (accepted, real) == (loadable, output) == (False, (UNKNOWN.format("0000:00:02.0/vfio", 0), EINVAL))


def test_ramfb_dev_on_72_by_renamed_machine(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    data = rename_machine((CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin").read_bytes(), "pc-q35-8.2", "pc-q35-7.2")
    accepted, real, loadable, output = real_and_vmig(request, tmp_path, data, "7.2", "pc-q35-7.2", ("ramfb",))
    assert (accepted, real) == (loadable, output) == (False, (UNKNOWN.format("ramfb-dev", 0), EINVAL))


@pytest.mark.parametrize("series", ["10.0", "7.2"])
@pytest.mark.parametrize("stream, loads", [("qemu-10.0.2__pc-q35-7.2__plain.bin", False),
                                           ("qemu-10.0.2__pc-q35-7.2__nofooter.bin", True)])
def test_destination_without_section_footers(request: pytest.FixtureRequest, tmp_path: Path, series: str,
                                             stream: str, loads: bool) -> None:
    accepted, real, loadable, output = real_and_vmig(request, tmp_path, (CAPTURES / stream).read_bytes(), series,
                                                     "pc-q35-7.2", footers=False)
    assert (accepted, real) == (loadable, output)
    assert accepted is loads
    if not loads:
        assert real == ("Unknown savevm section type 126", EINVAL)


def test_bundled_i440fx_72_sections_match_a_fresh_capture(qemu72: QemuBinary, tmp_path: Path) -> None:
    """data/destinations.json.gz's pc-i440fx sections for 7.2 came from a live capture; capture again."""
    out = tmp_path / "i440fx-7.2.bin"
    capture(qemu72, out, "pc-i440fx-7.2")
    stream = decode(str(out))
    rows = [[s.idstr, s.instance_id, section_vmsd_name(s), s.version_id] for s in stream.sections if s.long_header]
    assert rows == destinations_data()["qemu"]["7.2"]["families"]["pc-i440fx"]["sections"]
    assert ".".join(map(str, qemu72.version_tuple)) == destinations_data()["qemu"]["7.2"]["release"]
    # and it loads into 7.2 where vmig says it loads
    result = load(qemu72, out, "pc-i440fx-7.2")
    verdict = check_stream(stream, destination(qemu="7.2", machine="pc-i440fx-7.2"))
    assert result.accepted and verdict.loadable and verdict.qemu_output == ()


def test_a_netdev_user_backend_is_judged_by_profile(qemu10: QemuBinary, tmp_path: Path) -> None:
    """A -netdev user backend saves a "slirp" section. Options cannot tell vmig of netdevs, so check
    refuses it (as QEMU does without the backend) and says why; a profile of the real destination
    has the backend, and check then agrees with QEMU loading the stream."""
    from vfio_ramfb_mig.compat.check.destination import destination_from_profile
    from vfio_ramfb_mig.compat.profile import Profile, profile_destination

    devices, extra = ["virtio-net-pci,netdev=n0"], ["-netdev", "user,id=n0"]
    stream_path = tmp_path / "slirp.bin"
    capture(qemu10, stream_path, "pc-q35-10.0", devices=devices, extra_args=extra)
    stream = decode(str(stream_path))
    assert "slirp" in {s.idstr for s in stream.sections}
    plain = check_stream(stream, destination(qemu="10.0", machine="pc-q35-10.0", devices=("virtio-net-pci",)))
    bare = load(qemu10, stream_path, "pc-q35-10.0", devices=["virtio-net-pci"])  # the NIC without a backend
    assert not plain.loadable and not bare.accepted
    assert plain.qemu_output == tuple(line for line in bare.errors if not line.startswith("warning:"))
    assert "a -netdev user network backend" in plain.findings[0].summary
    command = [*qemu10.argv_prefix, "-machine", "pc-q35-10.0", "-m", "16M", *BASE_ARGS, "-device", devices[0], *extra]
    profiled = check_stream(stream, destination_from_profile(Profile(profile_destination(command), "dest.json")))
    same = load(qemu10, stream_path, "pc-q35-10.0", devices=devices, extra_args=extra)
    assert profiled.loadable and same.accepted, (profiled.findings, same.errors)
