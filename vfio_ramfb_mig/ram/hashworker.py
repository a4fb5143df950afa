"""The process that hashes RAM pages for golden summaries (ram.summary), beside the walk.

The walk runs in the main process and holds the GIL; hashing ~1 GiB of pages in a thread
of the same process means gathering them into big pieces there first (a memcpy of every
page) and waiting on the GIL between pieces. Here, in a process of its own, the pages are
hashed straight from a mapping of the file while the walk goes on, on another core.

Run as a script (``python -I -S hashworker.py PATH BASE PAGE_SIZE``), it imports only the
standard library, so it starts in a few milliseconds. PATH is the regular file holding the
stream, BASE the file offset of the stream's first byte (a stream inside a container), and
PAGE_SIZE the target page size.

On stdin come `MESSAGE` records, in stream order:
  op RUN_PAGE: `count` pages of block `block`, the first at page index `first`, its bytes at
               stream offset `where`, each next one `stride` bytes further;
  op RUN_ZERO: `count` zero-page records of `block` from page index `first`, fill byte `fill`;
  op END:      no more; then one line "BLOCK HEXDIGEST" per block hashed goes to stdout.
Each page adds to its block's sha256 what ram.summary.block_summary adds: the page's
offset in the block (be64), its kind letter, and the page (or the fill byte). XBZRLE and
compressed pages (COMPRESS_PAGE: the inflated page, letter P) never come here: a block
that has some is summarised from its final page state (ram.summary.StreamSummaries).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import sys

MESSAGE = struct.Struct(">BHBQQQQ")  # op, block, fill, first, count, where, stride
RUN_PAGE, RUN_ZERO, END = 1, 2, 0
#: what each page adds to its block's digest before its bytes: its offset in the block and its kind
#: letter (ram.summary uses these too: both sides must hash the same)
PAGE_HEADER = struct.Struct(">QB")
LETTER_PAGE, LETTER_ZERO, LETTER_XBZRLE = ord("P"), ord("Z"), ord("X")
#: how far the hashed pages run ahead of the last let-go before they are let go (RSS stays flat)
RELEASE_STEP = 16 << 20


def _messages(requests):  # noqa: ANN001 (a binary file)
    """The messages on `requests`, read as they come in whatever pieces the pipe gives (a read
    per message would cost more than hashing the short runs it names)."""
    size, pending = MESSAGE.size, b""
    while True:
        piece = requests.read1(1 << 16)
        if not piece:
            raise SystemExit("hash worker: input ended before END")
        data = pending + piece if pending else piece
        whole = len(data) - len(data) % size
        yield from MESSAGE.iter_unpack(memoryview(data)[:whole])
        pending = data[whole:]


def serve(path: str, base: int, page_size: int, requests, replies) -> None:  # noqa: ANN001 (binary files)
    digests: dict[int, object] = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
    finally:
        os.close(fd)
    view = memoryview(mapping) if mapping is not None else memoryview(b"")
    released = 0
    header = PAGE_HEADER.pack
    try:
        for op, block, fill, first, count, where, stride in _messages(requests):
            if op == END:
                break
            digest = digests.get(block)
            if digest is None:
                digest = digests[block] = hashlib.sha256()
            update = digest.update
            if op == RUN_ZERO:
                tail = bytes((fill,))
                update(b"".join([header(i * page_size, LETTER_ZERO) + tail for i in range(first, first + count)]))
                continue
            where += base
            end = where + (count - 1) * stride + page_size
            if count <= 0 or end > size:
                raise SystemExit(f"hash worker: pages at {where}..{end} lie outside the {size}-byte file")
            for i in range(first, first + count):
                update(header(i * page_size, LETTER_PAGE))
                update(view[where:where + page_size])
                where += stride
            if end - released >= RELEASE_STEP:
                upto = end - end % mmap.PAGESIZE
                mapping.madvise(mmap.MADV_DONTNEED, released, upto - released)
                released = upto
        replies.write("".join(f"{block} {d.hexdigest()}\n" for block, d in sorted(digests.items())).encode())
        replies.flush()
    finally:
        view.release()
        if mapping is not None:
            mapping.close()


def main(argv: list[str]) -> int:
    path, base, page_size = argv[0], int(argv[1]), int(argv[2])
    try:
        serve(path, base, page_size, sys.stdin.buffer, sys.stdout.buffer)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        return 130
    except BrokenPipeError:  # the parent went away
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
