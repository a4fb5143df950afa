"""aarch64 QEMU binaries for the tests (qemu-system-aarch64 10.0 on PATH, 7.2 under /opt/qemu-7.2).

Import the fixtures into a test module: ``from armqemu import qemu10_arm, qemu72_arm``. Like
``qemu10``/``qemu72`` they skip when the binary is absent and fail under VMIG_REQUIRE_QEMU=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vfio_ramfb_mig.qemu import QemuBinary, QemuError, qemu_from_path

Q72_PREFIX = Path(os.environ.get("VMIG_Q72_PREFIX", "/opt/qemu-7.2"))
#: the CPU the aarch64 tests run (real-world-captures.md: virt with cortex-a57)
CPU = ["-cpu", "cortex-a57"]


def find_arm(series: str) -> QemuBinary | None:
    try:
        if series == "10.0":
            q = qemu_from_path(os.environ.get("VMIG_QEMU_10_ARM", "qemu-system-aarch64"))
        else:
            q = qemu_from_path(os.environ.get("VMIG_QEMU_72_ARM", str(Q72_PREFIX / "usr/bin/qemu-system-aarch64")),
                               [Q72_PREFIX / "usr/share/qemu"])
    except QemuError:
        return None
    return q if q.series == series else None


def qemu_required(config: pytest.Config) -> bool:
    """As conftest.qemu_required (not imported: tests/fuzz has a conftest module of its own)."""
    return bool(config.getoption("--require-qemu")) or os.environ.get("VMIG_REQUIRE_QEMU") == "1"


def _need(request: pytest.FixtureRequest, series: str) -> QemuBinary:
    q = find_arm(series)
    if q is None:
        msg = f"qemu-system-aarch64 {series} not found (see .ci/run)"
        if qemu_required(request.config):
            pytest.fail(msg + " [VMIG_REQUIRE_QEMU=1: not skipping]", pytrace=False)
        pytest.skip(msg)
    return q


@pytest.fixture(scope="session")
def qemu10_arm(request: pytest.FixtureRequest) -> QemuBinary:
    return _need(request, "10.0")


@pytest.fixture(scope="session")
def qemu72_arm(request: pytest.FixtureRequest) -> QemuBinary:
    return _need(request, "7.2")
