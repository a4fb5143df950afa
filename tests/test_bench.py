"""tools/bench.py: runs on bundled captures (no QEMU), and its stream recipes hold.

The real benchmark makes ~1.6 GB of streams with QEMU; here it is given two
small bundled captures explicitly, so it makes nothing and takes seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "tools" / "bench.py"
CAPTURES = ROOT / "fixtures" / "captures"
A = CAPTURES / "qemu-10.0.2__pc-q35-8.1__ramfb.bin"
B = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb.bin"
PAGE = 4096


def _load_bench():
    spec = importlib.util.spec_from_file_location("vmig_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


def _run(*args: str, bench_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, VMIG_BENCH_DIR=str(bench_dir))
    env.pop("VMIG_BENCH_ANALYZE", None)  # QEMU's script is not part of the project
    return subprocess.run([sys.executable, str(BENCH), *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def require_vmig() -> None:
    """bench.py times the installed `vmig` next to this interpreter; without it these tests
    cannot run, and a skip would hide that: they fail and say how to get it."""
    assert bench.vmig_path().exists(), (f"no vmig next to {sys.executable}: install the package into this "
                                        f"interpreter's environment (make venv; make test)")


def test_bench_times_explicit_captures(tmp_path: Path) -> None:
    require_vmig()
    p = _run("--rounds", "1", "--json", "--diff", str(A), str(B), str(A), bench_dir=tmp_path)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["rounds"] == 1
    assert list(tmp_path.iterdir()) == []  # explicit streams: nothing made
    cmds = {c["kind"]: c for c in res["commands"]}
    assert set(cmds) == {"cat", "sha256", "decode", "decode --json", "diff", "sha256 both", "help"}
    for c in res["commands"]:
        assert c["error"] is None, c
        assert len(c["seconds"]) == 1 and c["median_s"] > 0, c
        assert c["max_rss_mib"] > 0, c
    assert cmds["diff"]["exits"] == [1]  # the two machine types differ: exit 1 counts as success
    assert cmds["decode"]["files"] == [str(A)]
    checks = {k["name"]: k for k in res["checks"]}
    assert checks[f"decode/cat {A.name}"]["value"] > 0
    diff_check = checks[f"diff/(sha256 both) {A.name} {B.name}"]
    assert diff_check["value"] > 0 and diff_check["target"] == 1.5
    # a target is met exactly when the measured value is within it
    assert diff_check["met"] is (diff_check["value"] <= diff_check["target"])
    rss = checks[f"decode peak RSS {A.name}"]
    assert rss["unit"] == "MiB" and rss["value"] > 0 and rss["target"] > 0
    assert rss["met"] is (rss["value"] <= rss["target"])
    # the ratio is the two medians' quotient, as the table shows it
    assert diff_check["value"] == pytest.approx(cmds["diff"]["median_s"] / cmds["sha256 both"]["median_s"], rel=0.01)
    # and the same in CPU time (user + system of the same runs)
    assert all(len(c["cpu_seconds"]) == 1 and c["median_cpu_s"] > 0 for c in res["commands"])
    assert diff_check["cpu_value"] == pytest.approx(cmds["diff"]["median_cpu_s"] / cmds["sha256 both"]["median_cpu_s"],
                                                    rel=0.01)



def test_bench_times_the_verbs_on_a_stream(tmp_path: Path) -> None:
    """--verbs: golden check, encode --from-json (whose output must be the stream) and diff with
    itself, held to sha256, cp and sha256 twice; the golden is written beside the stream first."""
    require_vmig()
    stream = tmp_path / "s.bin"
    stream.write_bytes(A.read_bytes())
    p = _run("--rounds", "1", "--json", "--verbs", str(stream), str(stream), bench_dir=tmp_path / "made")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    kinds = {c["kind"] for c in res["commands"]}
    assert {"golden check", "encode", "cp", "diff self", "sha256 self"} <= kinds
    assert all(c["error"] is None for c in res["commands"]), res["commands"]
    checks = {k["name"]: k for k in res["checks"]}
    assert checks["encode --from-json output == s.bin"]["value"] == 0  # byte-identical
    for name, target in ((f"golden check/sha256 {stream.name}", 1.5), ("encode --from-json/cp s.bin", 2.0),
                         ("diff/(sha256 both) s.bin s.bin", 1.5)):
        assert checks[name]["value"] > 0 and checks[name]["target"] == target
        assert checks[name]["met"] is (checks[name]["value"] <= target)
    assert (tmp_path / "s.golden.txt").exists()


def test_bench_table_and_failure_exit(tmp_path: Path) -> None:
    require_vmig()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a migration stream")
    p = _run("--rounds", "1", str(junk), bench_dir=tmp_path)
    assert p.returncode == 1  # vmig decode failed: a command failure, not a missed target
    assert "median s" in p.stdout and "failures:" in p.stdout and "decode junk.bin" in p.stdout


def test_no_make_without_streams_is_exit_2(tmp_path: Path) -> None:
    p = _run("--no-make", bench_dir=tmp_path / "empty")
    assert p.returncode == 2
    assert "not found" in p.stderr


def test_streams_cannot_be_made_without_qemu_is_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, VMIG_BENCH_DIR=str(tmp_path), VMIG_QEMU_10=str(tmp_path / "no-qemu"))
    p = subprocess.run([sys.executable, str(BENCH), "--make-only"], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 2
    assert "needs QEMU 10.0" in p.stderr


def test_b_image_differs_from_a_in_the_chosen_pages(tmp_path: Path) -> None:
    mib = 8
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    bench.write_ram_image(a, mib, variant="a")
    bench.write_ram_image(b, mib, variant="b")
    da, db = a.read_bytes(), b.read_bytes()
    assert len(da) == len(db) == mib << 20
    q = (mib << 20) // PAGE // 4  # pages per quarter

    def page(data: bytes, i: int) -> bytes:
        return data[i * PAGE:(i + 1) * PAGE]

    differ = {i for i in range(4 * q) if page(da, i) != page(db, i)}
    want = ({i for i in range(q) if i % bench.B_RANDOM_EVERY == 0}
            | {i for i in range(q, 2 * q) if i % bench.B_ZERO_EVERY == 0}
            | {i for i in range(2 * q, 3 * q) if i % bench.B_REPEAT_EVERY == 0})
    assert differ == want
    # and what the changes are: zero pages made non-zero, repeated pages zeroed
    zero = bytes(PAGE)
    assert all(page(da, i) == zero for i in range(q, 2 * q))
    assert all(page(db, i) != zero for i in want if q <= i < 2 * q)
    assert all(page(db, i) == zero for i in want if 2 * q <= i < 3 * q)
    assert page(da, 2 * q) == page(da, 3 * q - 1) != zero


def test_cached_stream_reused_only_if_recipe_and_sha256_match(tmp_path: Path) -> None:
    from vfio_ramfb_mig.qemu import sha256_file, sidecar_path, write_sidecar

    r = bench.RECIPES["medium"]
    stream = r.stream(tmp_path)
    stream.write_bytes(b"QEVM stand-in")
    meta = {"size": stream.stat().st_size, "sha256": sha256_file(stream), "bench_recipe": r.params()}
    write_sidecar(meta, sidecar_path(stream))
    assert bench.cached_stream_ok(r, tmp_path)
    # another recipe (same file name) is not reused
    other = bench.Recipe("medium", 512, "a")
    assert not bench.cached_stream_ok(other, tmp_path)
    # nor is a stream whose bytes changed
    stream.write_bytes(b"QEVM stand-iN")
    assert not bench.cached_stream_ok(r, tmp_path)
