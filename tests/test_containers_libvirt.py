"""Real libvirt: `virsh save` a small guest, decode and re-encode the image with vmig, and
`virsh restore` what vmig wrote (issue 13: a header `virsh restore` accepts).

Marked `libvirt` (not `qemu`): it needs root and libvirt's daemons, which this test starts
itself (`libvirtd -d`, `virtlogd -d`, no systemd) with the qemu.conf a container needs, and
puts everything back after. It skips when libvirtd cannot run here, and fails instead of
skipping under VMIG_REQUIRE_LIBVIRT=1 (CI sets it where .ci/run installed libvirt).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from paths import ROOT
from vfio_ramfb_mig import Source, decode
from vfio_ramfb_mig.cli.main import cli

sys.path.insert(0, str(ROOT / "tools" / "captures"))
import libvirt_saves as lv  # noqa: E402

pytestmark = pytest.mark.libvirt


@pytest.fixture(scope="module")
def libvirt_work() -> Iterator[tuple[lv.LibvirtDaemons, Path]]:
    why = lv.LibvirtDaemons.can_run()
    if why:
        pytest.skip(f"libvirt cannot run here: {why}")
    with lv.workspace() as work, lv.LibvirtDaemons(work) as daemons:
        busy = daemons.acquire()  # other test runs on this machine wait their turn
        if busy:
            pytest.skip(f"libvirt cannot run here: {busy}")
        yield daemons, work


def domstate(name: str = lv.DOMAIN) -> str:
    return lv.virsh("domstate", name, check=False).stdout.strip()


@pytest.mark.parametrize("fmt", ["xz", "raw"])
def test_virsh_restores_what_vmig_rebuilt(libvirt_work: tuple[lv.LibvirtDaemons, Path], fmt: str) -> None:
    daemons, work = libvirt_work
    daemons.start(fmt)
    saved = work / f"saved-{fmt}.save"
    lv.save_domain(work, saved)
    assert domstate() != "running"  # virsh save stops the transient domain
    doc, rebuilt = work / f"{fmt}.json", work / f"rebuilt-{fmt}.save"
    runner = CliRunner()
    result = runner.invoke(cli, ["decode", "--json", str(saved), "-o", str(doc)])
    assert result.exit_code == 0, result.output
    layer = json.loads(doc.read_text())["container"]["layers"][0]
    assert layer["type"] == "libvirt-save" and layer["compression"] == fmt
    result = runner.invoke(cli, ["encode", "--from-json", str(doc), "-o", str(rebuilt)])
    assert result.exit_code == 0, result.output
    with Source.open(str(saved)) as a, Source.open(str(rebuilt)) as b:
        assert bytes(a.buf) == bytes(b.buf)
        assert decode(b).error is None
    try:
        lv.virsh("restore", str(rebuilt))
        deadline = time.monotonic() + 30
        while domstate() != "running" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert domstate() == "running"  # was_running=1: libvirt resumes the guest it restored
    finally:
        lv.destroy()
