"""Shared pytest configuration: real-QEMU fixtures, hypothesis profiles.

``qemu10`` / ``qemu72`` (x86_64) and ``qemu10_arm`` / ``qemu72_arm`` (aarch64)
give a :class:`vfio_ramfb_mig.qemu.QemuBinary` or skip the test when that QEMU
is not installed; ``aavmf`` is the path of the aarch64 UEFI firmware (for
``-bios``; ``firmware=`` of capture/load).  With ``--require-qemu`` (or env
``VMIG_REQUIRE_QEMU=1``, which ``.ci/run`` sets) a missing QEMU FAILS the test
instead, and so does any skip of a test marked ``@pytest.mark.qemu``: CI must
really run them.

Property tests (tests/fuzz/ and the hypothesis tests elsewhere) run in every suite
under the "suite" profile: few examples, derandomized (the same examples on every run
and machine, so CI is stable) and no example database. ``make fuzz`` sets
HYPOTHESIS_PROFILE=fuzz: many random examples (VMIG_FUZZ_EXAMPLES, default 1000), no
deadline, failures remembered in .hypothesis/ and printed as reproducible blobs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from vfio_ramfb_mig.qemu import AAVMF_DEFAULT, QemuBinary, find_aavmf, find_qemu, qemu_env_var

settings.register_profile(
    "suite",
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("VMIG_FUZZ_EXAMPLES", "1000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
#: HYPOTHESIS_PROFILE=fuzz (what `make fuzz` sets) or VMIG_FUZZ=1: the long runs
FUZZ = os.environ.get("VMIG_FUZZ") == "1" or os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
settings.load_profile("fuzz" if FUZZ else "suite")

_INSTALL_HINT = {
    ("10.0", "x86_64"): "install qemu-system-x86 from bookworm-backports (see .ci/run)",
    ("7.2", "x86_64"): "unpack Debian bookworm's qemu-system-x86 7.2 into /opt/qemu-7.2 (see .ci/run)",
    ("10.0", "aarch64"): "install qemu-system-arm from bookworm-backports (see .ci/run)",
    ("7.2", "aarch64"): "unpack Debian bookworm's qemu-system-arm 7.2 into /opt/qemu-7.2 (see .ci/run)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-qemu", action="store_true", default=False,
        help="fail (instead of skip) when QEMU 10.0 or 7.2 is missing; also set by VMIG_REQUIRE_QEMU=1",
    )


def qemu_required(config: pytest.Config) -> bool:
    return bool(config.getoption("--require-qemu")) or os.environ.get("VMIG_REQUIRE_QEMU") == "1"


def _missing(request: pytest.FixtureRequest, msg: str) -> None:
    if qemu_required(request.config):
        pytest.fail(msg + " [--require-qemu / VMIG_REQUIRE_QEMU=1: not skipping]", pytrace=False)
    pytest.skip(msg)


def _need_qemu(request: pytest.FixtureRequest, series: str, arch: str = "x86_64") -> QemuBinary:
    q = find_qemu(series, arch=arch)
    if q is None:
        _missing(request, f"QEMU {series} {arch} not found: {_INSTALL_HINT[series, arch]} "
                          f"(or name the binary in env {qemu_env_var(series, arch)})")
    assert q is not None
    return q


@pytest.fixture(scope="session")
def qemu10(request: pytest.FixtureRequest) -> QemuBinary:
    """QEMU 10.0.x (``qemu-system-x86_64`` on PATH, or env VMIG_QEMU_10)."""
    return _need_qemu(request, "10.0")


@pytest.fixture(scope="session")
def qemu72(request: pytest.FixtureRequest) -> QemuBinary:
    """QEMU 7.2.x under /opt/qemu-7.2 (or env VMIG_QEMU_72 / VMIG_QEMU_72_DATADIR)."""
    return _need_qemu(request, "7.2")


@pytest.fixture(scope="session")
def qemu10_arm(request: pytest.FixtureRequest) -> QemuBinary:
    """QEMU 10.0.x aarch64 (``qemu-system-aarch64`` on PATH, or env VMIG_QEMU_10_AARCH64)."""
    return _need_qemu(request, "10.0", "aarch64")


@pytest.fixture(scope="session")
def qemu72_arm(request: pytest.FixtureRequest) -> QemuBinary:
    """QEMU 7.2.x aarch64 under /opt/qemu-7.2 (or env VMIG_QEMU_72_AARCH64), with 7.2's -L dirs."""
    return _need_qemu(request, "7.2", "aarch64")


@pytest.fixture(scope="session")
def aavmf(request: pytest.FixtureRequest) -> Path:
    """AAVMF (UEFI for aarch64 virt, Debian's qemu-efi-aarch64), for ``-bios`` / ``firmware=``."""
    fw = find_aavmf()
    if fw is None:
        _missing(request, f"AAVMF not found at {AAVMF_DEFAULT}: install qemu-efi-aarch64 (see .ci/run; "
                          "env VMIG_AAVMF overrides)")
    assert fw is not None
    return fw


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """When QEMU is required, a skipped ``qemu`` test is a failed test."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("libvirt") is not None
            and os.environ.get("VMIG_REQUIRE_LIBVIRT") == "1"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"libvirt test skipped while VMIG_REQUIRE_LIBVIRT=1: {reason}"
    if (report.skipped and not hasattr(report, "wasxfail")
            and item.get_closest_marker("qemu") is not None and qemu_required(item.config)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"qemu test skipped while QEMU is required: {reason}"
