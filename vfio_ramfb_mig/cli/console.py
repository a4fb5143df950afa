"""The consoles vmig prints to: colour, width and encoding, decided in one place.

Colour: `--no-color` or NO_COLOR (any non-empty value, no-color.org) turn it off;
`--color` or FORCE_COLOR (non-empty) turn it on even when piped; otherwise colour
only on a terminal. The flags win over the variables, NO_COLOR over FORCE_COLOR.

Width: on a terminal, the terminal's (trees and tables fit it; names are never cut,
long values wrap). Piped or redirected, nothing is wrapped or cut: what a script
parses stays one line, whatever COLUMNS says (tables take their natural width).

Encoding: a stream that cannot encode Unicode (PYTHONIOENCODING=ascii, a latin-1
terminal) gets plain ASCII instead of an error: tree guides and table boxes are
drawn in ASCII (rich does that for such a console), and the few other characters
vmig prints (→, …, ✗, ...) are written as ASCII words ('->', '...', 'x').

Imports: rich when a console is made.
"""

from __future__ import annotations

import codecs
import os
import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

#: the width of a console that must not wrap (piped output): wider than any line vmig prints
UNWRAPPED = 1 << 16

#: what vmig prints beyond ASCII, as ASCII of the same meaning (one character where the
#: character lines up columns: tree guides and box lines)
_ASCII = {
    "→": "->", "←": "<-", "…": "...", "✗": "x", "✓": "v", "×": "x", "≥": ">=", "≤": "<=", "≠": "!=",
    "—": "--", "–": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "•": "*", "·": ".", "µ": "u",
    "\u202f": " ", "\u00a0": " ",
    "├": "|", "│": "|", "└": "`", "─": "-", "┌": "+", "┐": "+", "┘": "+", "┬": "+", "┴": "+", "┼": "+",
    "┏": "+", "┓": "+", "┗": "+", "┛": "+", "┃": "|", "━": "-", "┡": "+", "┩": "+", "╇": "+", "┳": "+",
    "┻": "+", "╋": "+", "┣": "+", "┫": "+", "┠": "+", "┨": "+", "╍": "-", "▕": "|", "▏": "|", "█": "#",
    "▌": "#", "▐": "#", "░": ".", "▒": ":", "▓": "#", "━": "-", "╸": "-", "╺": "-",
}
ERRORS = "vmig-ascii"


def _ascii_words(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: characters the stream cannot encode become ASCII words, or \\uXXXX."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    out = []
    for ch in text:
        out.append(_ASCII.get(ch) or ch.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(out), error.end


codecs.register_error(ERRORS, _ascii_words)


def unicode_ok(stream: IO[str]) -> bool:
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
    return encoding.startswith("utf")


def fit_streams() -> None:
    """Make stdout and stderr survive an encoding without Unicode (see the module docstring)."""
    for stream in (sys.stdout, sys.stderr):
        if not unicode_ok(stream) and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors=ERRORS)
            except (ValueError, OSError):  # closed, or not a text wrapper after all
                pass


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def color_wanted(stream: IO[str], choice: bool | None = None) -> bool:
    """Whether to colour `stream`: the flag (--color/--no-color), then NO_COLOR, FORCE_COLOR, a terminal."""
    if choice is not None:
        return choice
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return is_terminal(stream)


def make_console(stderr: bool = False, color: bool | None = None) -> Console:
    """A rich console on stdout (or stderr) with vmig's theme and the rules of the module docstring."""
    from rich.console import Console  # rich only when something is printed

    from ..render.theme import THEME

    stream = sys.stderr if stderr else sys.stdout
    tty = is_terminal(stream)
    colored = color_wanted(stream, color)
    return Console(file=stream, theme=THEME, highlight=False, soft_wrap=not tty,
                   force_terminal=colored if colored and not tty else None, no_color=not colored,
                   color_system="auto" if colored and tty else ("standard" if colored else None),
                   width=None if tty else UNWRAPPED, emoji=False)
