"""Paths shared by the tests (never point at ../shared: tests use only this repository)."""

from pathlib import Path

ROOT = Path(__file__).parents[1]
FIXTURES = Path(__file__).parents[1] / "fixtures"
# Real QEMU streams: fixtures/captures/*.bin, each with a *.meta.json sidecar saying how it was made.
CAPTURES = FIXTURES / "captures"
