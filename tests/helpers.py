"""Small assertions shared by the tests."""

from __future__ import annotations

from vfio_ramfb_mig.model import MigrationStream


def assert_same_bytes(actual: bytes, expected: bytes) -> None:
    """Equal bytes, or a message naming the first differing offset."""
    if actual == expected:
        return
    first = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
    raise AssertionError(f"bytes differ first at offset {first:#x} (lengths {len(actual)} vs {len(expected)}): "
                         f"{actual[first:first + 16].hex()} vs {expected[first:first + 16].hex()}")


def assert_tiles(stream: MigrationStream) -> None:
    """The records' spans cover the input from 0 to its size, in order, without gaps or overlaps."""
    pos = 0
    for i, record in enumerate(stream.records):
        assert record.span is not None and record.span.offset == pos, f"record {i} ({record.type}) starts at " \
            f"{record.span.offset if record.span else None}, expected {pos}"
        pos = record.span.end
    assert pos == stream.size, f"records end at {pos}, the stream has {stream.size} bytes"
