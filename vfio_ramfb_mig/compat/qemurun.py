"""Run a QEMU binary the user names and ask it questions over QMP, then make sure it is gone.

`QemuRun` starts one QEMU child with the user's own arguments plus a private QMP
socket (a unix socket in a directory only this run uses, so the user's
``-serial stdio`` or ``-monitor stdio`` keep working), and kills it, with every
process it started, on every way out: a normal end, an error, a timeout, Ctrl-C,
SIGTERM/SIGHUP (turned into `Interrupted` while a run is alive), and even vmig
dying (the child asks the kernel for SIGKILL when its parent goes away).

`run_once` runs a QEMU that does its job and exits (``-dump-vmstate``, ``-machine help``).

Used by `vmig profile` (compat.profile) and by the script that regenerates the
bundled machine data (tools/machines_data.py).

Imports: errors (standard library otherwise).
References: docs/interop/qmp-spec.rst (greeting, qmp_capabilities, replies, events),
    qapi/migration.json (migrate, query-migrate), system/vl.c (-qmp, -S, -incoming defer).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import Interrupted, QemuRunError

#: Linux prctl option: signal the child gets when its parent dies
_PR_SET_PDEATHSIG = 1
#: a QMP reply larger than this is not from a QEMU we can talk to
MAX_REPLY = 64 << 20


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _first_error_line(text: str) -> str:
    """QEMU's own complaint, without the program-name prefix; the last line that says something."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        _, sep, rest = line.partition(": ")
        if sep and "qemu" in line.split(":", 1)[0]:
            return rest
    return lines[-1] if lines else ""


class QemuRun:
    """One QEMU child process with QMP on a private unix socket.

    Use as a context manager; `close` (also on any exception) kills the child's whole
    process group and removes the run's directory.
    """

    def __init__(self, argv: Sequence[str], *, timeout: float, what: str, qmp: bool = True) -> None:
        if not argv:
            raise QemuRunError("no QEMU binary given")
        self.what = what
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.dir = Path(tempfile.mkdtemp(prefix="vmig-qemu-"))
        self.socket_path = self.dir / "qmp.sock"
        self.argv = list(argv) + (["-qmp", f"unix:{self.socket_path},server=on,wait=off"] if qmp else [])
        self._stdout = open(self.dir / "stdout", "wb")  # noqa: SIM115 - closed in close()
        self._stderr = open(self.dir / "stderr", "wb")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._next_id = 0
        self.greeting: dict[str, Any] = {}

    # ------------------------------------------------------------ lifetime
    def __enter__(self) -> QemuRun:
        _LIVE.add(self)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._stdout,
                                         stderr=self._stderr, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        except OSError as exc:
            self.close()
            raise QemuRunError(f"cannot run {self.argv[0]}: {exc.strerror or exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the child and everything in its process group; wait for them; remove the directory."""
        _LIVE.discard(self)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self.proc is not None:
            pgid = self.proc.pid
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for f in (self._stdout, self._stderr):
            with contextlib.suppress(OSError):
                f.close()
        _remove_tree(self.dir)

    # ------------------------------------------------------------ output
    def stderr_text(self) -> str:
        try:
            return (self.dir / "stderr").read_bytes()[-65536:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _failure(self, message: str) -> QemuRunError:
        said = _first_error_line(self.stderr_text())
        return QemuRunError(f"{self.what}: {message}" + (f": {said}" if said else ""))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def wait_exit(self) -> int:
        """Wait for a QEMU that is meant to exit by itself (``-dump-vmstate``); its exit status."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=max(self.left(), 0.01))
        except subprocess.TimeoutExpired:
            raise self._failure(f"QEMU did not finish within {self.timeout:g} s") from None

    # ------------------------------------------------------------ QMP
    def connect(self) -> dict[str, Any]:
        """Wait for the QMP socket, read the greeting and leave capabilities negotiation."""
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise self._failure(f"QEMU exited (status {self.proc.returncode}) before it answered on QMP")
            if self.left() <= 0:
                raise self._failure(f"QEMU did not open its QMP socket within {self.timeout:g} s")
            if self.socket_path.exists():
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(self.socket_path))
                except OSError:
                    sock.close()
                else:
                    self._sock = sock
                    break
            time.sleep(0.02)
        self._reader = self._sock.makefile("rb")
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise self._failure(f"the QMP socket did not greet as QMP does (got {str(greeting)[:80]})")
        self.greeting = greeting["QMP"]
        self.cmd("qmp_capabilities")
        return self.greeting

    def _read_message(self) -> dict[str, Any]:
        assert self._sock is not None
        left = self.left()
        if left <= 0:
            raise self._failure(f"QEMU did not answer within {self.timeout:g} s")
        self._sock.settimeout(left)
        try:
            line = self._reader.readline(MAX_REPLY)
        except (TimeoutError, socket.timeout):
            raise self._failure(f"QEMU did not answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise self._failure(f"QMP connection failed ({exc.strerror or exc})") from None
        if not line:
            raise self._failure("QEMU closed its QMP connection (it exited)")
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            raise self._failure("QEMU sent a QMP message that is not JSON") from None
        if not isinstance(msg, dict):
            raise self._failure("QEMU sent a QMP message that is not a JSON object")
        return msg

    def try_cmd(self, execute: str, arguments: Mapping[str, Any] | None = None) -> tuple[bool, Any]:
        """Run a QMP command: (True, its return value) or (False, QEMU's error description)."""
        assert self._sock is not None
        self._next_id += 1
        ident = f"vmig-{self._next_id}"
        msg: dict[str, Any] = {"execute": execute, "id": ident}
        if arguments is not None:
            msg["arguments"] = dict(arguments)
        try:
            self._sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as exc:
            raise self._failure(f"cannot send {execute} to QEMU ({exc.strerror or exc})") from None
        while True:
            reply = self._read_message()
            if "event" in reply:
                continue
            if reply.get("id") != ident:
                continue
            if "error" in reply:
                err = reply["error"]
                return False, err.get("desc", str(err)) if isinstance(err, dict) else str(err)
            return True, reply.get("return")

    def cmd(self, execute: str, arguments: Mapping[str, Any] | None = None) -> Any:
        ok, value = self.try_cmd(execute, arguments)
        if not ok:
            raise self._failure(f"QMP {execute} failed ({value})")
        return value

    def hmp(self, command_line: str) -> str:
        text = self.cmd("human-monitor-command", {"command-line": command_line})
        return text if isinstance(text, str) else ""

    def quit(self) -> None:
        """Ask QEMU to quit and wait a little; close() kills it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(QemuRunError):
            self.try_cmd("quit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=min(max(self.left(), 0.5), 5))

    def wait_group_gone(self) -> None:
        """Wait until every process of the child's group (an ``exec:`` helper) has exited."""
        assert self.proc is not None
        while self.left() > 0:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)
        raise self._failure("the migration helper process did not finish in time")


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- signals

_LIVE: set[QemuRun] = set()


@contextlib.contextmanager
def killed_on_signals() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise `Interrupted` (so `QemuRun.close` runs); Ctrl-C
    raises KeyboardInterrupt as usual. Outside the main thread this does nothing."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}; the QEMU vmig started was killed")

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def run_once(argv: Sequence[str], *, timeout: float, what: str) -> tuple[int, str, str]:
    """Run a QEMU that exits by itself; (status, stdout, stderr). Killed on timeout (QemuRunError)."""
    with QemuRun(argv, timeout=timeout, what=what, qmp=False) as run:
        status = run.wait_exit()
        out = (run.dir / "stdout").read_bytes()[: 16 << 20].decode("utf-8", "replace")
        return status, out, run.stderr_text()
