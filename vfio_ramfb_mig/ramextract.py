"""`vmig ram extract`: every RAM block of a stream to a sparse file, as the stream leaves it.

What a destination QEMU would have in each RAMBlock after loading the stream is
rebuilt on disk, one file per block, in an output directory:

* the last record of a page wins (an iterative stream sends a page again in every
  round in which it was dirty); a ZERO record clears what an earlier PAGE wrote
  (a hole is punched where the system can, else zeros are written); an XBZRLE
  record is applied to the page's contents so far, as `load_xbzrle` does;
* pages no record sets stay holes, and a file is exactly the block's used_length
  (from the block list, MEM_SIZE) long;
* mapped-ram streams (capability `mapped-ram`): each block's pages sit at fixed
  offsets in a region after its block-list entry, and its bitmap says which are
  present; a page with a clear bit is a hole (its bytes in the file may be stale).

Memory stays flat in the stream's size: the stream is walked once by
`decode(..., ram_runs=False, on_ram_run=...)` and each run of page records is
written when the walk passes it, straight from the mapped input with
`os.pwritev`, so the copy runs at disk speed.

Safety of the output directory: a block's idstr comes from the stream and may be
anything ("../../etc/passwd", "", ".", NUL bytes, 255 bytes); `file_names` maps
each to one file-name component made of [A-Za-z0-9._@+-], not starting with a
dot, at most 120 bytes, unique (also when compared without case). Every file is
created through a descriptor of the directory (no path is ever joined), with
O_CREAT|O_EXCL|O_NOFOLLOW, as a hidden temporary file; only when the whole walk
succeeded are they renamed to their names (hard-linked without --force, so an
existing file is never replaced), the manifest last. A directory or target that
is a symbolic link is refused. On any error every temporary file, and any file
this run already put in place, is removed: the directory is left as it was.

Imports: errors, model, codec (decode, source, text).
References: migration/ram.c (ram_load_precopy, parse_ramblocks, load_xbzrle,
parse_ramblock_mapped_ram, read_ramblock_mapped_ram), migration/xbzrle.c
(xbzrle_decode_buffer), docs/devel/migration/mapped-ram.rst; wire-format.md §6.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import mmap
import os
import re
import secrets
import stat
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .version import __version__
from .codec.decode import decode
from .source import Source
from .text import printable, to_wire
from .errors import CorruptError, DecodeError, InputError
from .model import RamBlock, RamBody, RamMemSize, RamPages, Section
from .wire.xbzrle import apply_delta

MANIFEST = "manifest.json"
SUFFIX = ".bin"
#: characters of the sanitized idstr kept in a file name (a hash is added when cut)
NAME_LIMIT = 120
#: temporary files kept open at once (a hostile block list may name thousands of blocks)
MAX_OPEN = 64
#: bytes written by one pwritev call at most (and zeros written per call)
WRITE_CHUNK = 8 << 20
#: runs at least this long are let go from memory as they are written (the walk let them go
#: before the run ended, and writing reads them in again)
RELEASE_RUN = 64 << 10

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (ValueError, OSError, AttributeError):
    _IOV_MAX = 16
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


# ---------------------------------------------------------------- results


@dataclass
class BlockResult:
    """One block as extracted: where it went and how many records (or mapped pages) set it."""

    idstr: str
    file: str
    used_length: int
    #: page records applied, by kind ("page", "zero", "xbzrle"); mapped-ram: {"present": n}
    records: dict[str, int] = field(default_factory=lambda: {"page": 0, "zero": 0, "xbzrle": 0})

    def manifest_entry(self) -> dict[str, Any]:
        return {"idstr": self.idstr, "file": self.file, "used_length": self.used_length,
                "records": dict(self.records)}


@dataclass
class ExtractResult:
    directory: str
    page_size: int
    mapped_ram: bool
    blocks: list[BlockResult]
    manifest: str = MANIFEST


# ---------------------------------------------------------------- file names


def _base_name(idstr: str) -> tuple[str, bool]:
    """The safe stem of a name and whether it had to be cut."""
    base = re.sub(r"_{2,}", "_", _UNSAFE.sub("_", idstr)).lstrip("._-").rstrip("._") or "block"
    cut = len(base) > NAME_LIMIT
    return base[:NAME_LIMIT].rstrip("._") or "block", cut


def _digest(idstr: str) -> str:
    return hashlib.sha256(to_wire(idstr)).hexdigest()[:10]


def file_names(idstrs: Sequence[str]) -> dict[str, str]:
    """A safe, unique file name for every block idstr (same list, same names, in any run).

    The stem keeps [A-Za-z0-9._@+-] of the idstr (other runs become "_"; leading dots,
    underscores and dashes and trailing dots and underscores go; "block" if nothing is left),
    cut at NAME_LIMIT; a stem that was cut or that two idstrs share gets "-" and ten hex digits
    of the idstr's SHA-256. Names end in ".bin", never start with "." (temporary files do) or
    "-", and differ even without case.
    """
    stems = {idstr: _base_name(idstr) for idstr in idstrs}
    shared: dict[str, int] = {}
    for stem, _ in stems.values():
        shared[stem.lower()] = shared.get(stem.lower(), 0) + 1
    names: dict[str, str] = {}
    taken = {MANIFEST}
    for idstr in idstrs:
        if idstr in names:
            continue
        stem, cut = stems[idstr]
        if cut or shared[stem.lower()] > 1:
            stem = f"{stem}-{_digest(idstr)}"
        name, n = stem + SUFFIX, 2
        while name.lower() in taken:  # only a crafted list gets here
            name, n = f"{stem}-{n}{SUFFIX}", n + 1
        taken.add(name.lower())
        names[idstr] = name
    return names


# ---------------------------------------------------------------- the block list, before the walk


class _FirstRun(DecodeError):
    """Raised by the layout pass at the first run of page records: the block list is known by then."""


@dataclass(frozen=True)
class RamLayout:
    page_size: int
    blocks: tuple[RamBlock, ...]
    mapped_ram: bool


def _layout_of(sections: Sequence[Section]) -> RamLayout | None:
    for section in sections:
        if section.idstr == "ram" and isinstance(section.body, RamBody):
            for item in section.body.items:
                if isinstance(item, RamMemSize):
                    mapped = any(b.mapped_ram is not None for b in item.blocks)
                    return RamLayout(section.body.page_size, item.blocks, mapped)
    return None


def _walk(src: Source) -> Source:
    """A Source of its own for each walk, over the same buffer: a Source remembers how far it let
    mapped pages go, so a second walk over the same one would let none go (memory = input)."""
    return src.sibling()


def ram_layout(src: Source) -> RamLayout:
    """The RAM block list and page size, read before any page is written.

    QEMU writes the block list in the ram section_start, before every page record, so a
    decode stopped at the first run of page records has it (a stream with no page records,
    e.g. mapped-ram, is walked whole; that is cheap). Only a stream whose first page record
    comes before the list needs a whole walk first. A decode error is raised by the walk
    that writes, before it writes anything it would keep."""
    def stop(run: RamPages) -> None:
        raise _FirstRun("first run of page records reached", offset=run.span.offset if run.span else None)

    stream = decode(_walk(src), ram_runs=False, partial=True, on_ram_run=stop)
    layout = _layout_of(stream.sections)
    if layout is None and stream.error is not None:
        # stopped early without a block list: a real error (the writing walk raises it), or page
        # records before the block list (a whole walk finds where the list is)
        stream = decode(_walk(src), ram_runs=False, partial=True)
        layout = _layout_of(stream.sections)
        if layout is None and stream.error is not None:
            decode(_walk(src), ram_runs=False)  # raises the error with its type, offset and path
    if layout is None:
        raise CorruptError("the stream has no RAM block list (no ram section_start with MEM_SIZE): "
                           "there is no RAM to extract")
    seen: set[str] = set()
    for block in layout.blocks:
        if block.idstr in seen:
            raise CorruptError(f"the RAM block list names block '{printable(block.idstr)}' twice")
        seen.add(block.idstr)
    return layout


# ---------------------------------------------------------------- low-level writing


def _pwrite_all(fd: int, views: Sequence[memoryview], offset: int) -> None:
    """Write the buffers back to back at `offset`, however the kernel splits the writes. Views
    this makes of a buffer cut by a short write are released before it returns (a live view of
    the mapped input would keep it from closing)."""
    pending = list(views)
    made: list[memoryview] = []
    try:
        while pending:
            batch = pending[:_IOV_MAX]
            want = sum(len(v) for v in batch)
            done = os.pwritev(fd, batch, offset)
            offset += done
            if done == want:
                del pending[:len(batch)]
                continue
            if done == 0:
                raise OSError(errno.EIO, "write made no progress")
            # a short write: drop what went out, keep the rest of a buffer cut in the middle
            k = 0
            while done >= len(pending[k]):
                done -= len(pending[k])
                k += 1
            rest = pending[k][done:]
            made.append(rest)
            pending[k] = rest
            del pending[:k]
    finally:
        for view in made:
            view.release()


def _write_range(fd: int, view: memoryview, start: int, stop: int, offset: int) -> None:
    """Write view[start:stop] at `offset`, in WRITE_CHUNK pieces."""
    while start < stop:
        end = min(stop, start + WRITE_CHUNK)
        chunk = view[start:end]
        try:
            _pwrite_all(fd, [chunk], offset)
        finally:
            chunk.release()
        offset += end - start
        start = end


def _libc_fallocate() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_fallocate = _libc_fallocate()
_ZEROS = bytes(WRITE_CHUNK)


def _has_data(fd: int, offset: int, length: int) -> bool:
    """Does the file hold data (not a hole) anywhere in [offset, offset+length)? True when unsure."""
    seek_data = getattr(os, "SEEK_DATA", None)
    if seek_data is None:
        return True
    try:
        return os.lseek(fd, offset, seek_data) < offset + length
    except OSError as exc:
        return exc.errno != errno.ENXIO  # ENXIO: no data at or after offset


def _clear(fd: int, offset: int, length: int) -> None:
    """Make [offset, offset+length) read as zeros: nothing to do over a hole, else punch a hole
    (Linux fallocate) or write zeros where that is not supported."""
    if not _has_data(fd, offset, length):
        return
    if _fallocate is not None and _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    with memoryview(_ZEROS) as zeros:
        while length:
            n = min(length, WRITE_CHUNK)
            _write_range(fd, zeros, 0, n, offset)
            offset, length = offset + n, length - n


# ---------------------------------------------------------------- the output directory


class _Output:
    """The output directory, its temporary files and what this run put in place; `abort` undoes it all."""

    def __init__(self, directory: str, force: bool) -> None:
        self.directory, self.force = directory, force
        self.created_dir = False
        self.dfd = -1
        self.temps: dict[str, str] = {}  # final name -> temporary name
        self.open: OrderedDict[str, int] = OrderedDict()  # final name -> fd, least recently used first
        self.published: list[str] = []  # names this run created (not replaced)

    def where(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def fail(self, what: str, exc: OSError, name: str | None = None) -> InputError:
        target = self.where(name) if name else self.directory
        return InputError(f"cannot {what} {printable(target)}: {exc.strerror or exc}")

    def prepare(self) -> None:
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            try:
                os.mkdir(self.directory, 0o755)
            except OSError as exc:
                raise self.fail("create the directory", exc) from exc
            self.created_dir = True
            info = os.lstat(self.directory)
        except OSError as exc:
            raise self.fail("use the directory", exc) from exc
        if stat.S_ISLNK(info.st_mode):
            raise InputError(f"refusing to write into {printable(self.directory)}: it is a symbolic link",
                             hint="give the directory it points to")
        if not stat.S_ISDIR(info.st_mode):
            raise InputError(f"cannot write into {printable(self.directory)}: it is not a directory")
        try:
            self.dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise self.fail("open the directory", exc) from exc

    def check_targets(self, names: Sequence[str]) -> None:
        """Fail now, before the walk, on a target that is in the way."""
        for name in names:
            try:
                info = os.lstat(name, dir_fd=self.dfd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self.fail("check", exc, name) from exc
            if stat.S_ISLNK(info.st_mode):
                raise InputError(f"refusing to write {printable(self.where(name))}: it is a symbolic link")
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"cannot write {printable(self.where(name))}: something that is not a file is there")
            if not self.force:
                raise InputError(f"{printable(self.where(name))} exists", hint="give --force to replace it")

    def fd(self, name: str) -> int:
        """The temporary file that will become `name`, created on first use."""
        fd = self.open.get(name)
        if fd is not None:
            self.open.move_to_end(name)
            return fd
        while len(self.open) >= MAX_OPEN:
            _, old = self.open.popitem(last=False)
            os.close(old)
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        temp = self.temps.get(name)
        try:
            if temp is not None:
                fd = os.open(temp, flags, dir_fd=self.dfd)
            else:
                while True:
                    temp = f".{name}.{secrets.token_hex(6)}.tmp"
                    try:
                        # 0666 less the umask, as open() gives (the files are the user's, not secrets)
                        fd = os.open(temp, flags | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=self.dfd)
                        break
                    except FileExistsError:
                        continue
                self.temps[name] = temp
        except OSError as exc:
            raise self.fail("create a temporary file in", exc) from exc
        self.open[name] = fd
        return fd

    def finish_file(self, name: str, length: int) -> None:
        fd = self.fd(name)
        os.ftruncate(fd, length)
        os.fsync(fd)
        os.close(self.open.pop(name))

    def write_small(self, name: str, data: bytes) -> None:
        fd = self.fd(name)
        with memoryview(data) as view:
            _pwrite_all(fd, [view], 0)
        self.finish_file(name, len(data))

    def publish(self, name: str) -> None:
        """Put the finished temporary file in place: never over an existing file without --force."""
        temp = self.temps[name]
        if not self.force:
            try:
                os.link(temp, name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd, follow_symlinks=False)
            except FileExistsError as exc:
                raise InputError(f"{printable(self.where(name))} exists", hint="give --force to replace it") from exc
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
                    raise
                # no hard links here: check, then rename (a file made in between would be replaced)
                self.check_targets([name])
                os.replace(temp, name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
                self.published.append(name)
            else:
                self.published.append(name)
                os.unlink(temp, dir_fd=self.dfd)
        else:
            self.check_targets([name])
            existed = True
            try:
                os.lstat(name, dir_fd=self.dfd)
            except FileNotFoundError:
                existed = False
            os.replace(temp, name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
            if not existed:
                self.published.append(name)
        del self.temps[name]

    def commit(self, names: Sequence[str]) -> None:
        try:
            for name in names:
                self.publish(name)
            os.fsync(self.dfd)
        except OSError as exc:
            raise self.fail("put in place", exc, name) from exc

    def abort(self) -> None:
        """Remove every temporary file and every file this run created. A file --force replaced
        keeps its new contents (the old ones are gone): publication fails only on a race or
        a failing disk, after every target was checked before the walk."""
        for fd in self.open.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.open.clear()
        for name in [*self.temps.values(), *self.published]:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self.dfd)
        self.temps.clear()
        self.published.clear()
        self.close()
        if self.created_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self.directory)

    def close(self) -> None:
        for fd in self.open.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.open.clear()
        if self.dfd >= 0:
            os.close(self.dfd)
            self.dfd = -1


# ---------------------------------------------------------------- the walk


class _Writer:
    """Applies runs of page records to the block files, in stream order."""

    def __init__(self, src: Source, view: memoryview, out: _Output, layout: RamLayout,
                 targets: dict[str, BlockResult], progress: Callable[[int], None] | None = None) -> None:
        self.src, self.view, self.out, self.targets, self.progress = src, view, out, targets, progress
        self.page_size = layout.page_size
        self.used = {b.idstr: b.used_length for b in layout.blocks}

    def run(self, run: RamPages) -> None:
        target = self.targets.get(run.block)
        if target is None:
            return  # a block not asked for (--block)
        ps = self.page_size
        start, length = run.offset, run.count * ps
        first = run.span.offset if run.span else None
        used = self.used.get(run.block)
        if used is None:
            raise CorruptError(f"RAM page record names block '{printable(run.block)}', which the block list "
                               f"does not have", offset=first)
        if start + length > used:
            raise CorruptError(f"{run.count} {run.kind} page(s) at {start:#x} run past the end of block "
                               f"'{printable(run.block)}' ({used:#x} bytes)", offset=first)
        fd = self.out.fd(target.file)
        if run.kind == "page":
            # each page is a view of the mapped input (records are 8 + page_size apart); one
            # pwritev takes up to IOV_MAX of them, as the pages are consecutive in the block
            let_go = run.span is not None and run.span.length >= RELEASE_RUN
            for i0 in range(0, run.count, _IOV_MAX):
                i1 = min(i0 + _IOV_MAX, run.count)
                views = [self.view[p:p + ps] for p in (run.payload_offset(i, ps) for i in range(i0, i1))]
                try:
                    _pwrite_all(fd, views, start + i0 * ps)
                finally:
                    for view in views:
                        view.release()
                if let_go:
                    # the walk let these pages go before the run ended; reading them faulted them in again
                    self._let_go(run.record_offset(i0, ps), run.payload_offset(i1 - 1, ps) + ps)
        elif run.kind == "zero":
            if run.fill:
                # QEMU >= 2.x only sends fill 0 (and refuses others); older streams meant the byte
                with memoryview(bytes((run.fill,)) * ps) as page:
                    for i0 in range(0, run.count, _IOV_MAX):
                        _pwrite_all(fd, [page] * min(_IOV_MAX, run.count - i0), start + i0 * ps)
            else:
                _clear(fd, start, length)
        else:
            self._xbzrle(fd, run, first)
        target.records[run.kind] += run.count

    def _xbzrle(self, fd: int, run: RamPages, offset: int | None) -> None:
        ps = self.page_size
        for i in range(run.count):
            at = run.offset + i * ps
            page = bytearray(os.pread(fd, ps, at).ljust(ps, b"\0"))
            try:
                apply_delta(page, run.delta or b"")
            except ValueError as exc:
                raise CorruptError(f"bad XBZRLE delta for '{printable(run.block)}' page {at:#x}: {exc}",
                                   offset=offset) from exc
            with memoryview(page) as view:
                _pwrite_all(fd, [view], at)

    def _let_go(self, start: int, end: int) -> None:
        """Let the mapped input's pages over [start, end) go (they were read and will not be again;
        a page shared with a neighbouring record is simply read in again if needed)."""
        buf = self.src.buf
        if not isinstance(buf, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        lo = start // mmap.PAGESIZE * mmap.PAGESIZE
        hi = min(-(-end // mmap.PAGESIZE) * mmap.PAGESIZE, len(buf))
        if hi > lo:
            buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def mapped(self, block: RamBlock, target: BlockResult) -> None:
        """A mapped-ram block: the pages whose bit is set, from their fixed place in the region."""
        header, region = block.mapped_ram, block.region
        assert header is not None
        name = printable(block.idstr)
        ps = header["page_size"]
        if header["version"] != 1:
            raise CorruptError(f"mapped-ram header of '{name}' has version {header['version']}; expected 1")
        if ps < 512 or ps & (ps - 1) or block.used_length % ps:
            raise CorruptError(f"mapped-ram header of '{name}' has page size {ps}, which does not divide its "
                               f"used_length {block.used_length:#x} in whole pages of a power of two")
        if region is None:
            raise CorruptError(f"mapped-ram block '{name}' has no pages region")
        pages = block.used_length // ps
        bitmap_at, pages_at = header["bitmap_offset"], header["pages_offset"]
        bitmap_len = (pages + 63) // 64 * 8
        if not region.offset <= bitmap_at <= bitmap_at + bitmap_len <= region.offset + region.length:
            raise CorruptError(f"mapped-ram bitmap of '{name}' ({bitmap_len} bytes at {bitmap_at:#x}) lies outside "
                               f"its region", offset=bitmap_at)
        if not region.offset <= pages_at <= pages_at + block.used_length <= region.offset + region.length:
            raise CorruptError(f"mapped-ram pages of '{name}' lie outside its region", offset=pages_at)
        fd = self.out.fd(target.file)
        # one bit per page in host-endian longs; vmig reads them as written on x86-64 (little-endian)
        bitmap = bytes(self.view[bitmap_at:bitmap_at + bitmap_len])
        present = 0
        for first, stop in _set_ranges(bitmap, pages):
            for lo in range(first, stop, WRITE_CHUNK // ps):
                hi = min(stop, lo + WRITE_CHUNK // ps)
                _write_range(fd, self.view, pages_at + lo * ps, pages_at + hi * ps, lo * ps)
                self._let_go(pages_at + lo * ps, pages_at + hi * ps)
            present += stop - first
            if self.progress is not None:
                self.progress(pages_at + stop * ps)
        target.records = {"present": present}


def _set_ranges(bitmap: bytes, count: int) -> Iterator[tuple[int, int]]:
    """[first, stop) page ranges whose bits are set (bit i is bit i%8 of byte i//8, as in
    little-endian longs), among the first `count` bits: bits past the block's pages are ignored."""
    start: int | None = None
    for m in re.finditer(rb"[^\x00]+", bitmap):
        # whole 0xff bytes extend a range; other bytes are looked at bit by bit
        for index in range(m.start(), m.end()):
            byte, base = bitmap[index], index * 8
            if byte == 0xFF:
                start = base if start is None else start
                continue
            for bit in range(8):
                if byte >> bit & 1:
                    start = base + bit if start is None else start
                elif start is not None:
                    if start < count:
                        yield start, min(base + bit, count)
                    start = None
        if start is not None:
            if start < count:
                yield start, min(m.end() * 8, count)
            start = None


# ---------------------------------------------------------------- entry point


def extract_ram(source: Source | str, directory: str, *, blocks: Sequence[str] = (), force: bool = False,
                progress: Callable[[int], None] | None = None) -> ExtractResult:
    """Write each RAM block of the stream (or those named in `blocks`) to a sparse file in
    `directory`, and DIR/manifest.json; nothing is left behind on error. See the module docstring.

    `progress` is called with the input offset reached (the page records written up to it)."""
    if isinstance(source, str):
        with Source.open(source) as opened:
            return extract_ram(opened, directory, blocks=blocks, force=force, progress=progress)
    src = source
    layout = ram_layout(src)
    names = file_names([b.idstr for b in layout.blocks])
    known = {b.idstr for b in layout.blocks}
    unknown = [b for b in blocks if b not in known]
    if unknown:
        listed = ", ".join(f"'{printable(b.idstr)}'" for b in layout.blocks)
        raise InputError(f"the stream has no RAM block '{printable(unknown[0])}'", hint=f"its blocks: {listed}")
    chosen = [b for b in layout.blocks if not blocks or b.idstr in blocks]
    targets = {b.idstr: BlockResult(b.idstr, names[b.idstr], b.used_length) for b in chosen}
    result = ExtractResult(directory=directory, page_size=layout.page_size, mapped_ram=layout.mapped_ram,
                           blocks=list(targets.values()))

    out = _Output(directory, force)
    try:
        out.prepare()
        out.check_targets([t.file for t in targets.values()] + [MANIFEST])
        with memoryview(src.buf) as view:
            writer = _Writer(src, view, out, layout, targets, progress)
            # mapped-ram: the walk jumps over the pages, which are written after it
            stream = decode(_walk(src), ram_runs=False, on_ram_run=writer.run,
                            progress=None if layout.mapped_ram else progress)
            final = _layout_of(stream.sections)
            if final is None or final.blocks != layout.blocks:
                raise CorruptError("the RAM block list changed between two reads of the stream")
            if layout.mapped_ram:
                for block in chosen:
                    if block.mapped_ram is not None:
                        writer.mapped(block, targets[block.idstr])
        if progress is not None:
            progress(src.size)
        for target in targets.values():
            out.finish_file(target.file, target.used_length)
        manifest = {
            "vmig": {"format": 1, "version": __version__},
            "source": {"path": src.name, "size": src.size},
            "page_size": layout.page_size,
            "mapped_ram": layout.mapped_ram,
            "blocks": [t.manifest_entry() for t in targets.values()],
        }
        out.write_small(MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        out.commit([t.file for t in targets.values()] + [MANIFEST])
        out.close()
    except OSError as exc:
        out.abort()
        raise out.fail("write into", exc) from exc
    except BaseException:
        out.abort()
        raise
    return result
