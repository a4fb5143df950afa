"""Streams of architectures vmig bundles no QEMU build for (fixtures/other-arch, made by
tools/captures/make_other_arch.py with QEMU 10.0.2's riscv64, s390x and ppc64 targets; each
sidecar says the same QEMU loaded it back). They decode whole from their own vmdesc, encode back
byte for byte, and are not taken for an x86_64 or aarch64 stream."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
from click.testing import CliRunner
from paths import OTHER_ARCH

from vfio_ramfb_mig import decode, encode_bytes
from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.codec import jsonform
from vfio_ramfb_mig.compat.catalog import guess_arch, stream_machine_archs
from vfio_ramfb_mig.model import OpaqueBody
from vfio_ramfb_mig.qemu import sha256_file
from vfio_ramfb_mig.source import Source

METAS = sorted(OTHER_ARCH.glob("*.meta.json"))
IDS = [p.name.removesuffix(".meta.json") for p in METAS]


def meta_of(path: Path) -> dict:
    return json.loads(path.read_text())


def stored(meta_path: Path) -> Path:
    return meta_path.parent / meta_of(meta_path)["stored_as"]["file"]


def test_the_three_targets_are_there() -> None:
    assert {meta_of(m)["arch"] for m in METAS} == {"riscv64", "s390x", "ppc64"}


@pytest.mark.parametrize("meta_path", METAS, ids=IDS)
def test_decodes_whole_and_round_trips(meta_path: Path) -> None:
    meta = meta_of(meta_path)
    data = lzma.decompress(stored(meta_path).read_bytes())
    assert (len(data), sha256_file(stored(meta_path))) == (meta["size"], meta["stored_as"]["sha256"])
    assert meta["qemu_loads"][0]["accepted"]  # real QEMU loaded it back
    with Source.open(str(stored(meta_path))) as src:
        stream = decode(src)
        assert stream.error is None and stream.configuration.machine == meta["machine"]
        assert encode_bytes(stream, src) == data
        assert encode_bytes(jsonform.loads(jsonform.dumps(stream)), src) == data
    # a section is kept opaque only when QEMU's own vmdesc does not describe its fields: no entry
    # (iterative handlers with a format of their own: s390x storage attributes, ppc64's hash page
    # table; each warned about once, not once a record) or an old-style entry that gives only the
    # section's size as one buffer (s390x todclock and s390-skeys)
    entries = {d["name"]: d for d in stream.vmdesc.document["devices"]}
    opaque = {s.idstr: s for s in stream.sections if isinstance(s.body, OpaqueBody)}
    missing = sorted(name for name in opaque if name not in entries)
    assert sorted(w.split(" (id")[0].removeprefix("section ") for w in stream.warnings) == missing
    for name in set(opaque) - set(missing):
        assert [f["type"] for f in entries[name]["fields"]] == ["buffer"]
        assert entries[name]["size"] == opaque[name].body.data.length


@pytest.mark.parametrize("meta_path", METAS, ids=IDS)
def test_not_taken_for_a_bundled_architecture(meta_path: Path) -> None:
    """No bundled build wrote these: guess_arch cannot tell, and check says so in one line (riscv64's
    unversioned virt is no aarch64 machine: a stream names the canonical type, never an alias)."""
    stream = decode(str(stored(meta_path)))
    assert stream_machine_archs(stream.configuration.machine) == ()
    arch, why = guess_arch(stream)
    assert arch is None and "no bundled build's" in why
    result = CliRunner().invoke(cli, ["check", str(stored(meta_path))])
    assert result.exit_code == 2
    assert f"no bundled QEMU build has machine type '{stream.configuration.machine}'" in result.output


def test_goldens_hold() -> None:
    result = CliRunner().invoke(cli, ["golden", "check", str(OTHER_ARCH)])
    assert result.exit_code == 0, result.output
    assert f"{len(METAS)} streams: {len(METAS)} ok" in result.output


def test_riscv64_ramfb_is_found_but_never_configured() -> None:
    """The guest never ran: the ramfb device's state is there, all zero, and the screenshot says so."""
    (riscv,) = [stored(m) for m in METAS if meta_of(m)["arch"] == "riscv64"]
    result = CliRunner().invoke(cli, ["screenshot", str(riscv), "-o", "/dev/null"])
    assert result.exit_code == 2 and "ramfb config of ramfb-dev is all zero" in result.output
