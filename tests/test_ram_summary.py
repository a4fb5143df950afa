"""Golden RAM lines (ram.summary): counts and sha256 of each block's final pages, against an oracle
written here from the format's rules, on real captures (every page once, in address order: the
one-walk path) and on crafted streams that send pages again, out of order, as ZERO after PAGE and
as XBZRLE (the final-page-state path).

Oracle: the model's runs (a decode that keeps them) applied in stream order to a dict per block
(page -> kind and what it holds; the last record wins, XBZRLE applies to what the page held);
then, in address order, be64 offset + kind letter + the fill byte or the page's bytes.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from helpers import page_run, synthetic, with_part_before_end, xbzrle_run, zero_run
from paths import CAPTURES

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.golden import golden_of, golden_of_path
from vfio_ramfb_mig.model import RamBody, RamPages
from vfio_ramfb_mig.ram.summary import StreamSummaries
from vfio_ramfb_mig.source import Source
from vfio_ramfb_mig.wire.xbzrle import xbzrle_apply

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin"

PS = 4096


def oracle(data: bytes) -> dict[str, tuple[dict[str, int], str]]:
    final: dict[str, dict[int, tuple[str, bytes]]] = {}
    for section in decode(data).sections:
        if not isinstance(section.body, RamBody):
            continue
        for run in section.body.items:
            if not isinstance(run, RamPages):
                continue
            pages = final.setdefault(run.block, {})
            for i in range(1 if run.kind == "xbzrle" else run.count):
                at = run.offset + i * PS
                if run.kind == "zero":
                    pages[at] = ("Z", bytes((run.fill,)))
                elif run.kind == "page":
                    src = run.payload_offset(i, PS)
                    pages[at] = ("P", data[src:src + PS])
                else:
                    kind, old = pages.get(at, ("Z", b"\0"))
                    before = old * PS if kind == "Z" else old
                    pages[at] = ("X", xbzrle_apply(before, run.delta))
    out = {}
    for block, pages in final.items():
        digest = hashlib.sha256()
        counts = {"zero": 0, "page": 0, "xbzrle": 0}
        for at in sorted(pages):
            kind, held = pages[at]
            counts[{"Z": "zero", "P": "page", "X": "xbzrle"}[kind]] += 1
            digest.update(struct.pack(">QB", at, ord(kind)) + held)
        out[block] = counts, digest.hexdigest()
    return out


def ram_lines(golden) -> dict[str, tuple[dict[str, int], str]]:
    values = {e.path: e.value for e in golden.entries}
    out = {}
    for path, value in values.items():
        if path.startswith("ram/") and path.endswith("/sha256"):
            base = path[:-len("/sha256")]
            counts = {"zero": int(values[base + "/pages/zero"]), "page": int(values[base + "/pages/normal"]),
                      "xbzrle": int(values.get(base + "/pages/xbzrle", 0))}
            out[base[len("ram/"):]] = counts, value
    return out


def check(data: bytes, tmp_path: Path) -> None:
    expected = {name: v for name, v in oracle(data).items()}
    path = tmp_path / "s.bin"
    path.write_bytes(data)
    one_walk = ram_lines(golden_of_path(path))  # decode without runs: one walk, or a second into a page state
    from_runs = ram_lines(golden_of(decode(data), data))  # a stream decoded with its runs
    for lines in (one_walk, from_runs):
        sent = {name: v for name, v in lines.items() if sum(v[0].values())}
        assert sent == expected


@pytest.mark.parametrize("name", ["qemu-10.0.2__pc-q35-8.2__ramfb+booted", "qemu-7.2.22__pc-q35-7.2__plain"])
def test_captures(tmp_path: Path, name: str) -> None:
    check((CAPTURES / f"{name}.bin").read_bytes(), tmp_path)


@pytest.mark.parametrize("name", ["live", "live+xbzrle", "live+postcopy-ram"])
def test_live_captures(tmp_path: Path, name: str) -> None:
    """Running guests, as real QEMU sent them: pages re-sent in later passes (the last wins),
    XBZRLE records on top of earlier pages."""
    check((CAPTURES.parent / "live" / f"qemu-10.0.2__pc-q35-10.0__{name}.bin").read_bytes(), tmp_path)


def test_pages_sent_again(tmp_path: Path) -> None:
    data = BOOTED.read_bytes()
    # page 0 again (normal, then zero), a page of the middle again, the block's first page last
    check(with_part_before_end(data, [page_run("pc.ram", 0, b"\x01" * PS), zero_run("pc.ram", 0),
                                      page_run("pc.ram", 0x10000, b"\x02" * PS, b"\x03" * PS)]), tmp_path)
    check(with_part_before_end(data, [page_run("pc.ram", 0x5000, b"\x04" * PS)]), tmp_path)


def test_out_of_order_xbzrle_and_fill(tmp_path: Path) -> None:
    blocks = [("pc.ram", 16 * PS), ("other", 4 * PS)]
    check(synthetic(blocks,
                    [page_run("pc.ram", 8 * PS, b"a" * PS, b"b" * PS), zero_run("pc.ram", 0, 3)],
                    [xbzrle_run("pc.ram", 8 * PS, b"\x00\x02zz"), xbzrle_run("pc.ram", 2 * PS, b"\x05\x01q"),
                     page_run("other", PS, b"c" * PS)],
                    [zero_run("pc.ram", 9 * PS, fill=0x42), page_run("other", 0, b"d" * PS)]), tmp_path)


def test_first_record_does_not_win(tmp_path: Path) -> None:
    """The page sent last is the one hashed, not the first."""
    blocks = [("pc.ram", 4 * PS)]
    twice = synthetic(blocks, [page_run("pc.ram", 0, b"x" * PS)], [page_run("pc.ram", 0, b"y" * PS)])
    once = synthetic(blocks, [page_run("pc.ram", 0, b"y" * PS)])
    first = synthetic(blocks, [page_run("pc.ram", 0, b"x" * PS)])
    a, b, c = (tmp_path / n for n in ("a.bin", "b.bin", "c.bin"))
    a.write_bytes(twice)
    b.write_bytes(once)
    c.write_bytes(first)
    assert ram_lines(golden_of_path(a)) == ram_lines(golden_of_path(b)) != ram_lines(golden_of_path(c))


@pytest.mark.parametrize("every", [4096, 65536, 300_000])
def test_long_runs_hashed_while_the_walk_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int) -> None:
    """The walk lets pages go every RELEASE_EVERY bytes and first hands the summary the records so
    far of the run still open (on_ram_partial): each page is hashed once, whatever the cut points."""
    from vfio_ramfb_mig.ram import walk

    monkeypatch.setattr(walk, "RELEASE_EVERY", every)
    check(BOOTED.read_bytes(), tmp_path)
    # ... in the one walk: no block had to be worked out again from a final page state
    with Source.open(str(BOOTED)) as src:
        summaries = StreamSummaries(src)
        decode(src, ram_runs=False, on_ram_item=summaries.feed, on_ram_partial=summaries.partial)
        summaries.finish()
        assert summaries.complete and summaries.summary("pc.ram") == oracle(BOOTED.read_bytes())["pc.ram"]


def test_in_order_stream_with_a_fill_byte(tmp_path: Path) -> None:
    """A stream whose pages come once and in order (the one-walk path) with a ZERO record's fill byte."""
    data = synthetic([("pc.ram", 8 * PS)], [page_run("pc.ram", 0, b"a" * PS), zero_run("pc.ram", PS, 2, fill=0x42),
                                             page_run("pc.ram", 4 * PS, b"b" * PS)])
    check(data, tmp_path)
    with Source.from_bytes(data) as src:
        summaries = StreamSummaries(src)
        decode(src, ram_runs=False, on_ram_item=summaries.feed, on_ram_partial=summaries.partial)
        summaries.finish()
        assert summaries.complete


@pytest.mark.parametrize("read_as", ["file in place", "bytes"])
def test_both_hashers_give_the_oracle(tmp_path: Path, read_as: str) -> None:
    """A stream read in place from a regular file is hashed by a worker process (it maps the file
    itself; the walk only says where the pages are); other input by a thread of this process, fed
    the pages as the walk maps them. Both give the oracle's digests, for a stream inside a file at
    an offset too (a container's payload: the worker adds the base)."""
    from vfio_ramfb_mig.ram import summary

    data = BOOTED.read_bytes()
    path = tmp_path / "booted.bin"
    path.write_bytes(data)
    with (Source.open(str(path)) if read_as == "file in place" else Source.from_bytes(data)) as src:
        summaries = StreamSummaries(src)
        decode(src, ram_runs=False, on_ram_item=summaries.feed, on_ram_partial=summaries.partial)
        used = type(summaries._hashing()).__name__
        summaries.finish()
    assert used == ("_ProcessHasher" if read_as == "file in place" else "_ThreadHasher")
    expected = oracle(data)
    assert summaries.complete and {b: summaries.summary(b) for b in expected} == expected
    # the worker with a base offset: the same stream 4 KiB + 3 bytes into a bigger file
    shifted = tmp_path / "shifted.bin"
    shifted.write_bytes(b"x" * 4099 + data)
    hasher = summary._ProcessHasher(str(shifted), 4099, PS)
    try:
        hasher.pages(7, 0, 1, 0, PS + 8)  # the stream's first 4 KiB, as one page of block 7
        assert hasher.finish() == {7: hashlib.sha256(struct.pack(">QB", 0, ord("P")) + data[:PS]).hexdigest()}
    finally:
        hasher.close()


def test_hash_worker_failure_is_one_clear_error(tmp_path: Path) -> None:
    """Pages the worker cannot read (the file shrank under it) end in an InputError naming what went
    wrong, not a hang or a traceback from the other process."""
    from vfio_ramfb_mig.errors import InputError
    from vfio_ramfb_mig.ram import summary

    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * PS)
    hasher = summary._ProcessHasher(str(path), 0, PS)
    try:
        hasher.pages(0, 0, 2, 0, PS + 8)  # the second page lies past the file's end
        with pytest.raises(InputError, match="outside the 4096-byte file"):
            hasher.finish()
    finally:
        hasher.close()


def test_hash_worker_reads_messages_in_any_pieces(tmp_path: Path) -> None:
    """The worker takes its run messages in whatever pieces the pipe gives: a message cut anywhere
    (here: every piece 1 to 50 bytes) hashes the same as messages read whole; input that ends
    before END is refused, not taken as done."""
    import io

    from vfio_ramfb_mig.ram import hashworker as hw

    path = tmp_path / "pages.bin"
    path.write_bytes(bytes(range(256)) * (3 * PS // 256 + 1))
    messages = b"".join([hw.MESSAGE.pack(hw.RUN_PAGE, 0, 0, 0, 2, 0, PS), hw.MESSAGE.pack(hw.RUN_ZERO, 0, 7, 2, 3, 0, 0),
                         hw.MESSAGE.pack(hw.RUN_PAGE, 1, 0, 5, 1, 3, PS), hw.MESSAGE.pack(hw.END, 0, 0, 0, 0, 0, 0)])
    data = path.read_bytes()
    header = hw.PAGE_HEADER.pack
    want = hashlib.sha256(header(0, hw.LETTER_PAGE) + data[:PS] + header(PS, hw.LETTER_PAGE) + data[PS:2 * PS]
                          + b"".join(header(i * PS, hw.LETTER_ZERO) + b"\7" for i in (2, 3, 4))).hexdigest()
    want1 = hashlib.sha256(header(5 * PS, hw.LETTER_PAGE) + data[3:3 + PS]).hexdigest()

    class Pieces(io.RawIOBase):
        def __init__(self, data: bytes, size: int) -> None:
            self.data, self.size = data, size

        def read1(self, n: int = -1) -> bytes:
            piece, self.data = self.data[:min(n, self.size)], self.data[min(n, self.size):]
            return piece

    for size in (1, 2, 5, 42, 43, 44, 50):
        out = io.BytesIO()
        hw.serve(str(path), 0, PS, Pieces(messages, size), out)
        assert out.getvalue().decode() == f"0 {want}\n1 {want1}\n", size
    with pytest.raises(SystemExit, match="input ended before END"):
        hw.serve(str(path), 0, PS, Pieces(messages[:-1], 7), io.BytesIO())


@pytest.mark.parametrize("read_as", ["file in place", "bytes"])
def test_hasher_gets_a_sections_pages_at_its_eos(tmp_path: Path, read_as: str) -> None:
    """What the walk gathered for the hasher goes to it at the end of each RAM section: the hasher
    must not wait, idle, while the stream's other sections are decoded and summarised."""
    from vfio_ramfb_mig.model import RamBlock, RamMarker, RamMemSize, Span

    path = tmp_path / "booted.bin"
    path.write_bytes(BOOTED.read_bytes())
    with Source.open(str(path)) if read_as == "file in place" else Source.from_bytes(BOOTED.read_bytes()) as src:
        summaries = StreamSummaries(src)
        try:
            summaries.feed(RamMemSize(total=4 * PS, blocks=(RamBlock("pc.ram", 4 * PS),)), PS)
            summaries.feed(RamPages(kind="page", block="pc.ram", offset=0, count=1, named=True, fill=0, delta=None,
                                    span=Span(0, PS + 8)), PS)
            hasher = summaries._hashing()

            def gathered() -> bool:  # what the hasher was not given yet
                return bool(hasher._out if read_as == "file in place" else hasher.pending.get(0))

            assert gathered()  # one page: too little to send on its own
            summaries.feed(RamMarker("eos"), PS)
            assert not gathered()
        finally:
            summaries.close()
