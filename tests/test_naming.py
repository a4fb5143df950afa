"""One spelling of section names, field paths and ignore patterns (vfio_ramfb_mig.naming),
shared by vmig diff, golden files and vmig check: the same place has the same path in all three."""

from __future__ import annotations

import pytest
from paths import CAPTURES

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.diff import diff_streams
from vfio_ramfb_mig.golden import golden_of_path
from vfio_ramfb_mig.naming import IgnorePatterns, element, is_ignored, level_names, section_name, subsection_name
from vfio_ramfb_mig.source import Source

Q72_PLAIN_72 = CAPTURES / "qemu-7.2.22__pc-q35-7.2__plain.bin"
Q72_PLAIN_10 = CAPTURES / "qemu-10.0.2__pc-q35-7.2__plain.bin"


@pytest.mark.parametrize("pattern, path, ignored", [
    ("ram", "ram/pc.ram", True),
    ("ram", "ramfb-dev/state/cfg/width", False),
    ("timer", "timer/cpu_ticks_offset", True),
    ("cpu/env.tsc*", "cpu/env.tsc_aux", True),
    ("cpu/env.tsc*", "cpu/env.eip", False),
    ("*/cfg/width", "ramfb-dev/state/cfg/width", True),
    ("dma#1", "dma#1/mask", True),
    ("dma#1", "dma/mask", False),
    # the golden spelling of an iterative section's records sits below the section's own name
    ("0000:00:02.0/vfio", "0000:00:02.0/vfio/@start/markers", True),
    ("*/ahci/dev[[]5]", "0000:00:1f.2/ich9_ahci/ahci/dev[5]/port_no", True),
    ("*/ahci/dev[[]5]", "0000:00:1f.2/ich9_ahci/ahci/dev[4]/port_no", False),
])
def test_is_ignored(pattern: str, path: str, ignored: bool) -> None:
    assert is_ignored(path, (pattern,)) is ignored
    assert IgnorePatterns([pattern])(path) is ignored


def test_no_patterns_ignore_nothing() -> None:
    assert not IgnorePatterns() and not IgnorePatterns()("ram") and not is_ignored("ram", ())


def test_section_key() -> None:
    assert section_name("dma", 0) == "dma" and section_name("dma", 1) == "dma#1"
    assert section_name("dma", None) == "dma"
    assert section_name("bad\udcffname", 0) == "bad\\xffname"  # undecodable idstr bytes, escaped


def test_subsections_and_elements() -> None:
    assert subsection_name("cpu", "cpu/tsc_khz") == "tsc_khz"
    assert subsection_name("VFIOPCIDevice", "VFIOPCIDevice/VFIODisplay") == "VFIODisplay"
    assert subsection_name("cpu", "other/name") == "other/name"
    assert element("irq_state", 2) == "irq_state[2]"


def test_level_names() -> None:
    # QEMU >= 8.0 writes the last element of a non-compressible array as the bare name
    assert level_names(["dev[0]", "dev[1]", "dev", "ports"]) == ["dev[0]", "dev[1]", "dev[2]", "ports"]
    # a name listed twice at one level, and a subsection named like a field
    assert level_names(["tsc", "tsc", "tsc"]) == ["tsc", "tsc~2", "tsc~3"]
    # ... but a bare name that holds an array of its own is another field (arm's vmstate_vfp:
    # env.vfp.xregs[0] one register, then env.vfp.xregs a sub-array from index 2)
    assert level_names(["env.vfp.xregs[0]", "env.vfp.xregs"], arrays={1}) == ["env.vfp.xregs[0]", "env.vfp.xregs"]


def test_one_path_for_one_field_in_diff_golden_and_check() -> None:
    """The AHCI port array of pc-q35-7.2: QEMU 7.2 names its last element dev[5], 10.0 "dev";
    diff, the golden and check all call it .../dev[5], and ignore it by that name."""
    golden = golden_of_path(Q72_PLAIN_10)
    paths = {e.path for e in golden.entries}
    assert "0000:00:1f.2/ich9_ahci/ahci/dev[5]/port_state" in paths
    assert not any(p.startswith("0000:00:1f.2/ich9_ahci/ahci/dev/") for p in paths)
    # 7.2's own spelling of the array lands on the same paths
    assert {e.path for e in golden_of_path(Q72_PLAIN_72).entries if "/ahci/dev[" in e.path} == \
        {p for p in paths if "/ahci/dev[" in p}
    # the subsection fw_cfg/acpi_mr of fw_cfg: one name, in the golden and in diff
    assert "fw_cfg/acpi_mr/@version" in paths
    with Source.open(str(Q72_PLAIN_72)) as sa, Source.open(str(Q72_PLAIN_10)) as sb:
        a, b = decode(sa), decode(sb)
        result = diff_streams(a, b, sa, sb)
        ignored = diff_streams(a, b, sa, sb, ignore=("0000:00:1f.2/ich9_ahci/ahci/ports",))
    assert "0000:00:1f.2/ich9_ahci/ahci/ports" in {c.path for c in result.changes}
    assert "0000:00:1f.2/ich9_ahci/ahci/ports" in paths  # the golden has the path diff reports
    assert "0000:00:1f.2/ich9_ahci/ahci/ports" not in {c.path for c in ignored.changes}
    assert any(e.group == "dma#1" for e in golden.entries)  # as diff and check name it (test_check.py)
