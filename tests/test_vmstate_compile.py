"""The compiled vmstate schema (vmstate/compile.py) and its conversion to model fields
(codec/convert.py): packed reads give the spans, values, bytes and errors a field-by-field
parse gives, and device sections cost a bounded number of construct calls.
"""

from __future__ import annotations

import io
import struct

import construct.core
import pytest
from construct import Container, StreamError
from hypothesis import given, settings
from hypothesis import strategies as st

from vfio_ramfb_mig import decode
from vfio_ramfb_mig.codec.convert import construct_path_names, convert
from vfio_ramfb_mig.source import Source
from vfio_ramfb_mig.wire.bounded import BoundedStream
from vfio_ramfb_mig.errors import DecodeError, TruncatedError
from vfio_ramfb_mig.model import VmstateBody, walk_fields
from vfio_ramfb_mig.vmstate.compile import (
    CountTooLarge,
    Loc,
    PackedList,
    UnknownSubsectionFound,
    compile_description,
)
from vfio_ramfb_mig.vmstate.model import Description, FieldDesc

from paths import CAPTURES

BOOTED = CAPTURES / "qemu-10.0.2__pc-q35-10.0__ramfb+booted.bin"

INNER = Description("inner", 1, (FieldDesc("a", "uint16", 2), FieldDesc("b", "buffer", 0)))
SUB = Description("dev/sub", 1, (FieldDesc("s", "uint32", 4),))
DEV = Description("dev", 1, (
    FieldDesc("u8", "uint8", 1),
    FieldDesc("i16", "int16", 2),
    FieldDesc("flag", "bool", 1),
    FieldDesc("buf", "buffer", 3),
    FieldDesc("irq", "pci irq state", 16),
    FieldDesc("cfg", "ramfb cfg", 28),
    FieldDesc("config", "uint8", 1, count=8),
    FieldDesc("regs", "int32", 4, count=3),
    FieldDesc("flags", "bool", 1, count=2),
    FieldDesc("none", "uint64", 8, count=0),
    FieldDesc("inner", "struct", 2, count=2, struct=INNER),
    FieldDesc("n", "uint8", 1),
    FieldDesc("var", "uint16", 2, count_from="n"),
    FieldDesc("len", "uint8", 1),
    FieldDesc("name", "buffer", size_from="len"),
    FieldDesc("big", "buffer", 5000),
    FieldDesc("tail", "uint64", 8),
), subsections=(SUB,))

CFG = {"addr": 0xC00000, "fourcc": 0x34325258, "flags": 0, "width": 1024, "height": 768, "stride": 4096}
VALUES = [7, -2, 1, b"abc", [0, 1, 2, 3], CFG, [0x86, 0x80, 1, 2, 3, 4, 5, 255],
          [-1, 0, 1 << 30], [1, 0], [], [{"a": 1, "b": b""}, {"a": 2, "b": b""}], 2, [0x1234, 0xFFFF],
          4, b"name", bytes(range(256)) * 19 + bytes(136), 1 << 63]
WIRE = (b"\x07" + struct.pack(">h", -2) + b"\x01" + b"abc" + struct.pack(">4I", 0, 1, 2, 3)
        + struct.pack(">QIIIII", *CFG.values()) + bytes([0x86, 0x80, 1, 2, 3, 4, 5, 255])
        + struct.pack(">3i", -1, 0, 1 << 30) + b"\x01\x00" + struct.pack(">HH", 1, 2)
        + b"\x02" + struct.pack(">HH", 0x1234, 0xFFFF) + b"\x04name" + bytes(range(256)) * 19 + bytes(136)
        + struct.pack(">Q", 1 << 63)
        + b"\x05\x07dev/sub" + struct.pack(">II", 1, 0xDEADBEEF))


def container(desc: Description, values: list, subsections: list = ()) -> Container:
    result = Container()
    for i, (fd, value) in enumerate(zip(desc.fields, values, strict=True)):
        if fd.type == "struct":
            value = [container(fd.struct, list(v.values())) for v in value]
        elif fd.type == "ramfb cfg":
            value = Container(value)
        result[f"f{i}"] = value
    result["subsections"] = list(subsections)
    return result


def dev_container() -> Container:
    return container(DEV, VALUES, [(b"dev/sub", 1, container(SUB, [0xDEADBEEF]))])


def test_build_gives_the_wire_bytes() -> None:
    assert compile_description(DEV).build(dev_container()) == WIRE


def test_parse_gives_values_and_spans_field_by_field() -> None:
    parsed = compile_description(DEV).parse(WIRE)
    pos = 0
    for i, (fd, want) in enumerate(zip(DEV.fields, VALUES, strict=True)):
        loc = parsed[f"f{i}"]
        assert isinstance(loc, Loc) and loc.start == pos, fd.name
        pos = loc.end
        value = loc.value
        if fd.type == "struct":
            value = [{k: v.value for k, v in item.value.items() if k != "subsections"} for item in value]
            want = [{"f0": w["a"], "f1": w["b"]} for w in want]
        elif fd.type == "ramfb cfg":
            value = dict(value)
        assert value == want, fd.name
    # fixed-size elements are read in one piece; others carry their own spans
    assert type(parsed["f6"].value) is PackedList and parsed["f6"].value.size == 1
    start = parsed["f10"].start
    assert type(parsed["f10"].value) is list and [e.start for e in parsed["f10"].value] == [start, start + 2]
    (sub,) = parsed["subsections"]
    assert sub.value[:2] == (b"dev/sub", 1) and sub.value[2]["f0"].value == 0xDEADBEEF
    assert (sub.start, sub.end) == (pos, len(WIRE))


def test_the_model_holds_plain_lists_with_spans() -> None:
    stream = BoundedStream(WIRE, 0, len(WIRE))
    fields, subs = convert(DEV, compile_description(DEV).parse_stream(stream))
    by_name = {f.name: f for f in fields}
    assert type(by_name["config"].value) is list and by_name["config"].value == VALUES[6]
    assert by_name["flags"].value == [True, False] and type(by_name["flags"].value[0]) is bool
    assert by_name["irq"].value == [0, 1, 2, 3] and type(by_name["irq"].value) is list
    assert by_name["cfg"].value == CFG
    # fourcc 0x34325258 is the letters "XR24" (least significant byte first); 1024x768 is in range
    assert by_name["cfg"].info == {"fourcc": "XR24", "format": "XRGB8888", "configured": True, "valid": True}
    assert by_name["big"].value.length == 5000  # a Blob: over the inline limit
    assert by_name["big"].value.offset == by_name["big"].span.offset
    assert sum(f.span.length for f in fields) + subs[0].span.length == len(WIRE)


def test_captures_keep_plain_lists() -> None:
    stream = decode(str(BOOTED))
    lists = [f for r in stream.sections if isinstance(r.body, VmstateBody)
             for f in walk_fields(r.body.fields, r.body.subsections) if isinstance(f.value, list)]
    assert lists and all(type(f.value) is list for f in lists)


def test_device_sections_cost_few_construct_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: each array element and field went through construct's Struct, Renamed,
    Located and Array (~46000 `_parsereport` calls for the device sections of a q35 stream,
    about 0.2 s); fixed-size runs and arrays are now one call each."""
    calls = [0]
    original = construct.core.Construct._parsereport

    def counting(self, *args):
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(construct.core.Construct, "_parsereport", counting)
    decode(str(BOOTED))
    assert calls[0] < 4000, calls[0]


def parse(desc: Description, blob: bytes, end: int | None = None):
    return Source.from_bytes(blob).parse(compile_description(desc), 0, ("records", 1), "section x", end=end,
                                         name_path=lambda cpath: construct_path_names(desc, cpath))


def test_truncation_names_the_field_of_a_packed_run() -> None:
    fields = compile_description(DEV).parse(WIRE)
    for cut in (0, 1, 2, 4, 7, 10, 30, 50):  # fields 0..5 are one packed run
        with pytest.raises(TruncatedError) as info:
            parse(DEV, WIRE[:cut])
        name = next(fd.key for i, fd in enumerate(DEV.fields) if fields[f"f{i}"].end > cut)
        assert info.value.offset == cut and info.value.path == ("records", 1, name), cut


def test_truncated_subsection_header() -> None:
    with pytest.raises(TruncatedError) as info:
        parse(DEV, WIRE[:-5])
    assert info.value.path == ("records", 1, "subsections")


def test_unknown_subsection_is_found_at_its_offset() -> None:
    blob = WIRE[:-17] + b"\x05\x07dev/xyz" + struct.pack(">II", 1, 0)
    with pytest.raises(DecodeError) as info:
        parse(DEV, blob)
    assert isinstance(info.value.__cause__, UnknownSubsectionFound)
    assert info.value.offset == len(WIRE) - 17


def test_packed_array_count_is_bounded_before_reading() -> None:
    desc = Description("x", 1, (FieldDesc("n", "uint32", 4), FieldDesc("a", "uint64", 8, count_from="n")))
    blob = struct.pack(">I", 3) + bytes(23)
    with pytest.raises(DecodeError, match="3 elements cannot fit in the 23 bytes left") as info:
        parse(desc, blob)
    assert isinstance(info.value.__cause__, CountTooLarge)
    assert info.value.offset == 4 and info.value.path == ("records", 1, "a")
    assert parse(desc, struct.pack(">I", 3) + bytes(24))[1] == 28


def test_packed_array_truncated_without_a_bound() -> None:
    """A plain stream has no `remaining`: the short read is the error, at the array."""
    desc = Description("x", 1, (FieldDesc("a", "uint32", 4, count=4),))
    with pytest.raises(StreamError, match="expected 4, found 2") as info:
        compile_description(desc).parse_stream(io.BytesIO(bytes(14)))
    assert info.value.path == "(parsing) -> f0"


def test_negative_count_is_empty() -> None:
    desc = Description("x", 1, (FieldDesc("n", "int8", 1), FieldDesc("a", "uint16", 2, count_from="n")))
    parsed, end = parse(desc, b"\xff")
    assert parsed["f1"].value == [] and end == 1


def test_fields_without_bytes_are_charged() -> None:
    """An empty packed array costs one (the field); an array of two empty buffers costs one per
    element and one for the array, which takes no bytes either."""
    desc = Description("x", 1, (FieldDesc("a", "uint32", 4, count=0), FieldDesc("z", "buffer", 0, count=2),
                                FieldDesc("t", "uint8", 1)))
    schema = compile_description(desc)
    assert schema.parse_stream(BoundedStream(b"\x01", 0, 1, empty=[4]))["f2"].value == 1
    with pytest.raises(CountTooLarge, match="without bytes"):
        schema.parse_stream(BoundedStream(b"\x01", 0, 1, empty=[3]))


def test_build_refuses_a_wrong_count_and_a_bad_value() -> None:
    desc = Description("x", 1, (FieldDesc("a", "uint8", 1, count=2),))
    schema = compile_description(desc)
    with pytest.raises(construct.core.ConstructError, match="expected 2 elements, found 3"):
        schema.build(Container(f0=[1, 2, 3], subsections=[]))
    with pytest.raises(construct.core.FormatFieldError, match="given value 256"):
        schema.build(Container(f0=[1, 256], subsections=[]))


# ---------------------------------------------------------------- property: any packed layout

LEAVES = {"uint8": (1, "B"), "int8": (1, "b"), "uint16": (2, "H"), "int32": (4, "i"), "uint32": (4, "I"),
          "uint64": (8, "Q"), "int64": (8, "q"), "bool": (1, "B"), "buffer": (None, None)}


@st.composite
def layouts(draw: st.DrawFn) -> tuple[Description, list, bytes]:
    fields, values, wire = [], [], b""
    for i in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(sorted(LEAVES)))
        size, code = LEAVES[kind]
        if kind == "buffer":
            size = draw(st.sampled_from([0, 1, 5, 4096, 4097]))
        # (arrays of empty elements are bounded by the bytes left too: not at a payload's end)
        count = None if size == 0 else draw(st.one_of(st.none(), st.integers(0, 5)))
        fields.append(FieldDesc(f"x{i}", kind, size, count=count))
        items = []
        for _ in range(1 if count is None else count):
            if kind == "buffer":
                item = draw(st.binary(min_size=size, max_size=size)) if size < 16 else bytes([i]) * size
                wire += item
            else:
                bits = 8 * size
                lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code.islower() else (0, (1 << bits) - 1)
                item = draw(st.integers(0, 1)) if kind == "bool" else draw(st.integers(lo, hi))
                wire += struct.pack(">" + code, item)
            items.append(item)
        values.append(items[0] if count is None else items)
    return Description("p", 1, tuple(fields)), values, wire


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data())
def test_any_layout_round_trips_and_truncates_at_the_right_field(layout, data: st.DataObject) -> None:
    desc, values, wire = layout
    schema = compile_description(desc)
    assert schema.build(container(desc, values)) == wire
    parsed, end = parse(desc, wire)
    assert end == len(wire)
    pos = 0
    for i, value in enumerate(values):
        loc = parsed[f"f{i}"]
        got = [e.value if isinstance(e, Loc) else e for e in loc.value] if isinstance(value, list) else loc.value
        assert (loc.start, got) == (pos, value)
        pos = loc.end
    assert pos == len(wire)
    fields, _ = convert(desc, parsed)
    assert [f.span.offset for f in fields] == [parsed[f"f{i}"].start for i in range(len(values))]
    if wire:
        cut = data.draw(st.integers(0, len(wire) - 1), label="cut")
        with pytest.raises(DecodeError) as info:
            parse(desc, wire, end=cut)
        index = next(i for i in range(len(values)) if parsed[f"f{i}"].end > cut)
        assert info.value.path == ("records", 1, desc.fields[index].key)
        if isinstance(info.value, TruncatedError):
            assert info.value.offset == cut
        else:  # an array that cannot fit, found before it is read
            assert "cannot fit" in str(info.value) and info.value.offset == parsed[f"f{index}"].start
