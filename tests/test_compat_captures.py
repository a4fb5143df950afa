"""Cross-check the compat model against real QEMU 10.0.2 captures in fixtures/captures.

Each capture's .meta.json records the machine, the -device/-global options and QEMU's own
``query-migrate-parameters``; the .bin is the stream QEMU wrote. The model must predict
what QEMU actually did, without decoding the stream: the ``ramfb-dev`` section header is
found by its exact bytes (idstr length 9, idstr, instance 0, version 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from paths import CAPTURES

from vfio_ramfb_mig.compat import GlobalProp, realize_ramfb, resolve_property

RAMFB_DEV_HEADER = b"\x09ramfb-dev" + (0).to_bytes(4, "big") + (1).to_bytes(4, "big")

META_FILES = sorted(CAPTURES.glob("qemu-10.0.2__*.meta.json"))


def load(meta_path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    assert meta["qemu"]["version"] == "10.0.2"
    return meta


def device_options(spec: str) -> tuple[str, dict[str, str]]:
    driver, *options = spec.split(",")
    return driver, dict(option.partition("=")[::2] for option in options)


@pytest.mark.parametrize("meta_path", META_FILES, ids=lambda path: path.name.removesuffix(".meta.json"))
def test_ramfb_dev_section_matches_capture(meta_path: Path) -> None:
    meta = load(meta_path)
    stream = (CAPTURES / meta["file"]).read_bytes()
    globals_ = [GlobalProp.parse(text) for text in meta["globals"]]
    ramfbs = [device_options(spec)[1] for spec in meta["devices"] if device_options(spec)[0] == "ramfb"]
    if not ramfbs:
        assert RAMFB_DEV_HEADER not in stream
        return
    (options,) = ramfbs
    result = realize_ramfb(meta["machine"], x_migrate=options.get("x-migrate"), global_props=globals_)
    assert result.section_present is (RAMFB_DEV_HEADER in stream)


@pytest.mark.parametrize("meta_path", META_FILES, ids=lambda path: path.name.removesuffix(".meta.json"))
def test_zero_page_detection_matches_qemu(meta_path: Path) -> None:
    meta = load(meta_path)
    globals_ = [GlobalProp.parse(text) for text in meta["globals"]]
    resolved = resolve_property(meta["machine"], "migration", "zero-page-detection", global_props=globals_)
    assert resolved.value == meta["query_migrate_parameters"]["return"]["zero-page-detection"]


def test_captures_cover_both_ramfb_outcomes() -> None:
    outcomes = set()
    for meta_path in META_FILES:
        meta = load(meta_path)
        if any(spec.startswith("ramfb") for spec in meta["devices"]):
            outcomes.add(RAMFB_DEV_HEADER in (CAPTURES / meta["file"]).read_bytes())
    assert outcomes == {True, False}
