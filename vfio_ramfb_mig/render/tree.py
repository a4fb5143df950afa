"""model -> the decode tree (`vmig decode`) and the one-table summary (`vmig decode --summary`).

Renderers build and return renderables; they never print. Every record line
starts with its offset and length, so a reader can go straight to the bytes.

The tree is laid out here rather than by rich.tree.Tree, which renders every label
as a renderable of its own and takes most of a second for a stream's few thousand
lines. A `TextTree` keeps each label as (text, style name) pieces and prints them
behind the guides rich.tree.Tree draws ("├── ", "│   ", "└── "). Labels are never
parsed as rich markup, so names, types and values from the stream print as they are.

rich is imported only where it is used: `TextTree.plain()` needs none of it, so a
caller that writes plain text (not a terminal) never loads rich's console.

Imports: model, text, vmstate.compile, wire; rich inside the functions that use it.
"""

from __future__ import annotations

from contextvars import ContextVar
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..naming import section_selected
from ..text import printable
from .. import model
from ..vmstate.compile import RAMFB_CFG_TYPE
from ..codec.views import dirty_bitmap_words
from ..vmstate.builtin import DIRTY_BITMAP_CHUNK
from ..wire.primitives import TIMER_NOT_PENDING
from ..wire.ramfb import DRM_FORMATS, fourcc_text

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.measure import Measurement
    from rich.style import Style
    from rich.table import Table
    from rich.text import Text

SECTION_LABEL = {"section_start": "START", "section_part": "PART", "section_end": "END", "section_full": "FULL"}
#: at most this many array elements / bytes are shown inline
SHOW_ITEMS = 8
SHOW_BYTES = 16
#: stream_tree(full=True) is being built: show every item and byte
_FULL: ContextVar[bool] = ContextVar("vmig_tree_full", default=False)

#: a tree line's label: (text, style name or None) pieces, printed in order
Label = list[tuple[str, str | None]]

#: (space, continue, fork, end), as rich.tree.Tree draws them: plain, bold and underline2 guide styles
TREE_GUIDES = (("    ", "│   ", "├── ", "└── "), ("    ", "┃   ", "┣━━ ", "┗━━ "), ("    ", "║   ", "╠══ ", "╚══ "))
ASCII_GUIDES = ("    ", "|   ", "+-- ", "`-- ")


class TreeNode:
    """One line of a tree and the lines below it."""

    __slots__ = ("children", "label")

    def __init__(self, label: Label | str) -> None:
        self.label: Label = [(label, None)] if isinstance(label, str) else label
        self.children: list[TreeNode] = []

    def add(self, label: Label | str) -> TreeNode:
        """A child line; a str label is plain text (never markup)."""
        node = TreeNode(label)
        self.children.append(node)
        return node


class TextTree(TreeNode):
    """A tree of labelled lines: a rich renderable, and plain text without rich's layout.

    On a console that wraps (a terminal, a fixed-width export), a line longer than the
    width wraps under its own guides as rich.tree.Tree would; on a soft-wrapping console
    (piped output) every line is printed whole. Where no styles can show (no colour
    system: not a terminal, NO_COLOR) lines go out as unstyled text, many to a segment.
    `plain()` is that text without rich at all.
    """

    __slots__ = ()

    def rows(self, guides: tuple[str, str, str, str] = TREE_GUIDES[0]) -> Iterator[tuple[str, str, Label]]:
        """(prefix, continuation prefix, label) per line, depth first; the continuation prefix
        starts the later lines of a wrapped label."""
        space, cont, fork, end = guides
        yield "", "", self.label
        stack: list[tuple[list[TreeNode], int, str]] = [(self.children, 0, "")]
        pop, push = stack.pop, stack.append
        while stack:
            kids, i, base = pop()
            if i == len(kids):
                continue
            node = kids[i]
            if i + 1 == len(kids):
                below = base + space
                yield base + end, below, node.label
            else:
                push((kids, i + 1, base))
                below = base + cont
                yield base + fork, below, node.label
            if node.children:
                push((node.children, 0, below))

    def plain(self, *, ascii_only: bool = False) -> str:
        """The tree as text, a line per node, no styles and no wrapping (what a pipe gets)."""
        return "".join([f"{prefix}{''.join([t for t, _ in label])}\n"
                        for prefix, _, label in self.rows(ASCII_GUIDES if ascii_only else TREE_GUIDES[0])])

    def __str__(self) -> str:
        return self.plain()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.cells import cell_len
        from rich.segment import Segment

        guide_style = console.get_style("tree.line", default="") or None
        if options.ascii_only:
            guides = ASCII_GUIDES
        elif options.legacy_windows or guide_style is None:
            guides = TREE_GUIDES[0]
        else:
            guides = TREE_GUIDES[1 if guide_style.bold else 2 if guide_style.underline2 else 0]
        # styles show only with a colour system; a recording console may export them later
        styled = console.color_system is not None or console.record
        wrap = not options.no_wrap
        width = options.max_width
        styles: dict[str | None, Style | None] = {None: None}
        new_line = Segment.line()
        plain: list[str] = []  # unstyled lines go out a few dozen to a segment
        for prefix, below, label in self.rows(guides):
            if wrap or not styled:
                text = "".join([t for t, _ in label])
                if wrap and len(prefix) + cell_len(text) > width:
                    if plain:
                        yield Segment("".join(plain))
                        plain = []
                    yield from self._wrapped(console, options, prefix, below, label, guide_style)
                    continue
                if not styled:
                    plain.append(f"{prefix}{text}\n")
                    if len(plain) == 64:
                        yield Segment("".join(plain))
                        plain = []
                    continue
            if prefix:
                yield Segment(prefix, guide_style)
            for text, name in label:
                if name in styles:
                    style = styles[name]
                else:
                    style = styles[name] = console.get_style(name, default="") or None
                yield Segment(text, style)
            yield new_line
        if plain:
            yield Segment("".join(plain))

    @staticmethod
    def _wrapped(console: Console, options: ConsoleOptions, prefix: str, below: str, label: Label,
                 guide_style: Style | None) -> RenderResult:
        """A label wider than the console, wrapped as rich wraps text, later lines under `below`."""
        from rich.segment import Segment
        from rich.text import Text

        lines = console.render_lines(Text.assemble(*label),
                                     options.update(width=max(1, options.max_width - len(prefix)), highlight=False,
                                                    height=None),
                                     pad=options.justify is not None)
        new_line = Segment.line()
        for i, line in enumerate(lines):
            guide = below if i else prefix
            if guide:
                yield Segment(guide, guide_style)
            yield from line
            yield new_line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.cells import cell_len
        from rich.measure import Measurement

        minimum = maximum = 0
        for prefix, _, label in self.rows():
            text = "".join([t for t, _ in label])
            maximum = max(maximum, len(prefix) + cell_len(text))
            minimum = max(minimum, len(prefix) + max((cell_len(w) for w in text.split()), default=0))
        return Measurement(minimum, maximum)


def _shown(text: str) -> str:
    """printable(text), without its per-character pass for the usual all-printable names."""
    return text if text.isprintable() else printable(text)


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def _at(span: model.Span | None) -> Label:
    if span is None:
        return []
    return [(f"{span.offset:#010x}", "vmig.offset"), (f" +{span.length:<6} ", "vmig.length")]


def plain_text(renderable: Any, width: int) -> str:
    """What rich prints of `renderable` at `width` columns, without styles (for -o FILE)."""
    import os

    from rich.console import Console

    from .theme import THEME

    with open(os.devnull, "w") as devnull:
        console = Console(record=True, width=width, theme=THEME, no_color=True, file=devnull, soft_wrap=True)
        console.print(renderable)
    return console.export_text()


def selected(section: model.Section, patterns: tuple[str, ...]) -> bool:
    return section_selected(section.idstr, patterns)


def stream_tree(stream: model.MigrationStream, *, sections: tuple[str, ...] = (), title: str | None = None,
                full: bool = False) -> TextTree:
    """The tree of a stream; `full` shows every array item and byte (else SHOW_ITEMS / SHOW_BYTES)."""
    vmdesc = "vmdesc" if stream.vmdesc else "no vmdesc"
    root = TextTree([(_shown(title or stream.source or "stream"), "vmig.title"),
                     (f"  {stream.size:,} bytes, {len(stream.records)} records, {vmdesc}", "vmig.dim")])
    token = _FULL.set(full)
    try:
        for record in stream.records:
            if isinstance(record, model.Section):
                if selected(record, sections):
                    section_node(root, record)
            elif not sections:
                record_node(root, record)
    finally:
        _FULL.reset(token)
    return root


def record_node(parent: TreeNode, record: Any) -> None:
    at = _at(record.span)
    if isinstance(record, model.Header):
        parent.add([*at, ("header", "vmig.kind"), (f"  magic QEVM, version {record.version}", None)])
    elif isinstance(record, model.Configuration):
        node = parent.add([*at, ("configuration", "vmig.kind"), ("  machine ", None),
                           (_shown(record.machine), "vmig.value")])
        for sub in record.subsections:
            subsection_node(node, sub)
    elif isinstance(record, model.Command):
        extra = f" data {record.data.hex()}" if record.data else ""
        parent.add([*at, ("COMMAND", "vmig.kind"), (f"  {_shown(record.name)} (cmd {record.cmd}){extra}", None)])
    elif isinstance(record, model.Eof):
        parent.add([*at, ("EOF", "vmig.kind")])
    elif isinstance(record, model.Vmdesc):
        doc = record.document if isinstance(record.document, dict) else {}
        devices = len(doc.get("devices", [])) if isinstance(doc.get("devices"), list) else 0
        page_size = doc.get("page_size", "?")
        parent.add([*at, ("vmdesc", "vmig.kind"),
                    ((f"  JSON description of {devices} device sections, page size "
                     f"{_shown(str(page_size))}"), None)])


def section_node(parent: TreeNode, section: model.Section) -> None:
    label = _at(section.span)
    label += [(SECTION_LABEL[section.type], "vmig.kind"), (" ", None), (_shown(section.idstr), "vmig.name"),
              (f"  id {section.section_id}", "vmig.dim")]
    if section.long_header:
        label.append((f"  instance {section.instance_id}  version {section.version_id}", "vmig.dim"))
    if not section.footer:
        label.append(("  (no footer)", "vmig.dim"))
    body = section.body
    if isinstance(body, model.VmstateBody):
        label.append(((f"  [{_shown(body.vmsd_name)} v{body.version}, "
                      f"{'built-in' if body.origin == 'builtin' else 'vmdesc'}]"), "vmig.dim"))
        fields_nodes(parent.add(label), body.fields, body.subsections)
    elif isinstance(body, model.RamBody):
        ram_node(parent.add(label), body)
    elif isinstance(body, model.VfioBody):
        vfio_node(parent.add(label), body)
    elif isinstance(body, model.OpaqueBody):
        label.append((f"  opaque {body.data.length:,} bytes: {_shown(body.reason)}", "vmig.warn"))
        parent.add(label)


def fields_nodes(node: TreeNode, fields: Iterable[model.Field], subsections: Iterable[model.Subsection]) -> None:
    for f in fields:
        field_node(node, f)
    for sub in subsections:
        subsection_node(node, sub)


def subsection_node(parent: TreeNode, sub: model.Subsection) -> None:
    node = parent.add([*_at(sub.span), ("subsection ", "vmig.kind"), (_shown(sub.name), "vmig.name"),
                       (f" v{sub.version}", "vmig.dim")])
    fields_nodes(node, sub.fields, sub.subsections)


def field_node(parent: TreeNode, f: model.Field) -> None:
    # the hot path of a big stream's tree: _at and _shown inlined
    name, ftype, value, span = f.name, f.type, f.value, f.span
    label: Label = [] if span is None else [(f"{span.offset:#010x}", "vmig.offset"),
                                            (f" +{span.length:<6} ", "vmig.length")]
    label.append((name if name.isprintable() else printable(name), "vmig.field"))
    label.append((f"  {ftype if ftype.isprintable() else printable(ftype)}", "vmig.dim"))
    if isinstance(value, model.StructValue):
        if value.vmsd_name == DIRTY_BITMAP_CHUNK and f.info:
            label.append((f"  {_shown(dirty_bitmap_words(f.info))}", "vmig.value"))
            if len(value.fields) == 1:  # the flags alone (an end of section): the line says it all
                parent.add(label)
                return
        else:
            label.append((f"  {_shown(value.vmsd_name)} v{value.version}", "vmig.dim"))
        fields_nodes(parent.add(label), value.fields, value.subsections)
        return
    if isinstance(value, list) and value and isinstance(value[0], model.StructValue):
        label.append((f"  [{len(value)}]", "vmig.dim"))
        node = parent.add(label)
        for i, item in enumerate(value):
            fields_nodes(node.add([(f"[{i}] {_shown(item.vmsd_name)} v{item.version}", "vmig.dim")]),
                         item.fields, item.subsections)
        return
    label.append(("  = ", None))
    label.append((value_str(ftype, value), "vmig.value"))
    node = parent.add(label)
    if f.info:
        info_nodes(node, ftype, f.info)


def value_text(ftype: str, value: Any) -> Text:
    from rich.text import Text

    return Text(value_str(ftype, value), style="vmig.value")


def value_str(ftype: str, value: Any) -> str:
    """A field value in a few words: numbers also in hex, bytes as a hex preview, ramfb cfg in words."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        if ftype == "timer" and value == TIMER_NOT_PENDING:
            return "not pending"
        return f"{value}" if -10 < value < 10 else f"{value} ({value & ((1 << 64) - 1):#x})"
    if isinstance(value, (bytes, bytearray)):
        if not any(value):
            return f"{len(value)} zero bytes"
        if _FULL.get() or len(value) <= SHOW_BYTES:
            return f"{len(value)} bytes: {value.hex(' ')}"
        return f"{len(value)} bytes: {value[:SHOW_BYTES].hex(' ')} … (+{len(value) - SHOW_BYTES} more; --full shows all)"
    if isinstance(value, model.Blob):
        return f"{value.length:,} bytes at {value.offset:#x}"
    if isinstance(value, dict) and ftype == RAMFB_CFG_TYPE:
        return ramfb_words(value)
    if isinstance(value, str):
        return repr(printable(value))
    if isinstance(value, list):
        if _FULL.get() or len(value) <= SHOW_ITEMS:
            return f"[{', '.join([value_str(ftype, v) for v in value])}] ({len(value)} items)"
        shown = ", ".join([value_str(ftype, v) for v in value[:SHOW_ITEMS]])
        return f"[{shown}, … +{len(value) - SHOW_ITEMS} more] ({len(value)} items; --full shows all)"
    return _shown(repr(value))


def ramfb_words(cfg: dict[str, int]) -> str:
    if not any(cfg.values()):
        return "not configured by the guest (28 zero bytes)"
    fourcc = fourcc_text(cfg["fourcc"])
    fmt = DRM_FORMATS.get(fourcc, "unknown format")
    return (f"{cfg['width']}x{cfg['height']} {fourcc} ({fmt}) framebuffer at {cfg['addr']:#x}, "
            f"stride {cfg['stride']}, flags {cfg['flags']:#x}")


def info_nodes(node: TreeNode, ftype: str, info: dict[str, Any]) -> None:
    if ftype == "pci config" and info:
        node.add(f"vendor {info['vendor_id']:04x}  device {info['device_id']:04x}  class {info['class_code']:06x}  "
                 f"rev {info['revision']:#04x}  header type {info['header_type']:#04x}"
                 f"{'  (PCI Express, 4096-byte config)' if info.get('express') else ''}")
        node.add(f"command {info['command']:#06x}  status {info['status']:#06x}  "
                 f"interrupt line {info['interrupt_line']} pin {info['interrupt_pin']}")
        if info.get("subsystem_vendor_id") is not None:
            node.add(f"subsystem {info['subsystem_vendor_id']:04x}:{info['subsystem_id']:04x}")
        for bar in info.get("bars", []):
            pref = " prefetchable" if bar.get("prefetchable") else ""
            node.add(f"BAR{bar['bar']} {bar['kind']}{pref} {bar['address']:#x}")
        for cap in info.get("capabilities", []):
            extra = "".join(f" {k} {v}" for k, v in cap.items() if k not in ("offset", "id", "name"))
            node.add(_shown(f"capability {cap['name']} at {cap['offset']:#04x}{extra}"))
    elif ftype == "msix state":
        node.add(f"{info['vectors']} MSI-X vectors, pending: {info['pending'] or 'none'}")
        for e in info["entries"][:SHOW_ITEMS]:
            node.add(f"vector {e['vector']}: address {e['address']:#x} data {e['data']:#x}"
                     f"{' masked' if e['masked'] else ''}")
        if len(info["entries"]) > SHOW_ITEMS:
            node.add(f"… {len(info['entries']) - SHOW_ITEMS} more vectors")


def ram_counts(body: model.RamBody) -> dict[str, dict[str, int]]:
    return body.block_counts()


def ram_node(node: TreeNode, body: model.RamBody) -> None:
    eos = None
    for item in body.items:  # may hold many page runs: a type test each, nothing more
        kind = type(item)
        if kind is model.RamPages:
            continue
        if kind is model.RamMemSize:
            blocks = node.add([*_at(item.span), ((f"block list: {len(item.blocks)} blocks, "
                                                 f"{size_text(item.total)} in all"), None)])
            for b in item.blocks:
                extra = f"  addr {b.addr:#x}" if b.addr is not None else ""
                if b.mapped_ram is not None:
                    extra += f"  mapped-ram pages at {b.mapped_ram['pages_offset']:#x}"
                    if b.present_pages is not None:
                        extra += f", {b.present_pages} present"
                blocks.add([(_shown(b.idstr), "vmig.name"), (f"  {size_text(b.used_length)}{extra}", None)])
        elif kind is model.RamMarker:
            if item.kind == "multifd_flush":
                node.add([*_at(item.span), ("MULTIFD_FLUSH", None)])
            elif item.kind == "eos":
                eos = item
    for block, per in ram_counts(body).items():
        kinds = ", ".join(f"{n} {'normal' if k == 'page' else k}" for k, n in per.items() if n)
        node.add([(_shown(block), "vmig.name"), (f": {kinds} pages", None)])
    if eos is not None:
        node.add([*_at(eos.span), ("EOS", "vmig.dim")])


VFIO_NAMES = {"setup": "DEV_SETUP_STATE", "end_of_state": "END_OF_STATE", "init_data_sent": "DEV_INIT_DATA_SENT",
              "data": "DEV_DATA_STATE", "config": "DEV_CONFIG_STATE"}


def vfio_node(node: TreeNode, body: model.VfioBody) -> None:
    for item in body.items:
        label = [*_at(item.span), (VFIO_NAMES[item.kind], "vmig.kind")]
        if item.kind == "data" and item.data is not None:
            label.append((f"  {item.data.length:,} bytes of device data", None))
            node.add(label)
        elif item.kind == "config" and item.config is not None:
            c = item.config
            label.append((f"  {_shown(c.vmsd_name)} v{c.version}", "vmig.dim"))
            sub = node.add(label)
            fields_nodes(sub, c.fields, c.subsections)
            if not any(s.name == "VFIOPCIDevice/VFIODisplay" for s in c.subsections):
                sub.add([("no VFIOPCIDevice/VFIODisplay subsection: ramfb state not migrated", "vmig.dim")])
        else:
            node.add(label)


def summary_table(stream: model.MigrationStream, *, sections: tuple[str, ...] = ()) -> Any:
    """One table, a row per record. It takes the console's width: where the wide layout (a column
    each for idstr, instance, version and content) does not fit, the content goes under the
    section's name in one column. Names and offsets are never cut; only content wraps."""
    title = f"{stream.source or 'stream'}: {stream.size:,} bytes"
    rows = []
    for r in stream.records:
        if isinstance(r, model.Section):
            if not selected(r, sections):
                continue
            rows.append((f"{r.span.offset:#x}", f"{r.span.length:,}", SECTION_LABEL[r.type], str(r.section_id),
                         printable(r.idstr), "" if r.instance_id is None else str(r.instance_id),
                         "" if not r.long_header else str(r.version_id), body_summary(r)))
        elif not sections:
            name = r.type if not isinstance(r, model.Command) else f"COMMAND {r.name}"
            detail = r.machine if isinstance(r, model.Configuration) else ""
            rows.append((f"{r.span.offset:#x}", f"{r.span.length:,}", name, "", "", "", "", detail))
    return _SummaryTable(title, rows)


class _SummaryTable:
    """summary_table's renderable: the wide table where it fits, else the narrow one."""

    def __init__(self, title: str, rows: list[tuple[str, ...]]) -> None:
        self.title, self.rows = title, rows

    def wide(self) -> Table:
        from rich.table import Table

        table = Table(title=self.title, show_lines=False)
        for column in ("offset", "length", "record", "id", "idstr", "inst", "ver"):
            table.add_column(column, justify="left" if column in ("record", "idstr") else "right", no_wrap=True)
        table.add_column("content", overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        return table

    def narrow(self) -> Table:
        from rich.table import Table

        table = Table(title=self.title, show_lines=False)
        for column in ("offset", "length", "record", "id"):
            table.add_column(column, justify="left" if column == "record" else "right", no_wrap=True)
        table.add_column("section: content", overflow="fold", ratio=1)
        for offset, length, record, sid, idstr, inst, ver, content in self.rows:
            name = " ".join(x for x in (idstr, inst and f"#{inst}", ver and f"v{ver}") if x)
            table.add_row(offset, length, record, sid, "\n".join(x for x in (name, content and f"  {content}") if x))
        return table

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Table]:
        from rich.measure import Measurement

        wide = self.wide()
        need = Measurement.get(console, options.update_width(1 << 16), wide).maximum
        yield wide if need <= options.max_width else self.narrow()


def body_summary(section: model.Section) -> str:
    body = section.body
    if isinstance(body, model.VmstateBody):
        subs = f", subsections: {', '.join(s.name for s in body.subsections)}" if body.subsections else ""
        text = f"{body.vmsd_name} v{body.version}: {len(body.fields)} fields{subs}"
        ramfb = find_ramfb(body.fields, body.subsections)
        return text + (f"; ramfb {ramfb_words(ramfb)}" if ramfb is not None else "")
    if isinstance(body, model.RamBody):
        counts = ram_counts(body)
        zero = sum(c["zero"] for c in counts.values())
        normal = sum(c["page"] for c in counts.values())
        blocks = next((len(i.blocks) for i in body.items if isinstance(i, model.RamMemSize)), None)
        return (f"{blocks} RAM blocks; " if blocks is not None else "") + f"{normal} normal, {zero} zero pages"
    if isinstance(body, model.VfioBody):
        data = sum(i.data.length for i in body.items if i.data is not None)
        parts = [f"{data:,} bytes of device data"] if data else []
        config = next((i.config for i in body.items if i.config is not None), None)
        if config is not None:
            pci = next((f for f in model.walk_fields(config.fields) if f.type == "pci config" and f.info), None)
            if pci is not None:
                msix = next((c["vectors"] for c in pci.info["capabilities"] if c["name"] == "MSI-X"), None)
                parts.append(f"PCI {pci.info['vendor_id']:04x}:{pci.info['device_id']:04x}, "
                             f"{len(pci.value) if isinstance(pci.value, bytes) else pci.value.length}-byte config, "
                             + (f"{msix} MSI-X vectors" if msix else "no MSI-X"))
            ramfb = find_ramfb(config.fields, config.subsections)
            parts.append("VFIODisplay: ramfb " + ramfb_words(ramfb) if ramfb is not None
                         else "no VFIODisplay (ramfb not migrated)")
        return "; ".join(parts) or " ".join(i.kind.upper() for i in body.items)
    if isinstance(body, model.OpaqueBody):
        return f"opaque: {body.reason}"
    return ""


def find_ramfb(fields: Iterable[model.Field], subsections: Iterable[model.Subsection]) -> dict[str, int] | None:
    """The first ramfb cfg value anywhere below these fields and subsections."""
    return next((f.value for f in model.walk_fields(fields, subsections)
                 if f.type == RAMFB_CFG_TYPE and isinstance(f.value, dict)), None)
