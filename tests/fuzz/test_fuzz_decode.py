"""Fuzzing `decode`, the renderers and the JSON reader with damaged real captures.

The property everywhere: damaged input fails with a DecodeError naming an offset inside
it (never another exception), or it decodes, and a stream it decodes is kept whole, so
encoding it gives back the damaged bytes exactly; a broken JSON document fails with an
EncodeError naming where, or encodes to a stream with the same property.

Every suite runs these with a few derandomized examples (tests/conftest.py); `make fuzz`
(HYPOTHESIS_PROFILE=fuzz) runs many random ones.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfio_ramfb_mig import Source, encode_bytes, jsonform
from vfio_ramfb_mig.errors import EncodeError
from vfio_ramfb_mig.model import RamBody, Section

import helpers as h
from paths import CAPTURES

#: every capture, and a VFIO device stream (the captures have no VFIO section)
ALL = [*sorted(p.stem for p in CAPTURES.glob("*.bin")), h.VFIO_DEVICE]
#: values that make lengths, counts, ids and flags interesting
WORDS = [0, 1, 0x7F, 0x80, 0xFF, 0x7E, 0x05, 0x06, 0xFFFF, 0xFFFF_FFFF, 1 << 31, 1 << 63, (1 << 64) - 1,
         0xFFFFFFFFEF100001, 0xFFFFFFFFEF100004]


@st.composite
def offsets(draw: st.DrawFn, name: str) -> int:
    """Half the time near the start of a record (headers, lengths, flags), else anywhere."""
    size = len(h.data(name))
    if draw(st.booleans()):
        record = draw(st.sampled_from(h.stream(name).records))
        return min(size - 1, record.span.offset + draw(st.integers(0, min(record.span.length, 96) - 1)))
    return draw(st.integers(0, size - 1))


EDITS = st.one_of(
    st.tuples(st.just("bytes"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("word"), st.sampled_from([1, 2, 4, 8]), st.sampled_from(WORDS)),
    st.tuples(st.just("insert"), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(1, 16)),
    st.tuples(st.just("bit"), st.integers(0, 7)),
)


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, list[tuple]]:
    """A capture and 1..8 edits at offsets (bytes overwritten, an interesting word written,
    bytes inserted or deleted, a bit flipped): small to show when a case fails."""
    name = draw(st.sampled_from(ALL))
    return name, [(draw(offsets(name)), *draw(EDITS)) for _ in range(draw(st.integers(1, 8)))]


def apply(name: str, edits: list[tuple]) -> bytes:
    blob = bytearray(h.data(name))
    for at, kind, *args in edits:
        at = min(at, len(blob) - 1)
        if kind == "bytes":
            blob[at:at + len(args[0])] = args[0][:len(blob[at:at + len(args[0])])]
        elif kind == "word":
            width, value = args
            word = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
            blob[at:at + width] = word[:len(blob[at:at + width])]
        elif kind == "insert":
            blob[at:at] = args[0]
        elif kind == "delete":
            del blob[at:at + args[0]]
        else:
            blob[at] ^= 1 << args[0]
        if not blob:
            break
    return bytes(blob)


@given(name=st.sampled_from(ALL), data=st.data())
def test_truncated_anywhere(name: str, data: st.DataObject) -> None:
    blob = h.data(name)
    cut = data.draw(st.one_of(st.integers(0, len(blob)), offsets(name)), label="cut")
    h.decodes_or_fails_cleanly(blob[:cut])


@given(case=damage())
def test_multi_byte_corruption(case: tuple[str, list[tuple]]) -> None:
    h.decodes_or_fails_cleanly(apply(*case))


@given(first=st.sampled_from(ALL), second=st.sampled_from(ALL), data=st.data())
def test_splice_of_two_captures(first: str, second: str, data: st.DataObject) -> None:
    """A prefix of one capture and a suffix of another, cut at record boundaries or anywhere."""
    head = data.draw(st.one_of(st.sampled_from(h.boundaries(first, 0)), offsets(first)), label="head")
    tail = data.draw(st.one_of(st.sampled_from(h.boundaries(second, 0)), offsets(second)), label="tail")
    h.decodes_or_fails_cleanly(h.data(first)[:head] + h.data(second)[tail:])


@pytest.mark.parametrize("name", [h.WITH_VMDESC, h.QEMU72, "qemu-10.0.2__pc-q35-8.2__ramfb+booted", h.VFIO_DEVICE])
@settings(max_examples=max(10, settings().max_examples // 10))
@given(data=st.data())
def test_device_state_flips_render(name: str, data: st.DataObject) -> None:
    """Bit flips in device sections (not RAM), then the tree, the summary and the embedded JSON:
    whatever decodes must render and rebuild."""
    devices = [r for r in h.stream(name).records if isinstance(r, Section) and not isinstance(r.body, RamBody)]
    blob = bytearray(h.data(name))
    for _ in range(data.draw(st.integers(1, 3), label="flips")):
        record = data.draw(st.sampled_from(devices), label="section")
        at = record.span.offset + data.draw(st.integers(0, record.span.length - 1), label="at")
        blob[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    h.decodes_or_fails_cleanly(bytes(blob), render=True)


JSON_VALUES = st.sampled_from([None, True, -1, 0, 256, 1 << 32, 1 << 64, 1.5, "", "x", "zz", "00", [], {}, [1], {"ref": {}}])


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:8]):  # the first few elements are enough
            found += _paths(item, path + (index,))
    return found


@pytest.mark.parametrize("name", [h.WITH_VMDESC, h.NO_VMDESC, h.VFIO_DEVICE])
@given(data=st.data())
def test_broken_json_documents(name: str, data: st.DataObject) -> None:
    """`vmig encode --from-json` on a document with values swapped or keys dropped: an EncodeError
    or a stream, never a crash."""
    source = Source.from_bytes(h.data(name))
    doc = json.loads(_document(name))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        path = data.draw(st.sampled_from(_paths(doc)[1:]), label="path")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and data.draw(st.booleans(), label="drop"):
            parent.pop(path[-1])
        else:
            # a copy: sampled_from gives the same list or dict each time, and one put inside
            # itself would make a cycle no JSON document can have
            parent[path[-1]] = json.loads(json.dumps(data.draw(JSON_VALUES, label="value")))
    try:
        blob = encode_bytes(jsonform.from_json(doc), source)
    except EncodeError as exc:
        # a document that cannot be encoded says what and where (its path into the document)
        assert exc.path or exc.offset is not None, (type(exc).__name__, str(exc))
        return
    h.decodes_or_fails_cleanly(blob)


_DOCUMENTS: dict[str, str] = {}


def _document(name: str) -> str:
    if name not in _DOCUMENTS:
        _DOCUMENTS[name] = jsonform.dumps(h.stream(name), indent=None)
    return _DOCUMENTS[name]
