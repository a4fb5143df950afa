"""Output files (vfio_ramfb_mig/outfile.py) and signals, as a user meets them: Ctrl-C and SIGTERM
leave nothing behind, the umask is honoured, devices, FIFOs and symbolic links are written
through, and a bad target is one clear line."""

from __future__ import annotations

import ast
import inspect
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


from helpers import assert_one_error_line, with_zero_pages
from paths import CAPTURES

from vfio_ramfb_mig import outfile

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"
VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]


def run(*args: object, umask: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*VMIG, *map(str, args)], capture_output=True, text=True, timeout=300,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None, **kwargs)


@pytest.fixture(scope="module")
def big_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stream whose page list (`decode --pages --json`) takes several seconds to write."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(with_zero_pages(BOOTED.read_bytes(), 2_000_000))
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "big.bin")


@pytest.mark.parametrize(("sig", "status", "line"), [
    (signal.SIGINT, 130, "vmig: interrupted"),
    (signal.SIGTERM, 143, "vmig: stopped by SIGTERM"),
])
def test_a_signal_during_a_long_write_leaves_no_file(big_stream: Path, tmp_path: Path, sig: int, status: int,
                                                      line: str) -> None:
    out = tmp_path / "pages.jsonl"
    # a background job of a shell starts with SIGINT ignored, and so would vmig: give it the default
    proc = subprocess.Popen([*VMIG, "decode", "--pages", "--json", "-o", str(out), str(big_stream)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # wait until the temporary file has grown: the signal lands in the middle of the write
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if temps and temps[0].stat().st_size > 1 << 20:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "vmig finished before the signal: make the input bigger"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert stderr.strip() == line and "Traceback" not in stderr
    assert leftovers(tmp_path) == []


def test_the_big_stream_decodes_whole(big_stream: Path) -> None:
    """The signal test's input is a valid stream (else it would test an error, not a signal)."""
    result = run("decode", "--section", "ram", big_stream)
    assert result.returncode == 0, result.stderr
    assert "pc.ram: 2003948 zero, 148 normal pages" in result.stdout


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_output_file_honours_the_umask(tmp_path: Path, umask: int) -> None:
    for verb in (["decode", "--json"], ["decode"], ["decode", "--pages"]):
        out = tmp_path / f"out-{len(verb)}-{verb[-1].strip('-')}"
        assert run(*verb, "-o", out, BOOTED, umask=umask).returncode == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask, verb
    out = tmp_path / "encoded.bin"
    assert run("encode", "-q", "--machine", "pc-q35-8.2", "--ramfb", "-o", out, umask=umask).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_ram_extract_files_honour_the_umask(tmp_path: Path, umask: int) -> None:
    assert run("ram", "extract", "-q", BOOTED, tmp_path / "ram", umask=umask).returncode == 0
    files = sorted((tmp_path / "ram").iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask for f in files)


def test_a_replaced_output_file_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("old")
    out.chmod(0o640)
    assert run("decode", "--json", "-o", out, BOOTED, umask=0o022).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and out.read_text().startswith("{")


def device(tmp_path: Path, name: str) -> Path:
    """/dev/null or /dev/full, as a node of our own when we can make one: a vmig that replaced the
    target would then break only the test's copy, not the machine's /dev (the tests run as root in CI)."""
    real = Path("/dev") / name
    if os.geteuid() != 0:
        if not real.is_char_device():
            pytest.skip(f"no {real}")
        return real  # vmig cannot replace it either
    node = tmp_path / name
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, {"null": 3, "full": 7}[name]))  # Linux's numbers
    return node


def test_dev_null_is_written_through(tmp_path: Path) -> None:
    null = device(tmp_path, "null")
    before = os.stat(null)
    for args in (["decode", "--json"], ["decode", "--pages"], ["decode"]):
        result = run(*args, "-o", null, BOOTED)
        assert result.returncode == 0, result.stderr
    assert run("encode", "-q", "--machine", "pc-q35-8.2", "-o", null).returncode == 0
    link = tmp_path / "null-link"
    link.symlink_to(null)
    assert run("decode", "-o", link, BOOTED).returncode == 0
    after = os.stat(null)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino and after.st_rdev == before.st_rdev
    assert link.is_symlink()


def test_a_fifo_is_written_through(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = bytearray()

    def reader() -> None:
        with open(fifo, "rb") as f:
            received.extend(f.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    result = run("decode", "--json", "-o", fifo, BOOTED)
    thread.join(timeout=10)
    if thread.is_alive() and stat.S_ISFIFO(fifo.lstat().st_mode):  # nobody wrote: let the reader go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=10)
    assert result.returncode == 0, result.stderr
    assert received.startswith(b"{") and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert leftovers(tmp_path) == ["pipe"]


def test_a_symbolic_link_is_followed_and_kept(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert run("decode", "--json", "-o", link, BOOTED).returncode == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith("{")
    dangling = tmp_path / "dangling.bin"
    dangling.symlink_to(tmp_path / "real" / "new.bin")
    assert run("encode", "-q", "--machine", "pc-q35-8.2", "-o", dangling).returncode == 0
    assert dangling.is_symlink() and (tmp_path / "real" / "new.bin").read_bytes().startswith(b"QEVM")
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["new.bin", "out.json"]


@pytest.mark.parametrize(("target", "says"), [
    ("newdir/", "names a directory"),
    ("missing/out.json", "the directory missing does not exist"),
    ("file/out.json", "the directory file is not a directory"),
    (".", "names a directory"),
    ("adir", "it is a directory"),
])
def test_a_bad_target_is_one_clear_line(tmp_path: Path, target: str, says: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "adir").mkdir()
    for args in (["decode", "--json"], ["decode", "--pages"], ["encode", "-q", "--machine", "pc-q35-8.2"]):
        src = [BOOTED] if args[0] == "decode" else []
        result = run(*args, "-o", target, *src, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        error = assert_one_error_line(result.stderr, wants="cannot write")
        assert says in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "file"]


def test_a_full_disk_is_one_clear_line(tmp_path: Path) -> None:
    full = device(tmp_path, "full")
    for args in (["decode", "--json", BOOTED], ["decode", "--pages", BOOTED], ["encode", "-q", "--machine", "pc-q35-8.2"]):
        result = run(*args, "-o", full)
        assert result.returncode == 2, result.stderr
        assert "No space left on device" in assert_one_error_line(result.stderr, wants=f"cannot write {full}")
    assert stat.S_ISCHR(os.stat(full).st_mode)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["machines"], ["decode", BOOTED], ["decode", "--summary", BOOTED],
                                  ["decode", "--json", BOOTED], ["decode", "--pages", BOOTED],
                                  ["golden", "check", "-v", BOOTED], ["info", BOOTED]], ids=lambda a: " ".join(map(str, a[:2])))
def test_stdout_on_a_full_disk_is_one_clear_line(tmp_path: Path, args: list[object]) -> None:
    """Output redirected to a full disk (here /dev/full): one line, exit 2, whatever the verb and
    however far it got; not a traceback, and not "internal error: this is a bug in vmig"."""
    with open(device(tmp_path, "full"), "w") as full:
        result = subprocess.run([*VMIG, *map(str, args)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "No space left on device" in assert_one_error_line(result.stderr, wants="cannot write")


#: modules that still say another name for an outfile function (none: golden's alias went with it)
OLD_NAME_USERS: set[str] = set()


def test_one_name_for_output_files() -> None:
    """Every verb opens its output files by outfile's own names (output_file, write_output), not by
    another name bound to them, so there is one place to read what writing an output means."""
    aliases = {name for name, value in vars(outfile).items() if inspect.isfunction(value) and value.__name__ != name}
    package = Path(outfile.__file__).parent
    users = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "outfile":
                said = {alias.name for alias in node.names}
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "outfile":
                said = {node.attr}
            else:
                continue
            if said & aliases:
                users.add(path.relative_to(package).as_posix())
    assert users <= OLD_NAME_USERS, f"outfile's other names for its functions ({', '.join(sorted(aliases))}) in " \
                                    f"{', '.join(sorted(users - OLD_NAME_USERS))}: say output_file"
