"""`vmig report`: one self-contained HTML page about a stream (and its diff with another).

The page is a template (page.html), a style sheet (page.css) and a script
(page.js) from this package, with the report's data inlined as JSON in a
`<script type="application/json">` element: nothing is fetched, no network, no
CDN, and the file works from file://. A Content-Security-Policy meta tag forbids
every request but inline script, inline style and data: images, so the page
cannot reach out even if it tried.

What the page shows, per stream: the header and machine type; the record tree
(the same lines `vmig decode` prints, built by render.tree) with offsets and a
search box; for the selected node, a hexdump of its record's bytes with every
field's bytes marked; a map of each RAM block; the VFIO and ramfb state in words;
the screen. With a second stream B: the changes `vmig diff` finds, and both
screens side by side with the differences marked.

Bounded for huge streams: the tree keeps at most MAX_NODES lines, the hexdump at
most RECORD_BYTES bytes of each record and TOTAL_BYTES in all, the diff at most
MAX_CHANGES changes, a RAM map at most MAP_CELLS cells per block, the screen at
most SCREEN_WIDTH pixels across; whatever is cut is listed under "left out".

Imports: PIL (through screen), render.tree, screen, ram.blockmap, model, version.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from ...version import __version__
from ...errors import RamfbConfigError, ScreenError
from ...model import MigrationStream, Section, VfioBody, walk_fields
from ...ram.blockmap import STATES, BlockMap
from ...screen.compare import ScreenDiff, side_by_side
from ..tree import TreeNode, body_summary, info_nodes, record_node, section_node

#: the limits that keep a report of a multi-GiB stream a few MiB (see the module docstring)
MAX_NODES = 60_000
RECORD_BYTES = 16 << 10
TOTAL_BYTES = 4 << 20
MAX_CHANGES = 5_000
MAP_CELLS = 1024
SCREEN_WIDTH = 2048

#: rich style names of render.tree -> CSS classes of the page
_CLASSES = {"vmig.kind": "k", "vmig.name": "nm", "vmig.field": "fd", "vmig.value": "v", "vmig.dim": "d",
            "vmig.warn": "w", "vmig.error": "e", "vmig.title": "t"}


@dataclass
class ReportSide:
    """What the page shows about one stream; the caller decodes and draws, this module only lays out."""

    name: str
    stream: MigrationStream
    #: the stream's bytes (a Source's buffer, or bytes), for the hexdumps
    data: Any
    screen: Any = None  # screen.Screen, when there is one
    screen_error: str | None = None
    ram: list[BlockMap] | None = None
    ram_note: str | None = None
    notes: list[str] = field(default_factory=list)


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0
        self.bytes = 0
        self.left_out: list[str] = []


def _node_json(node: TreeNode, record: int, budget: _Budget) -> dict[str, Any] | None:
    if budget.nodes >= MAX_NODES:
        return None
    budget.nodes += 1
    pieces: list[list[str]] = []
    out: dict[str, Any] = {"r": record}
    for text, style in node.label:
        if style == "vmig.offset":
            out["o"] = int(text, 16)
        elif style == "vmig.length":
            out["n"] = int(text.strip().lstrip("+"))
        else:
            pieces.append([text, _CLASSES.get(style or "", "")])
    out["t"] = pieces
    kids = []
    for child in node.children:
        kid = _node_json(child, record, budget)
        if kid is None:
            break
        kids.append(kid)
    if kids:
        out["c"] = kids
    return out


def _tree(side: ReportSide, budget: _Budget) -> list[dict[str, Any]]:
    roots: list[dict[str, Any]] = []
    holder = TreeNode("")
    for index, record in enumerate(side.stream.records):
        holder.children.clear()
        if isinstance(record, Section):
            section_node(holder, record)
        else:
            record_node(holder, record)
        for child in holder.children:
            node = _node_json(child, index, budget)
            if node is None:
                budget.left_out.append(f"{side.name}: the tree stops after {MAX_NODES:,} lines "
                                       f"(record {index} of {len(side.stream.records)})")
                return roots
            roots.append(node)
    return roots


def _record_bytes(side: ReportSide, budget: _Budget) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    cut = none = 0
    for index, record in enumerate(side.stream.records):
        span = record.span
        if span is None:
            continue
        take = min(span.length, RECORD_BYTES, max(TOTAL_BYTES - budget.bytes, 0))
        if take == 0 and span.length:
            none += 1  # the budget is spent: no entry at all, so the page stays bounded in record count too
            continue
        if take < span.length:
            cut += 1
        budget.bytes += take
        chunk = bytes(side.data[span.offset:span.offset + take])
        out[str(index)] = {"o": span.offset, "n": span.length, "b": base64.b64encode(chunk).decode("ascii")}
    if cut or none:
        budget.left_out.append(f"{side.name}: the hexdump holds at most {RECORD_BYTES:,} bytes of each record and "
                               f"{TOTAL_BYTES:,} in all; {cut} record(s) are shown in part"
                               + (f", {none} not at all" if none else ""))
    return out


def _devices(side: ReportSide) -> list[dict[str, Any]]:
    """The VFIO devices and ramfb displays in words: one entry per device, a few lines each."""
    from ...screen.config import find_displays

    devices: dict[str, dict[str, Any]] = {}
    for section in side.stream.sections:
        if not isinstance(section.body, VfioBody):
            continue
        entry = devices.setdefault(section.idstr, {"name": section.idstr, "kind": "VFIO PCI device", "lines": []})
        summary = body_summary(section)
        if summary:
            entry["lines"].append(f"{section.type.removeprefix('section_').upper()}: {summary}")
        for item in section.body.items:
            if item.config is None:
                continue
            holder = TreeNode("")
            for f in walk_fields(item.config.fields, item.config.subsections):
                if f.info and f.type in ("pci config", "msix state"):
                    info_nodes(holder, f.type, f.info)
            entry["lines"].extend("".join(t for t, _ in node.label) for node in holder.children)
    for display in find_displays(side.stream):
        entry = devices.setdefault(display.name, {"name": display.name, "kind": "ramfb display", "lines": []})
        at = f" @{display.offset:#x}" if display.offset is not None else ""
        entry["lines"].append(f"ramfb ({'VFIODisplay subsection' if display.kind == 'vfio' else 'ramfb-dev section'}"
                              f"{at}): {display.cfg.words()}")
        try:
            display.cfg.check(display)
            entry["lines"].append("QEMU accepts this config (the screen below says whether guest RAM holds it)")
        except (RamfbConfigError, ScreenError) as err:  # say why in words
            entry["lines"].append(err.message)
    return list(devices.values())


def png_base64(image: Any, note: list[str], what: str) -> str:
    if image.width > SCREEN_WIDTH:
        height = max(1, round(image.height * SCREEN_WIDTH / image.width))
        note.append(f"{what}: {image.width}x{image.height} shown scaled to {SCREEN_WIDTH}x{height}")
        image = image.resize((SCREEN_WIDTH, height))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return base64.b64encode(out.getvalue()).decode("ascii")


def _screen(side: ReportSide, budget: _Budget) -> dict[str, Any]:
    screen = side.screen
    if screen is None:
        return {"error": side.screen_error or "no screen"}
    return {"png": png_base64(screen.image, budget.left_out, f"{side.name}: the screen"),
            "width": screen.image.width, "height": screen.image.height,
            "words": f"{screen.display.name}: {screen.display.cfg.words()}", "missing": screen.missing_words()}


def _ram(side: ReportSide) -> dict[str, Any]:
    if side.ram is None:
        return {"note": side.ram_note or "no RAM map"}
    return {"states": STATES, "blocks": [asdict(b) for b in side.ram], "note": side.ram_note}


def _side(side: ReportSide, budget: _Budget) -> dict[str, Any]:
    stream = side.stream
    header = next((r for r in stream.records if r.type == "header"), None)
    config = stream.configuration
    return {
        "name": side.name,
        "size": stream.size,
        "records": len(stream.records),
        "version": getattr(header, "version", None),
        "machine": config.machine if config is not None else None,
        "vmdesc": stream.vmdesc is not None,
        "warnings": list(stream.warnings) + side.notes,
        "error": stream.error,
        "tree": _tree(side, budget),
        "bytes": _record_bytes(side, budget),
        "devices": _devices(side),
        "screen": _screen(side, budget),
        "ram": _ram(side),
    }


def _diff(diff: Any, screen_diff: ScreenDiff | None, a: ReportSide, b: ReportSide, budget: _Budget
          ) -> dict[str, Any]:
    changes = list(diff.changes) if diff is not None else []
    if len(changes) > MAX_CHANGES:
        budget.left_out.append(f"the diff lists the first {MAX_CHANGES:,} of {len(changes):,} changes")
    out: dict[str, Any] = {
        "same": diff.same if diff is not None else None,
        "changes": [{"group": c.group, "kind": c.kind, "path": c.path, "text": c.text, "a": c.old_offset,
                     "b": c.new_offset} for c in changes[:MAX_CHANGES]],
        "notes": list(diff.notes) if diff is not None else [],
        "ignored": diff.ignored if diff is not None else 0,
    }
    if screen_diff is not None and a.screen is not None and b.screen is not None:
        picture = side_by_side(a.screen.image, b.screen.image, screen_diff)
        out["screen"] = {"words": screen_diff.words(), "pixels": screen_diff.pixels, "bbox": screen_diff.bbox,
                         "png": png_base64(picture, budget.left_out, "the screen diff")}
    elif a.screen is None or b.screen is None:
        out["screen"] = {"words": "screens not compared: " + "; ".join(
            f"{s.name}: {s.screen_error}" for s in (a, b) if s.screen is None)}
    return out


def report_data(a: ReportSide, b: ReportSide | None = None, diff: Any = None,
                screen_diff: ScreenDiff | None = None) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able document."""
    budget = _Budget()
    sides = [_side(a, budget)] + ([_side(b, budget)] if b is not None else [])
    data: dict[str, Any] = {"vmig": __version__, "streams": sides}
    if b is not None:
        data["diff"] = _diff(diff, screen_diff, a, b, budget)
    data["left_out"] = budget.left_out
    return data


def _asset(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _script_json(data: dict[str, Any]) -> str:
    """JSON that cannot end its <script> element early: every '<' (and the two JavaScript line
    separators) escaped."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def report_html(a: ReportSide, b: ReportSide | None = None, diff: Any = None,
                screen_diff: ScreenDiff | None = None) -> str:
    """The whole page, as text."""
    data = report_data(a, b, diff, screen_diff)
    title = f"vmig report: {a.name}" + (f" vs {b.name}" if b is not None else "")
    page = _asset("page.html")
    return (page.replace("{{title}}", html.escape(title))
                .replace("{{style}}", _asset("page.css"))
                .replace("{{script}}", _asset("page.js"))
                .replace("{{data}}", _script_json(data)))


__all__ = ["ReportSide", "report_data", "report_html"]

