"""`vmig ram extract`: every RAM block of a stream to a sparse file, as the stream leaves it.

What a destination QEMU would have in each RAMBlock after loading the stream is
rebuilt on disk, one file per block, in an output directory, from the final page
state (ram.state): the last record of a page wins, ZERO records and mapped-ram
pages with a clear bit are zero, XBZRLE records are applied to the page as it
was, compressed records (COMPRESS_PAGE) are the page their zlib data inflates to.
Pages that are zero or that no record set are holes, and a file is exactly the
block's used_length (from the block list, MEM_SIZE) long.

The stream is walked once to build the final page state (memory: 8 bytes per
page of the blocks, flat in the stream's size), then each block is written in
address order straight from the mapped input with `os.pwritev`, so the copy runs
at disk speed; the input's pages are let go as they are written.

Bounds: the blocks written may not claim more RAM than the stream can hold and
than `max_ram` (--max-ram, $VMIG_MAX_RAM): a 62-byte stream claiming 8 TiB is
refused before anything is created (LimitError).

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

Imports: errors, model, codec (decode), source, text, version, ram.state.
References: migration/ram.c (ram_load_precopy, parse_ramblocks, load_xbzrle,
parse_ramblock_mapped_ram, read_ramblock_mapped_ram), docs/devel/migration/mapped-ram.rst.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..codec.decode import decode
from ..errors import CorruptError, DecodeError, InputError
from ..model import RamBlock, RamBody, RamMemSize, RamPages, Section
from ..source import Source
from ..text import printable, to_wire
from ..version import __version__
from .state import COMPUTED, NOT_SENT, PAGE, ZERO, BlockPages, PageState, ReadWindow, check_ram_claim, unpack

MANIFEST = "manifest.json"
SUFFIX = ".bin"
#: characters of the sanitized idstr kept in a file name (a hash is added when cut)
NAME_LIMIT = 120
#: temporary files kept open at once (a hostile block list may name thousands of blocks)
MAX_OPEN = 64
#: bytes written by one pwritev call at most
WRITE_CHUNK = 8 << 20

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (ValueError, OSError, AttributeError):
    _IOV_MAX = 16


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


# ---------------------------------------------------------------- writing a block


class _Writer:
    """Writes each block's final pages into its file, in address order (holes stay holes)."""

    def __init__(self, src: Source, view: memoryview, out: _Output, state: PageState,
                 progress: Callable[[int], None] | None) -> None:
        self.src, self.view, self.out, self.state, self.progress = src, view, out, state, progress
        self.window = ReadWindow(src)

    def block(self, pages: BlockPages, target: BlockResult) -> None:
        fd = self.out.fd(target.file)
        ps = self.state.page_size
        for first, end, value, step in pages.extents():
            if value == NOT_SENT:
                continue
            kind, where, fill = unpack(value)
            if kind == ZERO:
                if fill:  # QEMU refuses a fill other than 0 ("Found a zero page with value"); older ones meant it
                    with memoryview(bytes((fill,)) * ps) as page:
                        for i0 in range(first, end, _IOV_MAX):
                            _pwrite_all(fd, [page] * min(_IOV_MAX, end - i0), i0 * ps)
                continue
            if kind in COMPUTED:  # XBZRLE, compressed: one page, made from its record
                data = self.state.content(value)
                assert data is not None
                with memoryview(data) as view:
                    _pwrite_all(fd, [view], first * ps)
                continue
            assert kind == PAGE
            stride = step >> 10 if step else ps
            if stride == ps:  # back to back (mapped-ram): one range, in pieces let go as they are written
                for at in range(where, where + (end - first) * ps, WRITE_CHUNK):
                    stop = min(at + WRITE_CHUNK, where + (end - first) * ps)
                    _write_range(fd, self.view, at, stop, first * ps + at - where)
                    self._done(at, stop - at)
                continue
            # each page is a view of the mapped input; one pwritev takes up to IOV_MAX of them
            for i0 in range(first, end, _IOV_MAX):
                i1 = min(i0 + _IOV_MAX, end)
                at = where + (i0 - first) * stride
                views = [self.view[p:p + ps] for p in range(at, at + (i1 - i0) * stride, stride)]
                try:
                    _pwrite_all(fd, views, i0 * ps)
                finally:
                    for view in views:
                        view.release()
                self._done(at, (i1 - i0 - 1) * stride + ps)
        self.window.flush()

    def _done(self, start: int, length: int) -> None:
        self.window.touched(start, length)
        if self.progress is not None:
            self.progress(length)


# ---------------------------------------------------------------- entry point


def extract_ram(source: Source | str, directory: str, *, blocks: Sequence[str] = (), force: bool = False,
                progress: Callable[[int], None] | None = None, max_ram: int | None = None) -> ExtractResult:
    """Write each RAM block of the stream (or those named in `blocks`) to a sparse file in
    `directory`, and DIR/manifest.json; nothing is left behind on error. See the module docstring.

    `progress` is called with a growing offset in 0..input size: the walk, then the writing,
    each in proportion to the bytes it goes through; last with the input's size."""
    if isinstance(source, str):
        with Source.open(source) as opened:
            return extract_ram(opened, directory, blocks=blocks, force=force, progress=progress, max_ram=max_ram)
    src = source
    layout = ram_layout(src)
    names = file_names([b.idstr for b in layout.blocks])
    known = {b.idstr for b in layout.blocks}
    unknown = [b for b in blocks if b not in known]
    if unknown:
        listed = ", ".join(f"'{printable(b.idstr)}'" for b in layout.blocks)
        raise InputError(f"the stream has no RAM block '{printable(unknown[0])}'", hint=f"its blocks: {listed}")
    chosen = [b for b in layout.blocks if not blocks or b.idstr in blocks]
    check_ram_claim(chosen, layout.page_size, src.size, max_ram)  # before a file is made
    targets = {b.idstr: BlockResult(b.idstr, names[b.idstr], b.used_length) for b in chosen}
    result = ExtractResult(directory=directory, page_size=layout.page_size, mapped_ram=layout.mapped_ram,
                           blocks=list(targets.values()))
    scale = _Progress(progress, src.size)

    out = _Output(directory, force)
    try:
        out.prepare()
        out.check_targets([t.file for t in targets.values()] + [MANIFEST])
        state = PageState(src, max_ram)
        try:
            stream = decode(_walk(src), ram_runs=False, on_ram_item=state.feed, progress=scale.walked)
            state.finish()
            state.check()
            final = _layout_of(stream.sections)
            if final is None or final.blocks != layout.blocks:
                raise CorruptError("the RAM block list changed between two reads of the stream")
            scale.writing(sum(p.sent() for name, p in state.blocks.items() if name in targets) * layout.page_size)
            with memoryview(src.buf) as view:
                writer = _Writer(src, view, out, state, scale.wrote)
                for name, target in targets.items():
                    pages = state.blocks[name]
                    writer.block(pages, target)
                    target.records = {"present": pages.records["page"]} if pages.mapped else dict(pages.records)
        finally:
            state.close()
        scale.end()
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


class _Progress:
    """One offset in 0..size for two phases: the walk (the input's bytes) and the writing (the
    bytes of the pages written), each in proportion to its bytes."""

    def __init__(self, progress: Callable[[int], None] | None, size: int) -> None:
        self.progress, self.size = progress, size
        self.total, self.done, self.last = size, 0, -1

    def _report(self) -> None:
        if self.progress is not None and self.total:
            at = min(self.size, self.done * self.size // self.total)
            if at > self.last:
                self.last = at
                self.progress(at)

    def walked(self, offset: int) -> None:
        self.done = min(offset, self.size)
        self._report()

    def writing(self, length: int) -> None:
        self.total, self.done = self.size + length, self.size
        self._report()

    def wrote(self, length: int) -> None:
        self.done += length
        self._report()

    def end(self) -> None:
        if self.progress is not None and self.last < self.size:
            self.last = self.size
            self.progress(self.size)
