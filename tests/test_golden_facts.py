"""Goldens against what real QEMU said, not against vmig's own output.

Every bundled capture whose sidecar recorded QEMU's `query-migrate` is summarised afresh
(golden_of_path, as `vmig golden update` writes it) and the RAM lines of that golden are
held to QEMU's counters (migration/ram.c, the stats `query-migrate` reports under "ram"):

- `ram.total` is the bytes of all migrated RAM blocks: the golden's `ram/total` (the MEM_SIZE
  record) and the sum of its blocks' `used_length` both equal it; `ram.page-size` is its page size.
- Every page of every block is sent at least once in a completed precopy migration, so each
  block's pages (zero + normal + xbzrle) cover its used_length exactly.
- `ram.normal` counts the page records sent whole, `ram.duplicate` the zero-page records,
  `xbzrle-cache.pages` the XBZRLE-encoded ones. A golden counts each page once, by its last
  record. A guest that was not running while it migrated (paused, never started) sends each page
  once: the golden's counts equal QEMU's. A running guest re-sends dirtied pages: each counter is
  at least the golden's count of that kind (the last record of each page is one of those counted).

A migration that did not complete (the postcopy capture into a file fails by design) has no final
counters; its last `active` poll still gives the RAM size and page size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfio_ramfb_mig.golden import golden_of_path, golden_path

from paths import FIXTURES


def _with_query_migrate() -> list[Path]:
    return sorted(meta for meta in FIXTURES.glob("*/*.meta.json") if "query_migrate" in json.loads(meta.read_text()))


SIDECARS = _with_query_migrate()


def _stream_of(meta: Path) -> Path:
    stem = meta.name[:-len(".meta.json")]
    found = [meta.parent / (stem + suffix) for suffix in (".bin", ".bin.xz") if (meta.parent / (stem + suffix)).exists()]
    assert len(found) == 1, f"no single stream for {meta}: {found}"
    return found[0]


def _reply(facts: dict, key: str) -> dict:
    """A QMP reply as the sidecar holds it: the `return` object (older sidecars keep the wrapper)."""
    reply = facts.get(key) or {}
    return reply.get("return", reply)


def _ram_lines(stream: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The golden's RAM group: its own lines (`total`, `page_size`) and, per block, its numbers."""
    golden = golden_of_path(stream)
    top: dict[str, str] = {}
    blocks: dict[str, dict[str, int]] = {}
    for entry in golden.entries:
        if entry.group != "ram":
            continue
        rest = entry.path[len("ram/"):]
        for leaf in ("used_length", "pages/zero", "pages/normal", "pages/xbzrle", "pages/compressed"):
            if rest.endswith("/" + leaf):
                blocks.setdefault(rest[:-len(leaf) - 1], {})[leaf] = int(entry.value)
                break
        else:
            top[rest] = entry.value
    return top, blocks


def test_the_captures_with_counters_are_there() -> None:
    names = " ".join(m.name for m in SIDECARS)
    assert len(SIDECARS) >= 50
    for kind in ("__plain", "ramfb+booted", "live.", "live+xbzrle", "live+mapped-ram", "live+multifd+mapped-ram",
                 "live+postcopy-ram", "virt-10.0__uefi", "qemu-7.2.22", "vga-64m"):
        assert kind in names, kind


@pytest.mark.parametrize("meta", SIDECARS, ids=lambda m: m.name[:-len(".meta.json")])
def test_golden_ram_lines_agree_with_query_migrate(meta: Path) -> None:
    facts = json.loads(meta.read_text())
    stream = _stream_of(meta)
    assert golden_path(stream).is_file(), f"{stream.name} has no checked-in golden"
    migrate = _reply(facts, "query_migrate")
    completed = migrate.get("status") == "completed"
    counters = (migrate if completed else facts["query_migrate_last_active"])["ram"]
    top, blocks = _ram_lines(stream)

    assert int(top["total"]) == counters["total"]
    assert sum(b["used_length"] for b in blocks.values()) == counters["total"]
    assert int(top["page_size"]) == counters["page-size"]
    page = counters["page-size"]
    for name, block in blocks.items():
        sent = block["pages/zero"] + block["pages/normal"] + block.get("pages/xbzrle", 0) \
            + block.get("pages/compressed", 0)
        assert sent * page == block["used_length"], f"{name}: {sent} pages for {block['used_length']} bytes"
    if not completed:
        return  # no final counters of the pages sent

    golden = {kind: sum(b.get(f"pages/{kind}", 0) for b in blocks.values()) for kind in ("normal", "zero", "xbzrle")}
    qemu = {"normal": counters["normal"], "zero": counters["duplicate"],
            "xbzrle": (migrate.get("xbzrle-cache") or {}).get("pages", 0)}
    running = _reply(facts, "query_status_before_migrate")["running"]
    if "compression" in migrate:
        # QEMU 7.2's compress: a flush counts every compression thread, one with an empty buffer too,
        # as a page of the kind it sent last (tests/test_bundled_captures.py works the count out exactly)
        golden["compressed"] = sum(b.get("pages/compressed", 0) for b in blocks.values())
        qemu["compressed"] = migrate["compression"]["pages"]
        assert golden["normal"] == qemu["normal"] and golden["xbzrle"] == qemu["xbzrle"] == 0
        assert golden["zero"] <= qemu["zero"] and golden["compressed"] <= qemu["compressed"]
        assert golden["compressed"] >= 100 and sum(qemu.values()) - sum(golden.values()) <= 64, (golden, qemu)
    elif running:
        assert all(golden[kind] <= qemu[kind] for kind in golden), (golden, qemu)
        # the live captures' guests dirty memory as they migrate (fixtures/README.md): pages went twice
        assert sum(qemu.values()) > sum(golden.values()), "a running guest that re-sent no page"
    else:
        assert golden == qemu
