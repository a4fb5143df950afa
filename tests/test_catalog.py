"""The bundled machine data (data/machines.json.gz) against the QEMU binaries it came from.

tools/machines_data.py wrote it; these tests ask the binaries again (-machine help,
query-machines) and require the same answers, so stale data fails CI.
"""

from __future__ import annotations

import pytest

from vfio_ramfb_mig.compat import catalog
from vfio_ramfb_mig.compat.machines import FAMILY_ARCH, MACHINES
from vfio_ramfb_mig.compat.props import compat_props
from vfio_ramfb_mig.qemurun import QemuRun
from vfio_ramfb_mig.errors import CompatError
from vfio_ramfb_mig.qemu import QemuBinary

FIXTURE = {("x86_64", "10.0"): "qemu10", ("x86_64", "7.2"): "qemu72",
           ("aarch64", "10.0"): "qemu10_arm", ("aarch64", "7.2"): "qemu72_arm"}


def test_every_build_and_family_is_bundled() -> None:
    names = {(b.arch, b.series) for b in catalog.all_builds()}
    assert names == set(FIXTURE)
    for b in catalog.all_builds():
        for family in catalog.JUDGED_FAMILIES:
            if b.arch == ("aarch64" if family == "virt" else "x86_64"):
                versions = [m for m in b.machines.values() if m.family == family]
                assert versions and all(m.stock or m.stock_error for m in versions)
                newest = max(versions, key=lambda m: m.version)
                assert newest.version[:2] == b.version[:2] and newest.stock is not None


def test_virt_machines_per_build() -> None:
    arm10, arm72 = catalog.build_for("aarch64", "10.0"), catalog.build_for("aarch64", "7.2")
    assert arm10.machine("virt").name == "virt-10.0" and arm72.machine("virt").name == "virt-7.2"
    assert arm10.machine("virt-8.2").stock.target_page_bits == 12
    with pytest.raises(CompatError, match="has no machine type 'virt-8.2'"):
        arm72.machine("virt-8.2")
    # hw_compat_8_1 carries ramfb x-migrate=off: virt-8.1 has it, virt-8.2 does not
    props = {m: {(d, p): v for d, p, v in arm10.machine(m).compat_props} for m in ("virt-8.1", "virt-8.2")}
    assert props["virt-8.1"][("ramfb", "x-migrate")] == "off" and ("ramfb", "x-migrate") not in props["virt-8.2"]
    assert arm72.machine("virt-7.2").compat_props is None  # 7.2 does not report them


def test_compat_tables_equal_what_qemu_10_reports() -> None:
    """props.py's transcription of hw_compat_*/pc_compat_*/arm_virt_compat gives, for every pc and
    virt machine, exactly the list (and order) QEMU 10.0's query-machines reports; machines.py's
    names, aliases and deprecation are what the binaries say."""
    assert {m.name for m in MACHINES} == {m.name for b in catalog.builds(qemu="10.0") for m in b.machines.values()
                                          if m.family in catalog.JUDGED_FAMILIES}
    for machine in MACHINES:
        info = catalog.build_for(FAMILY_ARCH[machine.family], "10.0").machine(machine.name)
        assert [(p.driver, p.property, p.value) for p in compat_props(machine)] == list(info.compat_props), machine
        assert (machine.alias, machine.deprecated) == (info.alias, info.deprecated), machine


def test_arch_from_machine_and_names() -> None:
    assert catalog.arch_of_machine("virt-8.2") == ("aarch64",)
    assert catalog.arch_of_machine("pc-q35-8.2") == ("x86_64",)
    # what a stream names is a canonical type: an alias (virt, q35) is no architecture's, a newer
    # versioned type of a known family is
    assert catalog.stream_machine_archs("virt") == catalog.stream_machine_archs("q35") == ()
    assert catalog.stream_machine_archs("virt-11.1") == ("aarch64",)
    assert catalog.stream_machine_archs("pc-q35-11.1") == ("x86_64",)
    assert catalog.normalize_arch("arm64") == "aarch64"
    with pytest.raises(CompatError, match="unknown architecture 'riscv64'"):
        catalog.normalize_arch("riscv64")


@pytest.mark.qemu
@pytest.mark.parametrize("key", list(FIXTURE), ids=[f"{a}-{s}" for a, s in FIXTURE])
def test_bundled_machines_match_the_binary(request: pytest.FixtureRequest, key: tuple[str, str]) -> None:
    qemu: QemuBinary = request.getfixturevalue(FIXTURE[key])
    build = catalog.build_for(*key)
    assert build.qemu == qemu.version
    with QemuRun([*qemu.argv_prefix, "-M", "none", "-S", "-nodefaults", "-display", "none"], timeout=60,
                 what="query-machines") as run:
        run.connect()
        args = {"compat-props": True} if qemu.version_tuple >= (9, 1) else None
        machines = {m["name"]: m for m in run.cmd("query-machines", args)}
        caps = [c["capability"] for c in run.cmd("query-migrate-capabilities")]
        run.quit()
    assert set(machines) == set(build.machines)
    assert caps == list(build.capabilities)
    for name, info in machines.items():
        mine = build.machines[name]
        assert (info.get("alias"), info.get("default-ram-id")) == (mine.alias, mine.default_ram_id)
        if "compat-props" in info:
            assert [(p["qom-type"], p["property"], p["value"]) for p in info["compat-props"]] == \
                list(mine.compat_props), name


# ---------------------------------------------------------------- vmig machines


def run_cli(*args: str):
    from click.testing import CliRunner

    from vfio_ramfb_mig.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_machines_lists_every_build_or_one() -> None:
    everything = run_cli("machines")
    assert everything.exit_code == 0
    for b in catalog.all_builds():
        assert b.describe() in everything.stdout
    arm72 = run_cli("machines", "--arch", "aarch64", "--qemu", "7.2", "--all")
    assert arm72.exit_code == 0 and "virt-7.2" in arm72.stdout and "raspi3b" in arm72.stdout
    assert "virt-8.2" not in arm72.stdout and "pc-q35" not in arm72.stdout


def test_machines_explains_one() -> None:
    virt = run_cli("machines", "virt-8.1")
    assert virt.exit_code == 0
    assert "x-ramfb-migrate" in virt.stdout and "hw_compat_8_1" in virt.stdout  # compat, and where it came from
    assert "mach-virt.ram" in virt.stdout and "pl011" in virt.stdout  # the stock VM's RAM and sections
    old = run_cli("machines", "virt", "--qemu", "7.2")
    assert old.exit_code == 0 and old.stdout.startswith("virt is virt-7.2 on QEMU 7.2.22 aarch64")
    assert "compat properties from QEMU 7.2.0's source" in old.stdout  # 7.2 does not report them
    short = run_cli("machines", "pc-8.1")
    assert short.exit_code == 0 and short.stdout.startswith("pc-8.1 is pc-i440fx-8.1")
    missing = run_cli("machines", "virt-8.2", "--qemu", "7.2")
    assert missing.exit_code == 2 and "QEMU 7.2.22 aarch64" in missing.stderr and "virt-7.2" in missing.stderr


def test_source_tables_cover_every_machine_of_both_releases() -> None:
    """tools/compat_from_source.py read a table for exactly the pc/virt machines each QEMU build has
    (10.0's tables are checked against query-machines by test_compat_tables_equal_what_qemu_10_reports,
    7.2's against the live binary by test_profile.py::test_older_qemu_compat_values_are_read_back)."""
    for release in ("10.0", "7.2"):
        machines = {m.name for b in catalog.builds(qemu=release) for m in b.machines.values()
                    if m.family in catalog.JUDGED_FAMILIES}
        assert set(catalog.source_tree(release + ".0")["machines"]) == machines, release
    b72 = catalog.build_for("aarch64", "7.2")
    virt61 = catalog.source_compat(b72, "virt-6.1")
    assert [p[3] for p in virt61.props][:1] == ["hw_compat_7_1"]
    assert ("no_tcg_lpa2", "true", "virt_machine_6_2_options") in virt61.options
