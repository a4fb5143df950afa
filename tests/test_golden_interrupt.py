"""Ctrl-C during `vmig golden check`: the RAM pages are hashed by worker processes (ram/hashworker.py,
one per stream, beside the walk) and `-j N` adds a process per stream checked at once. A terminal
sends SIGINT to the whole process group: every one of them ends, vmig says one line and exits 130,
and nothing is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_big_stream

VMIG = [sys.executable, "-m", "vfio_ramfb_mig"]


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes of a process group (zombies are gone already)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.parametrize(("jobs", "when"), [("1", "hashworker.py"), ("2", "hashworker.py"),
                                           ("2", "multiprocessing.spawn")])
def test_ctrl_c_ends_every_process_of_a_golden_check(tmp_path: Path, jobs: str, when: str) -> None:
    """The signal lands once a page hash worker runs, or (-j2) as soon as a worker process exists:
    it is then still starting (importing vmig), before it could set up its own signal handling."""
    for name in ("a.bin", "b.bin"):
        write_big_stream(tmp_path / name, 60_000)  # 235 MiB of pages each: hashed for a while
    # more streams for the -j2 pool to work through, so the check outlasts the signals below on a
    # fast machine too (two streams took 0.45-0.65 s): links, so no more disk and no more writing
    for copy in range(3):
        for name in ("a.bin", "b.bin"):
            os.link(tmp_path / name, tmp_path / f"{copy}{name}")
    made = subprocess.run([*VMIG, "golden", "update", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    # a worker still starting: the signal must land once its interpreter is up (before that it would
    # just die, without a word) and while it still imports vmig (~0.1 s), so a few delays are tried
    for delay in ((0.0,) if when == "hashworker.py" else (0.02, 0.05, 0.08, 0.12)):
        interrupt_and_check(tmp_path, jobs, when, delay)


def interrupt_and_check(directory: Path, jobs: str, when: str, delay: float) -> None:
    proc = subprocess.Popen([*VMIG, "golden", "check", "-j", jobs, str(directory)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(when in cmd for _, cmd in group_members(proc.pid)):
            break
        time.sleep(0.005)
    time.sleep(delay)
    assert proc.poll() is None, f"golden check finished before {when} ran: make the streams bigger"
    if when == "multiprocessing.spawn":
        # first to the starting workers alone: they must ignore it from their first instruction (it
        # is the parent's to handle). With the whole group signalled at once, the parent would end
        # a worker that printed a traceback before its words reached stderr, hiding the defect
        for pid, cmd in group_members(proc.pid):
            if when in cmd:
                os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            assert proc.returncode != 0, "golden check finished before the Ctrl-C: make the work longer"
            raise AssertionError(f"a starting worker's SIGINT ended the check (exit {proc.returncode}): {stderr}")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "vmig: interrupted", stderr
    deadline = time.monotonic() + 10
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(proc.pid) == []
