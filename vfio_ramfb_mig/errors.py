"""The one exception tree of vmig.

Every error vmig raises on purpose is a `VmigError`. It carries the absolute
byte offset in the input (or in the output, for encode), the path of the
record/field concerned (printed as a JSON Pointer into `vmig decode --json`
output) and, where it helps, a hint. The CLI turns it into one line on stderr
and exit status 2; anything else escaping is a bug (exit 70).

Imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Sequence

FieldPath = tuple[str | int, ...]


def pointer(path: FieldPath) -> str:
    """JSON Pointer (RFC 6901) for a path, e.g. ``/records/4/fields/0/cfg/width``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class VmigError(Exception):
    """Root of every error vmig raises on purpose."""

    def __init__(self, message: str, *, offset: int | None = None, path: FieldPath = (),
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.offset, self.path, self.hint = message, offset, tuple(path), hint

    def where(self) -> str:
        at = f" at offset {self.offset} ({self.offset:#x})" if self.offset is not None else ""
        return f"{at} in {pointer(self.path)}" if self.path else at

    def __str__(self) -> str:
        return f"{self.message}{self.where()}"


class InputError(VmigError):
    """The input could not be opened or read (missing file, bad compression)."""


class GoldenError(InputError):
    """A golden file or vmig-golden.toml that cannot be used (unreadable, malformed, stale options)."""


class LimitError(VmigError):
    """A limit the user can raise was reached (the hint says how): what a small hostile input
    would otherwise make vmig allocate or write."""


class OutputError(VmigError):
    """An output file cannot be written (no such directory, a directory, a full disk)."""


class DecodeError(VmigError):
    """The input bytes do not match the stream format."""


class ContainerError(DecodeError):
    """What wraps the stream is malformed: a libvirt save header, qcow2 metadata, compressed data.
    `offset` is in the container file (or in the decompressed data, as the message says)."""


class BadMagicError(DecodeError):
    """The input does not start with a QEMU migration stream header."""


class TruncatedError(DecodeError):
    """The input ended inside a record; `offset` is where the input stops."""


class CorruptError(DecodeError):
    """A value on the wire is impossible (bad record type, footer mismatch, bad flags)."""


class UnknownSectionError(DecodeError):
    """A section whose layout vmig cannot know (no vmdesc, no built-in schema, no footer)."""


class UnknownSubsectionError(DecodeError):
    """A subsection that the description in force does not list (QEMU fails the load too)."""


class VmdescError(DecodeError):
    """The vmdesc JSON is malformed, too deep, or disagrees with the bytes."""


class EncodeError(VmigError):
    """A model or state cannot be turned into bytes (value out of range, unknown key...)."""


class JsonFormError(EncodeError):
    """A JSON document (decode output, --state file) does not have the expected shape."""


class QemuError(VmigError):
    """A QEMU that vmig ran (`vmig profile`, the capture helper) could not start, exited early, did
    not answer in time, or refused a command.

    ``stderr`` is what QEMU printed (its end), ``argv`` the command, ``returncode`` its exit status
    if it had exited. The message stays one line: it says the exit status (unless the message
    already does) and QEMU's last complaint."""

    def __init__(self, message: str, *, stderr: str = "", argv: Sequence[str] = (), returncode: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.stderr = stderr
        self.argv = list(argv)
        self.returncode = returncode

    def complaint(self) -> str:
        """QEMU's own last word on stderr, without the program-name prefix."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        for line in reversed(lines):
            head, sep, rest = line.partition(": ")
            if sep and "qemu" in head:
                return rest
        return lines[-1] if lines else ""

    def __str__(self) -> str:
        text = self.message
        if self.returncode is not None and f"status {self.returncode}" not in text:
            text += f" (QEMU exit status {self.returncode})"
        said = self.complaint()
        return f"{text}: {said}" if said else text


class Interrupted(VmigError):
    """vmig got SIGTERM or SIGHUP while a QEMU it started was alive (that QEMU has been killed)."""


class CompatError(VmigError):
    """Machine type or device properties that QEMU would reject (unknown machine, realize error)."""


class MigrationBlockedError(CompatError):
    """The device configuration blocks migration, so no stream can exist."""


class ScreenError(VmigError):
    """The stream holds no screen to draw: no ramfb state, no mode set yet, or a framebuffer that
    is not in guest RAM."""


class RamfbConfigError(DecodeError):
    """A ramfb config QEMU would not show (a fourcc it rejects, geometry out of its limits) or that
    cannot describe a framebuffer (a stride shorter than a row, a size past 4 GiB or the guest's RAM)."""
