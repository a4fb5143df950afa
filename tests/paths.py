"""Paths shared by the tests (never point at ../shared: tests use only this repository)."""

from pathlib import Path

ROOT = Path(__file__).parents[1]
FIXTURES = Path(__file__).parents[1] / "fixtures"
# Real QEMU streams: fixtures/captures/*.bin, each with a *.meta.json sidecar saying how it was made.
CAPTURES = FIXTURES / "captures"
# Streams real QEMU wrote from a running guest, an aarch64 virt machine, an x86 display with its own
# RAM block; each made by a script in tools/captures/ (fixtures/README.md), some stored xz'd.
LIVE = FIXTURES / "live"
AARCH64 = FIXTURES / "aarch64"
DISPLAY = FIXTURES / "display"
# Streams of targets vmig bundles no QEMU build for (riscv64, s390x, ppc64): tools/captures/make_other_arch.py.
OTHER_ARCH = FIXTURES / "other-arch"
# A stream QEMU 7.2 wrote with the `compress` capability (COMPRESS_PAGE records): tools/captures/make_compress.py.
COMPRESS = FIXTURES / "compress"
BUNDLES = (LIVE, AARCH64, DISPLAY, COMPRESS)
# Streams with block-layer sections (dirty-bitmap, 7.2's block migration): tools/captures/make_blockdev.py.
BLOCKDEV = FIXTURES / "blockdev"
