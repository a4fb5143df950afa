"""Run vmig on a pseudo-terminal, as a user at a terminal of a given width would (stdin, stdout
and stderr all on it), for tests/test_cli_terminal.py and tests/test_cli_progress.py."""

from __future__ import annotations

import os
import subprocess
import sys

#: argv: COLUMNS BAR VMIG-ARGS...; BAR "1" makes every input worth a progress bar
PTY_RUN = """
import fcntl, os, pty, struct, sys, termios
columns, bar = int(sys.argv[1]), sys.argv[2] == "1"
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    if bar:
        import vfio_ramfb_mig.render.progress as p
        p.MIN_SIZE, p.DELAY = 0, 0  # so that a small capture gets a bar
    from vfio_ramfb_mig.cli.main import cli
    cli(sys.argv[3:], prog_name="vmig")
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"""
CLEAN = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TERM")}


def in_a_terminal(*args: object, columns: int = 120, bar: bool = False,
                  env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """vmig ARGS on a terminal of `columns` columns: its exit status and what the terminal received."""
    result = subprocess.run([sys.executable, "-c", PTY_RUN, str(columns), "1" if bar else "0", *map(str, args)],
                            capture_output=True, timeout=120,
                            env=CLEAN | {"TERM": "xterm-256color", "COLUMNS": str(columns)} | (env or {}))
    return result.returncode, result.stdout
