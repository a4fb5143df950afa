"""Find the migration stream in a file by its content, layer by layer.

    file   -> QEVM                                       a plain stream
           -> gzip | xz | bzip2 | zstd | lzop -> ...      compressed (anything below, again)
           -> LibvirtQemudSave header, XML -> payload    raw, or compressed as the header says
           -> QFI\\xfb qcow2 -> a snapshot's VM state

The file is opened once (a FIFO or stdin cannot be opened twice) and each layer's magic is
checked on its first bytes, before anything is copied: a file that is none of these is refused
at once with what was found and what is accepted. A regular file is mapped and a stream in it
(plain, raw libvirt payload, a qcow2 VM state in one piece) is read in place; data that can only
be read forward (stdin, a pipe, decompressed data) or a fragmented qcow2 VM state is copied
into a spool, within the temp-space limit (source.limits), with progress reported.

Imports: errors, notices, source.buffer/limits/reader/spool/libvirt/qcow2.
"""

from __future__ import annotations

import mmap
import os
import stat
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from .. import notices
from ..errors import BadMagicError, ContainerError, InputError
from .buffer import RELEASE_STEP, ForwardSource, Layer, Source
from .limits import Limits, size_text
from .reader import (
    BZIP2_MAGIC,
    CHUNK,
    DECOMPRESSORS,
    GZIP_MAGIC,
    LZOP_MAGIC,
    XZ_MAGIC,
    ZSTD_MAGIC,
    FileReader,
    Reader,
    decompressor,
)

if TYPE_CHECKING:
    from .qcow2 import Qcow2Image
    from .spool import Spool

QEVM = b"QEVM"
#: magic -> kind, in the order they are tried
MAGICS: tuple[tuple[bytes, str], ...] = (
    (QEVM, "qemu"),
    (b"LibvirtQemudSave", "libvirt-save"),
    (b"LibvirtQemudPart", "libvirt-save"),
    (b"QFI\xfb", "qcow2"),
    (GZIP_MAGIC, "gzip"),
    (XZ_MAGIC, "xz"),
    (BZIP2_MAGIC, "bzip2"),
    (ZSTD_MAGIC, "zstd"),
    (LZOP_MAGIC, "lzop"),
)
ACCEPTED = ("a QEMU migration stream (magic 'QEVM'), a libvirt save image ('LibvirtQemudSave'), a qcow2 image "
            "with internal snapshots, or any of these compressed with gzip, xz, bzip2, zstd or lzop")
#: what a few common files that are none of these start with, to name them in the error
_KNOWN_OTHERS = ((b"\x7fELF", "an ELF executable"), (b"QFI", "a qcow (version 1) image"),
                 (b"KDUMP", "a kdump file"), (b"PK\x03\x04", "a zip archive"), (b"{", "JSON text"),
                 (b"<", "XML or HTML text"), (b"\x89PNG", "a PNG image"))
#: how many wrappings are unwrapped (a compressed libvirt image with a compressed payload is 3)
MAX_DEPTH = 4

Progress = Callable[..., None]


def sniff(head: bytes) -> str | None:
    """The kind of data that starts with `head`, or None."""
    for magic, kind in MAGICS:
        if head.startswith(magic):
            return kind
    return None


def describe(head: bytes) -> str:
    """What bytes that are no known kind look like, for the error message."""
    if not head:
        return "an empty file"
    shown = head[:16].hex(" ")
    for magic, what in _KNOWN_OTHERS:
        if head.startswith(magic):
            return f"{what} ({shown})"
    if not head.strip(b"\0"):
        return f"only zero bytes ({shown})"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head[:16]):
        return f"text {head[:16].decode('ascii')!r}"
    return shown


def probe(path: str, limits: Limits | None = None) -> tuple[str, ...] | None:
    """The layers a file's first bytes show, outermost first, ending in 'qemu', 'libvirt-save'
    or 'qcow2' (e.g. ('xz', 'qemu')); None when it is not a stream or a container vmig reads.
    Reads at most a few KiB (through decompressors); never copies the file."""
    limits = limits or Limits.from_env()
    try:
        with open(path, "rb") as f:
            reader: Reader = FileReader(f, path)
            kinds: list[str] = []
            for _ in range(MAX_DEPTH + 1):
                kind = sniff(reader.peek(64))
                if kind is None:
                    return None
                kinds.append(kind)
                if kind not in DECOMPRESSORS:
                    return tuple(kinds)
                reader = decompressor(kind, reader, limits, path)
    except (OSError, InputError, ContainerError):
        return None
    return None


def vm_state_snapshots(path: str) -> list[tuple[str, str]]:
    """(id, name) of each snapshot with a VM state in a qcow2 image file (its table only is read);
    [] for anything else or a broken image (opening it says why)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            from .qcow2 import Qcow2Image

            image = Qcow2Image.read(mapped, len(mapped))
            return [(s.id, s.name) for s in image.snapshots if s.vm_state_size]
    except (OSError, ValueError, ContainerError):
        return []


class _Region:
    """Bytes that can be read by offset: a mapping (or a view of one) from `base`, `size` long."""

    def __init__(self, mapping: mmap.mmap | None, data: Any, base: int, size: int) -> None:
        self.mapping, self.data, self.base, self.size = mapping, data, base, size

    def head(self, n: int) -> bytes:
        return bytes(self.data[self.base:self.base + min(n, self.size)])

    def sub(self, offset: int, size: int) -> _Region:
        return _Region(self.mapping, self.data, self.base + offset, size)

    def reader(self) -> Reader:
        return _RegionReader(self)

    def buffer(self) -> Any:
        if self.base == 0 and self.size == len(self.data):
            return self.data
        return memoryview(self.data)[self.base:self.base + self.size]


class _RegionReader(Reader):
    """Reads a mapped region forward (compressed data, a libvirt header) and lets the mapped
    pages behind it go, so a multi-GiB compressed file does not stay resident as it is read."""

    def __init__(self, region: _Region) -> None:
        super().__init__()
        self.region, self.at = region, 0
        self.released = region.base - region.base % mmap.PAGESIZE

    def _fill(self, n: int) -> bytes:
        r = self.region
        out = bytes(r.data[r.base + self.at:r.base + min(r.size, self.at + n)])
        self.at += len(out)
        behind = r.base + self.at - (r.base + self.at) % mmap.PAGESIZE
        if r.mapping is not None and behind - self.released >= RELEASE_STEP and hasattr(mmap, "MADV_DONTNEED"):
            r.mapping.madvise(mmap.MADV_DONTNEED, self.released, behind - self.released)
            self.released = behind
        return out


def open_source(cls: type[Source], path: str, *, snapshot: str | None = None, progress: Progress | None = None,
                limits: Limits | None = None, seek: bool = True) -> Source:
    limits = limits or Limits.from_env()
    name = "stdin" if path == "-" else path
    try:
        f: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror}") from exc
    closers: list[Callable[[], None]] = []
    done = keep_open = False
    try:
        try:
            st = os.fstat(f.fileno())
        except (OSError, ValueError, AttributeError):
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InputError(f"cannot read {path}: it is a directory")
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > 0:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            closers.append(mapping.close)
            current: _Region | Reader = _Region(mapping, mapping, 0, st.st_size)
            file_size: int | None = st.st_size
        else:
            current = FileReader(f, name)
            file_size = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None
        unwrapper = _Unwrapper(name, snapshot, progress, limits, closers, file_size, seek)
        opened = unwrapper.run(current)
        if isinstance(opened, ForwardSource):
            if f is not sys.stdin.buffer:  # a pipe or FIFO is read as the decoder goes: closed last
                closers.insert(0, f.close)
                keep_open = True
            opened._closer = _closing(closers)
            done = True
            return opened
        source = cls(opened.buffer(), name, _closing(closers), mapping=opened.mapping, base=opened.base,
                     layers=opened.layers, file_size=file_size, spooled=opened.spooled)
        done = True
        if source.spooled and notices.copied is not None:
            notices.copied(name, source.spooled, limits.spool)
        return source
    finally:
        if f is not sys.stdin.buffer and not keep_open:
            f.close()  # a mapping stays valid after its file is closed
        if not done:
            _closing(closers)()


def _closing(closers: list[Callable[[], None]]) -> Callable[[], None]:
    def close() -> None:
        while closers:
            closers.pop()()
    return close


class _Opened:
    def __init__(self, region: _Region, layers: tuple[Layer, ...], spooled: int) -> None:
        self.region, self.layers, self.spooled = region, layers, spooled
        self.mapping, self.base = region.mapping, region.base

    def buffer(self) -> Any:
        return self.region.buffer()


class _Unwrapper:
    def __init__(self, name: str, snapshot: str | None, progress: Progress | None, limits: Limits,
                 closers: list[Callable[[], None]], file_size: int | None, seek: bool = True) -> None:
        self.name, self.snapshot, self.progress, self.limits, self.seek = name, snapshot, progress, limits, seek
        self.closers, self.file_size = closers, file_size
        self.layers: list[Layer] = []
        self.spooled = 0
        self.outer: Reader | None = None  # the reader on the file itself, for progress

    def run(self, current: _Region | Reader) -> _Opened | ForwardSource:
        if isinstance(current, Reader):
            self.outer = current
        for _ in range(MAX_DEPTH + 1):
            head = current.head(64) if isinstance(current, _Region) else current.peek(64)
            kind = sniff(head)
            if kind is None and len(head) < 4 and QEVM.startswith(head) and head:
                kind = "qemu"  # a cut header: the decoder says what is missing
            if kind == "qemu":
                if self.snapshot is not None:
                    raise InputError(f"--snapshot {self.snapshot} applies to qcow2 images; {self.name} holds "
                                     f"{self._what()}")
                if isinstance(current, _Region):
                    return _Opened(current, tuple(self.layers), self.spooled)
                if not self.seek:
                    spool = self._new_spool("the stream", window=True)
                    return ForwardSource(current, spool, self.name, lambda: None, layers=tuple(self.layers),
                                         file_size=self.file_size, progress=self.progress,
                                         outer=self.outer or current)
                return _Opened(self._spool(current, "the stream"), tuple(self.layers), self.spooled)
            if kind is None:
                where = f" inside {self._what()}" if self.layers else ""
                raise BadMagicError(f"{self.name} is not a QEMU migration stream or a container vmig reads: found "
                                    f"{describe(head)}{where}; vmig reads {ACCEPTED}", offset=0, path=())
            if len(self.layers) >= MAX_DEPTH:
                raise ContainerError(f"{self.name}: more than {MAX_DEPTH} wrappings around the stream "
                                     f"({', '.join(layer.kind for layer in self.layers)}, {kind} ...)")
            current = self._unwrap(kind, current)
        raise AssertionError("unreachable")

    def _what(self) -> str:
        if not self.layers:
            return "a plain migration stream"
        return " in ".join(reversed([_layer_words(layer) for layer in self.layers]))

    def _unwrap(self, kind: str, current: _Region | Reader) -> _Region | Reader:
        if kind in DECOMPRESSORS:
            offset = 0 if isinstance(current, _Region) else current.position
            reader = current.reader() if isinstance(current, _Region) else current
            if self.outer is None:
                self.outer = reader
            self.layers.append(Layer(kind, offset))
            return decompressor(kind, reader, self.limits, self.name)
        if kind == "libvirt-save":
            return self._libvirt(current)
        return self._qcow2(current)

    def _libvirt(self, current: _Region | Reader) -> _Region | Reader:
        from .libvirt import read_save_header  # each container's module is loaded when one is met

        total = current.size if isinstance(current, _Region) else None
        reader = current.reader() if isinstance(current, _Region) else current
        start = 0 if isinstance(current, _Region) else reader.position
        save = read_save_header(reader, self.limits, self.name, total)
        self.layers.append(Layer("libvirt-save", start, save))
        compression = save.compression
        if compression == "sparse":
            raise ContainerError(f"{self.name}: a libvirt 'sparse' save image (its stream is QEMU mapped-ram "
                                 f"laid out in the file); vmig does not read those yet",
                                 offset=28, path=("container", "header", "compressed"))
        if compression == "raw":
            payload: _Region | Reader = current.sub(save.payload_offset, current.size - save.payload_offset) \
                if isinstance(current, _Region) else reader
        else:
            payload = decompressor(compression, reader, self.limits, f"the payload of {self.name}")
            if self.outer is None:
                self.outer = reader
        self._expect_stream(payload, f"the payload of libvirt save image {self.name} ({compression})",
                            save.payload_offset)
        return payload

    def _qcow2(self, current: _Region | Reader) -> _Region | Reader:
        region = current if isinstance(current, _Region) else self._spool(current, "the qcow2 image")
        from .qcow2 import Qcow2Image

        image = Qcow2Image.read(region.buffer() if region.base else region.data, region.size)
        snap = image.select(self.snapshot, self.name)
        self.snapshot = None  # used
        self.layers.append(Layer("qcow2", 0, (image, snap)))
        extents = image.extents(snap)
        pieces = []
        contiguous = True
        for extent in extents:
            if extent.host is None or (pieces and pieces[-1].host + pieces[-1].length != extent.host):
                contiguous = False
                break
            pieces.append(extent)
        if contiguous and pieces and sum(p.length for p in pieces) == snap.vm_state_size \
                and pieces[0].host + snap.vm_state_size <= region.size:
            payload: _Region | Reader = region.sub(pieces[0].host, snap.vm_state_size)
        else:
            payload = self._spool_extents(image, snap, region)
        self._expect_stream(payload, f"the VM state of snapshot {snap.label} in {self.name}",
                            image.vm_state_offset(snap))
        return payload

    def _expect_stream(self, payload: _Region | Reader, what: str, offset: int) -> None:
        head = payload.head(4) if isinstance(payload, _Region) else payload.peek(4)
        if head != QEVM:
            raise ContainerError(f"{what} does not start with a QEMU migration stream: expected 'QEVM', found "
                                 f"{describe(head)}", offset=offset, path=("container",))

    # ------------------------------------------------------------ spooling

    def _new_spool(self, what: str, window: bool = False) -> Spool:
        from .spool import Spool

        spool = Spool(f"{what} of {self.name}", self.limits, window=window)
        self.closers.append(spool.close)
        return spool

    def _report(self, reader: Reader | None = None) -> None:
        if self.progress is not None:
            outer = self.outer or reader
            self.progress(outer.input_position() if outer is not None else 0, self.file_size)

    def _spool(self, reader: Reader, what: str) -> _Region:
        spool = self._new_spool(what)
        while True:
            data = reader.read(CHUNK)
            if not data:
                break
            spool.append(data)
            self._report(reader)
        self.spooled += spool.size
        return _Region(spool.mm, spool.mm, 0, spool.size)

    def _spool_extents(self, image: Qcow2Image, snap: Any, region: _Region) -> _Region:
        if snap.vm_state_size > self.limits.spool:
            raise InputError(f"{self.name}: the VM state of snapshot {snap.label} ({size_text(snap.vm_state_size)}) "
                             f"is stored in pieces, and copying it in one piece would pass the temp-space limit; "
                             f"{self.limits.spool_hint()}")
        spool = self._new_spool(f"the VM state of snapshot {snap.label}")
        for extent in image.extents(snap):
            if extent.compressed is not None:
                spool.append(image.read_compressed(extent))
            elif extent.host is None:
                spool.skip(extent.length)
            else:
                start = region.base + extent.host
                available = max(0, min(extent.length, region.size - extent.host))
                spool.append(region.data[start:start + available])
                if available < extent.length:
                    spool.skip(extent.length - available)
            if self.progress is not None:
                self.progress(spool.size, snap.vm_state_size)
        self.spooled += spool.size
        return _Region(spool.mm, spool.mm, 0, spool.size)


def _layer_words(layer: Layer) -> str:
    if layer.kind == "libvirt-save":
        return "a libvirt save image"
    if layer.kind == "qcow2":
        return f"snapshot {layer.detail[1].label} of a qcow2 image"
    return f"{layer.kind} data"
