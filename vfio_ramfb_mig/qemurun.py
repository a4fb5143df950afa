"""Run QEMU as a child, talk QMP to it, and make sure it is gone afterwards.

The one place vmig starts a QEMU: the capture helper (qemu.py: capture, load,
dump_vmstate, ``--version``, ``-machine help``), `vmig profile` (compat.profile)
and the scripts under tools/ all go through `QemuRun` or `run_once`.

`QemuRun` starts QEMU in a process group of its own and kills the whole group
(QEMU and any ``exec:`` migration helper it started) on every way out: a normal
end, an error, the timeout, Ctrl-C, SIGTERM/SIGHUP inside `killed_on_signals`,
and even vmig dying (the child asks the kernel for SIGKILL when its parent goes
away). One deadline, ``timeout`` seconds from the start, bounds every wait.

QMP is on a unix socket in a directory only this run uses (``qmp="socket"``:
a user's own command line keeps its stdio, e.g. ``-serial stdio``) or on
QEMU's stdin/stdout (``qmp="stdio"``: the capture helper, whose recorded
command line then holds no temporary path). Both are read the same way: one
message a line, events kept in `QemuRun.events` and skipped.

Every failure is an `errors.QemuError` carrying QEMU's stderr (its last
complaint is in the one-line message), the command and the exit status.

`run_once` runs a QEMU that does its job and exits (``-dump-vmstate``,
``-machine help``, ``--version``).

Imports: errors (standard library otherwise).
References: docs/interop/qmp-spec.rst (greeting, qmp_capabilities, replies, events),
    system/vl.c (-qmp, -S, -incoming defer), chardev/char-socket.c (server=on,wait=off).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import Interrupted, QemuError

#: Linux prctl option: the signal the child gets when its parent dies
_PR_SET_PDEATHSIG = 1
#: a QMP message larger than this is not from a QEMU we can talk to
MAX_REPLY = 64 << 20
#: events kept per run (a long live migration's are a few dozen)
MAX_EVENTS = 10_000
#: the end of QEMU's stderr kept for messages and results
STDERR_TAIL = 64 << 10
#: run_once keeps at most this much of what QEMU printed on stdout
MAX_STDOUT = 16 << 20


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count: they have exited)."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: ask the kernel (a zombie counts then)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the fields after the ")" that closes the command name: state ppid pgrp ...
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            return True
    return False


class QemuRun:
    """One QEMU child process, with QMP unless ``qmp`` is None.

    Use as a context manager; `close` (also on any exception) kills the child's whole
    process group and removes the run's directory. ``argv`` is the command that ran
    (the caller's plus the QMP option this class adds); ``cwd`` is QEMU's working directory.
    """

    def __init__(self, argv: Sequence[str], *, timeout: float, what: str, qmp: str | None = "socket",
                 cwd: str | os.PathLike[str] | None = None) -> None:
        if qmp not in ("socket", "stdio", None):
            raise ValueError(f"qmp is 'socket', 'stdio' or None, not {qmp!r}")
        if not argv:
            raise QemuError("no QEMU binary given")
        self.what = what
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.qmp = qmp
        self.cwd = cwd
        self.dir = Path(tempfile.mkdtemp(prefix="vmig-qemu-"))
        self.socket_path = self.dir / "qmp.sock"
        own = {"socket": ["-qmp", f"unix:{self.socket_path},server=on,wait=off"],
               "stdio": ["-qmp", "stdio"], None: []}[qmp]
        self.argv = [*argv, *own]
        self._stdout = None if qmp == "stdio" else open(self.dir / "stdout", "wb")  # noqa: SIM115 - closed in close()
        self._stderr = open(self.dir / "stderr", "wb")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._fd: int | None = None  # what QMP messages are read from
        self._buf = bytearray()
        self._next_id = 0
        self.greeting: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.eof = False  # QEMU closed its end of QMP

    # ------------------------------------------------------------ lifetime
    def __enter__(self) -> QemuRun:
        return self.start()

    def start(self) -> QemuRun:
        """Start QEMU (the context manager does); `close` must follow, whatever happens."""
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd,
                stdin=subprocess.PIPE if self.qmp == "stdio" else subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.qmp == "stdio" else self._stdout,
                stderr=self._stderr, start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            self.close()
            raise QemuError(f"{self.what}: cannot run {self.argv[0]}: {exc.strerror or exc}",
                            argv=self.argv) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the child and everything in its process group; wait for them; remove the directory."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self.proc is not None:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            pgid = self.proc.pid
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=2)
            # also after QEMU exited: an exec: helper may linger in the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for f in (self._stdout, self._stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline - time.monotonic()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_exit(self) -> int:
        """Wait for a QEMU that is meant to exit by itself (``-dump-vmstate``); its exit status."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=max(self.left(), 0.01))
        except subprocess.TimeoutExpired:
            raise self.error(f"QEMU did not finish within {self.timeout:g} s") from None

    def quit(self, wait: float | None = None) -> int | None:
        """Ask QEMU to quit and wait up to ``wait`` seconds (default: what is left, between 0.5
        and 5); its exit status (None if it lingers: close() kills it)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if self._fd is not None and not self.eof:
                with contextlib.suppress(QemuError):
                    self.try_cmd("quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=min(max(self.left(), 0.5), 5) if wait is None else wait)
        return self.proc.poll()

    def wait_group_gone(self) -> None:
        """Wait until every process of the child's group (an ``exec:`` helper still writing
        the stream after QEMU said ``completed``) has exited."""
        assert self.proc is not None
        while _group_alive(self.proc.pid):
            if self.left() <= 0:
                raise self.error("the migration helper process did not finish in time")
            time.sleep(0.02)

    # ------------------------------------------------------------ output
    def stderr_text(self) -> str:
        """The end (`STDERR_TAIL` bytes) of what QEMU printed on stderr so far."""
        try:
            with open(self.dir / "stderr", "rb") as f:
                f.seek(max(os.fstat(f.fileno()).st_size - STDERR_TAIL, 0))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout_text(self) -> str:
        """What QEMU printed on stdout (QMP on a socket or none), at most `MAX_STDOUT` bytes."""
        try:
            with open(self.dir / "stdout", "rb") as f:
                return f.read(MAX_STDOUT).decode("utf-8", "replace")
        except OSError:
            return ""

    def error(self, message: str) -> QemuError:
        """A QemuError saying ``message``, with QEMU's stderr and exit status."""
        if self.proc is not None:
            # a QEMU on its way out: give it a moment, so its last words reach stderr
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1)
        return QemuError(f"{self.what}: {message}", stderr=self.stderr_text(), argv=self.argv,
                         returncode=self.returncode())

    # ------------------------------------------------------------ QMP
    def connect(self) -> dict[str, Any]:
        """Read the greeting and leave capabilities negotiation; the greeting's ``QMP`` member."""
        assert self.proc is not None and self.qmp is not None
        if self.qmp == "stdio":
            assert self.proc.stdout is not None
            self._fd = self.proc.stdout.fileno()
        else:
            self._fd = self._open_socket().fileno()
        greeting = self._next_message()
        if greeting is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=max(min(self.left(), 5), 0.01))
            raise self.error(f"QEMU exited (status {self.proc.poll()}) before it answered on QMP")
        if "QMP" not in greeting:
            raise self.error(f"QEMU did not greet as QMP does (got {str(greeting)[:80]})")
        self.greeting = greeting["QMP"]
        self.cmd("qmp_capabilities")
        return self.greeting

    def _open_socket(self) -> socket.socket:
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise self.error(f"QEMU exited (status {self.proc.returncode}) before it answered on QMP")
            if self.left() <= 0:
                raise self.error(f"QEMU did not open its QMP socket within {self.timeout:g} s")
            if self.socket_path.exists():
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(self.socket_path))
                except OSError:
                    sock.close()
                else:
                    self._sock = sock
                    return sock
            time.sleep(0.02)

    def _read_line(self) -> bytes | None:
        """The next line QEMU sent; None once it closed QMP (it exited)."""
        assert self._fd is not None
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return line
            if self.eof:
                return None
            if len(self._buf) > MAX_REPLY:
                raise self.error(f"QEMU sent a QMP message larger than {MAX_REPLY >> 20} MiB")
            left = self.left()
            if left <= 0:
                raise self.error(f"QEMU did not answer within {self.timeout:g} s")
            if not poller.poll(min(left, 60) * 1000):
                continue
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError as exc:
                raise self.error(f"QMP connection failed ({exc.strerror or exc})") from None
            if not chunk:
                self.eof = True
            self._buf += chunk

    def _next_message(self) -> dict[str, Any] | None:
        """The next QMP message (a JSON object); None once QEMU closed QMP."""
        while True:
            line = self._read_line()
            if line is None:
                return None
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except (ValueError, RecursionError):
                raise self.error("QEMU sent a QMP message that is not JSON") from None
            if not isinstance(msg, dict):
                raise self.error("QEMU sent a QMP message that is not a JSON object")
            return msg

    def _send(self, data: bytes) -> None:
        if self._sock is not None:
            self._sock.settimeout(max(self.left(), 0.01))
            self._sock.sendall(data)
        else:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def try_cmd(self, execute: str, arguments: Mapping[str, Any] | None = None) -> tuple[bool, Any]:
        """Run a QMP command: (True, its return value) or (False, QEMU's error description).

        Raises QemuError when QEMU goes away or does not answer before the deadline.
        """
        if self._fd is None:
            raise self.error(f"cannot send {execute}: not connected to QMP")
        self._next_id += 1
        ident = f"vmig-{self._next_id}"
        msg: dict[str, Any] = {"execute": execute, "id": ident}
        if arguments is not None:
            msg["arguments"] = dict(arguments)
        try:
            self._send(json.dumps(msg).encode() + b"\n")
        except OSError as exc:
            self.eof = True
            raise self.error(f"cannot send {execute} to QEMU ({exc.strerror or exc})") from None
        while True:
            reply = self._next_message()
            if reply is None:
                raise self.error(f"QEMU closed its QMP connection during {execute} (it exited)")
            if "event" in reply and "return" not in reply and "error" not in reply:
                if len(self.events) < MAX_EVENTS:
                    self.events.append(reply)
                continue
            if reply.get("id") not in (ident, None):  # None: QEMU could not parse a command
                continue
            if "error" in reply:
                err = reply["error"]
                return False, err.get("desc", str(err)) if isinstance(err, dict) else str(err)
            return True, reply.get("return")

    def cmd(self, execute: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Run a QMP command; its return value. QemuError if QEMU refuses it."""
        ok, value = self.try_cmd(execute, arguments)
        if not ok:
            raise self.error(f"QMP {execute} failed ({value})")
        return value

    def hmp(self, command_line: str) -> str:
        text = self.cmd("human-monitor-command", {"command-line": command_line})
        return text if isinstance(text, str) else ""


# ---------------------------------------------------------------- signals


@contextlib.contextmanager
def killed_on_signals() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise `Interrupted` (so `QemuRun.close` runs); Ctrl-C
    raises KeyboardInterrupt as usual. Outside the main thread this does nothing."""
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


def run_once(argv: Sequence[str], *, timeout: float, what: str, cwd: str | os.PathLike[str] | None = None,
             check: bool = False) -> tuple[int, str, str]:
    """Run a QEMU that exits by itself; (status, stdout, stderr's end).

    Killed on timeout (QemuError); with ``check`` a status other than 0 is a QemuError too.
    """
    with QemuRun(argv, timeout=timeout, what=what, qmp=None, cwd=cwd) as run:
        status = run.wait_exit()
        if check and status != 0:
            raise QemuError(f"{what} failed (status {status})", stderr=run.stderr_text(), argv=run.argv,
                            returncode=status)
        return status, run.stdout_text(), run.stderr_text()
