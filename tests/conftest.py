"""Shared pytest configuration: real-QEMU fixtures.

``qemu10`` / ``qemu72`` give a :class:`vfio_ramfb_mig.qemu.QemuBinary` or skip
the test when that QEMU is not installed.  With ``--require-qemu`` (or env
``VMIG_REQUIRE_QEMU=1``, which ``.ci/run`` sets) a missing QEMU FAILS the test
instead, and so does any skip of a test marked ``@pytest.mark.qemu``: CI must
really run them.
"""

from __future__ import annotations

import os

import pytest

from vfio_ramfb_mig.qemu import QemuBinary, find_qemu

_INSTALL_HINT = {
    "10.0": "install qemu-system-x86 from bookworm-backports (see .ci/run)",
    "7.2": "unpack Debian bookworm's qemu-system-x86 7.2 into /opt/qemu-7.2 (see .ci/run)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-qemu", action="store_true", default=False,
        help="fail (instead of skip) when QEMU 10.0 or 7.2 is missing; also set by VMIG_REQUIRE_QEMU=1",
    )


def qemu_required(config: pytest.Config) -> bool:
    return bool(config.getoption("--require-qemu")) or os.environ.get("VMIG_REQUIRE_QEMU") == "1"


def _need_qemu(request: pytest.FixtureRequest, series: str) -> QemuBinary:
    q = find_qemu(series)
    if q is None:
        msg = f"QEMU {series} not found: {_INSTALL_HINT[series]}"
        if qemu_required(request.config):
            pytest.fail(msg + " [--require-qemu / VMIG_REQUIRE_QEMU=1: not skipping]", pytrace=False)
        pytest.skip(msg)
    return q


@pytest.fixture(scope="session")
def qemu10(request: pytest.FixtureRequest) -> QemuBinary:
    """QEMU 10.0.x (``qemu-system-x86_64`` on PATH, or env VMIG_QEMU_10)."""
    return _need_qemu(request, "10.0")


@pytest.fixture(scope="session")
def qemu72(request: pytest.FixtureRequest) -> QemuBinary:
    """QEMU 7.2.x under /opt/qemu-7.2 (or env VMIG_QEMU_72 / VMIG_QEMU_72_DATADIR)."""
    return _need_qemu(request, "7.2")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """When QEMU is required, a skipped ``qemu`` test is a failed test."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail")
            and item.get_closest_marker("qemu") is not None and qemu_required(item.config)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"qemu test skipped while QEMU is required: {reason}"
