"""Packaging: the sdist holds what the tests need (so `pytest` runs from an unpacked sdist), the
metadata says the licence as an SPDX expression with its file, and the wheel installs a working
`vmig` into a fresh environment (the README's install line). `make sdist-check` goes further:
it runs the whole suite from an unpacked sdist."""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from paths import ROOT


def tracked_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist has no list of tracked files to compare with)")
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    return sorted(name for name in out.decode().split("\0") if name and (ROOT / name).exists())


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: setuptools and build come with the test extras, so nothing is downloaded
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "-o", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    return out


def test_the_sdist_holds_every_tracked_file(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        prefix = sdist.name.removesuffix(".tar.gz") + "/"
        members = {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}
    missing = [name for name in tracked_files() if name not in members and name != ".gitignore"]
    assert not missing, f"tracked files the sdist lacks (add them to MANIFEST.in): {missing[:20]}"
    for needed in ("tests/conftest.py", "tests/paths.py", "LICENSE", "docs/golden.md", "MANIFEST.in"):
        assert needed in members
    assert any(m.startswith("fixtures/captures/") and m.endswith(".bin") for m in members)
    assert not [m for m in members if "__pycache__" in m or m.endswith(".pyc")]


def test_the_metadata_says_the_licence_as_spdx(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
        names = z.namelist()
    assert meta["License-Expression"] == "MIT" and meta.get_all("License-File") == ["LICENSE"]
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]  # PEP 639: the expression only
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta.get_all("Project-URL") and "Requires-Dist" in meta
    assert "vfio_ramfb_mig/schemas/decode.schema.json" in names


def test_the_wheel_installs_a_working_vmig(dist: Path, tmp_path: Path) -> None:
    """The README's install line, `pip install` of the wheel, in a fresh environment that sees the
    dependencies this one has (no download)."""
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    # the test environment's packages stand in for the index: its site-packages go on the path
    site = next(p for p in sys.path if p.endswith("site-packages"))
    (next((venv / "lib").glob("python3*")) / "site-packages" / "vmig-test-deps.pth").write_text(site + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=300, capture_output=True)
    version = subprocess.run([str(venv / "bin" / "vmig"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("vmig ")
    schema = subprocess.run([str(venv / "bin" / "vmig"), "schema", "decode"], capture_output=True, timeout=60)
    assert schema.returncode == 0 and b'"urn:vmig:schema:decode"' in schema.stdout
    # the installed package, not this checkout, answered
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import vfio_ramfb_mig; print(vfio_ramfb_mig.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert str(venv) in where.stdout
