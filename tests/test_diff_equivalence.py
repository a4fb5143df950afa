"""Cross-version diff shows what changed, not how each vmdesc spelled it.

aarch64 virt-7.2 saved by QEMU 7.2.22 and by QEMU 10.0.2 (captured live): the CPU's
generic timers are renamed (gt_timer[0] -> gt_timer[GTIMER_PHYS]), pl011's readbuff was
retired into an unused buffer, globalstate's runstate buffer was re-split; the cpreg
arrays are compared register by register. Real QEMU is the judge of the register part:
10.0 refuses 7.2's state because of a register it lacks, and the diff must name one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.diff import diff_streams
from vfio_ramfb_mig.qemu import DEFAULT_CPU, QemuBinary, capture, load
from vfio_ramfb_mig.source import Source

#: the CPU the aarch64 VMs run (qemu10_arm / qemu72_arm come from conftest.py)
CPU = ["-cpu", DEFAULT_CPU["aarch64"]]

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def pair(qemu72_arm: QemuBinary, qemu10_arm: QemuBinary, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("equiv")
    a, b = tmp / "virt-7.2-by-7.2.bin", tmp / "virt-7.2-by-10.0.bin"
    capture(qemu72_arm, a, "virt-7.2", extra_args=CPU)
    capture(qemu10_arm, b, "virt-7.2", extra_args=CPU)
    with Source.open(str(a)) as sa, Source.open(str(b)) as sb:
        result = diff_streams(decode(sa), decode(sb), sa, sb, ignore=("ram",))
    return a, b, result


def test_renamed_and_retired_fields_are_equivalent(pair) -> None:
    _, _, result = pair
    paths = {c.path: c for c in result.changes}
    timers = paths["cpu/gt_timer[0]"]
    assert timers.kind == "equivalent"
    assert timers.text == ("gt_timer[0], gt_timer[1] ≡ gt_timer[GTIMER_PHYS], gt_timer[GTIMER_VIRT]: renamed, "
                           "the same 16 bytes")
    assert paths["pl011/unused"].kind == "equivalent" and paths["pl011/unused"].old == ["readbuff"]
    # none of them shows up as a field only in A or only in B
    assert not [c for c in result.changes if c.kind in ("field_added", "field_removed") and "timer" in c.path]
    assert not [c for c in result.changes if c.group == "pl011" and c.kind != "equivalent"]


def test_resplit_buffer_names_the_byte_that_differs(pair) -> None:
    a, b, result = pair
    (runstate,) = [c for c in result.changes if c.group == "globalstate"]
    assert runstate.kind == "bytes" and runstate.count == 1
    assert "re-split, 100 bytes" in runstate.text and "has_vm_was_suspended" in runstate.text
    assert a.read_bytes()[runstate.old_offset] != b.read_bytes()[runstate.new_offset]


def test_cpregs_register_by_register(pair, qemu10_arm: QemuBinary) -> None:
    a, _, result = pair
    regs = [c for c in result.changes if c.path.startswith("cpu/cpreg_vmstate")]
    only_a = [c for c in regs if c.kind == "field_removed"]
    only_b = [c for c in regs if c.kind == "field_added"]
    assert only_a and only_b and all(c.text.split(":")[1].strip() for c in only_a + only_b)
    values = [c for c in regs if c.kind == "value" and "[" in c.path]
    assert values and all(c.path.startswith("cpu/cpreg_vmstate[") for c in values)
    # no index-by-index noise: the arrays are not compared element by element
    assert not [c for c in regs if c.path in ("cpu/cpreg_vmstate_indexes", "cpu/cpreg_vmstate_values")]
    # a register only in A is one QEMU 10.0 cannot take: real QEMU refuses the 7.2 state
    real = load(qemu10_arm, a, "virt-7.2", extra_args=CPU)
    assert not real.accepted and real.errors[-1] == "load of migration failed: Operation not permitted"
    # the same numbers as the raw arrays say
    cpu_a = next(s for s in decode(str(a)).sections if s.idstr == "cpu")
    indexes = next(f.value for f in cpu_a.body.fields if f.name == "cpreg_vmstate_indexes")
    assert only_a[0].count + sum(1 for x in indexes if x not in set(only_a[0].old)) == len(indexes)


def test_a_region_that_differs_at_its_first_byte_is_not_equivalent(pair, tmp_path: Path) -> None:
    """B with the first byte of pl011's retired buffer (readbuff ≡ unused) changed: the region
    is no longer equivalent, and the change names exactly that byte on both sides."""
    a, b, result = pair
    region = next(c for c in result.changes if c.path == "pl011/unused")
    data = bytearray(b.read_bytes())
    data[region.new_offset] ^= 0xFF
    changed = tmp_path / "b-changed.bin"
    changed.write_bytes(data)
    with Source.open(str(a)) as sa, Source.open(str(changed)) as sb:
        after = diff_streams(decode(sa), decode(sb), sa, sb, ignore=("ram",))
    (pl011,) = [c for c in after.changes if c.group == "pl011"]
    assert (pl011.kind, pl011.count) == ("bytes", 1)
    assert (pl011.old_offset, pl011.new_offset) == (region.old_offset, region.new_offset)
