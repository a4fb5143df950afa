"""Rich renderables for `vmig diff` (Changes, grouped by section) and `vmig check` (a Verdict).

Renderers build and return rich objects; they never print. Colours come from the
theme: vmig.added (only in B), vmig.removed (only in A), vmig.changed (both,
different), vmig.path, vmig.offset.

Imports: rich, diff, compat.check, text.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..text import printable
from ..compat.check import Finding, Verdict
from ..diff import Change, StreamDiff

ADDED = frozenset({"section_added", "subsection_added", "field_added"})
REMOVED = frozenset({"section_removed", "subsection_removed", "field_removed"})
SEVERITY_MARK = {"refused": ("✗", "vmig.removed"), "warning": ("!", "vmig.warn"), "note": ("·", "vmig.dim")}


def change_style(change: Change) -> str:
    if change.kind == "equivalent":
        return "vmig.dim"
    if change.kind in ADDED or (change.kind == "ram_block" and change.old is None and change.new is not None):
        return "vmig.added"
    if change.kind in REMOVED or (change.kind == "ram_block" and change.new is None and change.old is not None):
        return "vmig.removed"
    return "vmig.changed"


def _sign(change: Change) -> str:
    style = change_style(change)
    if change.kind == "equivalent":
        return "≡"
    return {"vmig.added": "+", "vmig.removed": "-"}.get(style, "~")


def _offsets(change: Change) -> Text:
    if change.old_offset is None and change.new_offset is None:
        return Text()
    a = f"{change.old_offset:#x}" if change.old_offset is not None else "-"
    b = f"{change.new_offset:#x}" if change.new_offset is not None else "-"
    return Text(f"  @{a} → {b}", style="vmig.offset")


def change_line(change: Change) -> Text:
    style = change_style(change)
    rel = change.path[len(change.group) + 1:] if change.path.startswith(change.group + "/") else ""
    line = Text(f"{_sign(change)} ", style=style)
    if rel:
        line.append(printable(rel), style="vmig.path")
        line.append("  ")
    line.append(change.text, style=style)
    line.append_text(_offsets(change))
    return line


def _group_label(group: str, changes: list[Change]) -> Text:
    label = Text(printable(group), style="vmig.name")
    kinds = {c.kind for c in changes}
    if kinds <= {"section_added"}:
        label.append("  only in B", style="vmig.added")
    elif kinds <= {"section_removed"}:
        label.append("  only in A", style="vmig.removed")
    else:
        label.append(f"  {len(changes)} change{'s' if len(changes) != 1 else ''}", style="vmig.dim")
    return label


def _title(result: StreamDiff) -> Text:
    title = Text.assemble(("diff ", "vmig.title"), (printable(result.a or "A"), "vmig.removed"), " → ",
                          (printable(result.b or "B"), "vmig.added"))
    groups = result.groups()
    if result.same:
        title.append("  no differences", style="vmig.dim")
    else:
        title.append(f"  {len(result.changes)} change{'s' if len(result.changes) != 1 else ''} in "
                     f"{len(groups)} group{'s' if len(groups) != 1 else ''}", style="vmig.dim")
    if result.ignored:
        title.append(f" ({result.ignored} ignored: {', '.join(result.ignore)})", style="vmig.dim")
    return title


def diff_tree(result: StreamDiff) -> Tree:
    """Every change, grouped by section (configuration and stream facts first)."""
    root = Tree(_title(result))
    for group, changes in result.groups().items():
        if len(changes) == 1 and changes[0].path == group:
            root.add(Text.assemble((printable(group), "vmig.name"), "  ") + change_line(changes[0]))
            continue
        node = root.add(_group_label(group, changes))
        for change in changes:
            node.add(change_line(change))
    for note in result.notes:
        root.add(Text(f"note: {note}", style="vmig.warn"))
    return root


def diff_brief(result: StreamDiff) -> RenderableType:
    """One line per group: its name and how many changes of which kind."""
    lines = [_title(result)]
    for group, changes in result.groups().items():
        kinds: dict[str, int] = {}
        for change in changes:
            word = {"vmig.added": "added", "vmig.removed": "removed"}.get(change_style(change), "changed")
            kinds[word] = kinds.get(word, 0) + 1
        style = "vmig.added" if set(kinds) == {"added"} else "vmig.removed" if set(kinds) == {"removed"} \
            else "vmig.changed"
        lines.append(Text.assemble("  ", (printable(group), "vmig.name"), "  ",
                                   (", ".join(f"{n} {k}" for k, n in kinds.items()), style)))
    return Group(*lines)


# ================================================================ check


def diff_view(result: StreamDiff, verdicts: tuple[Verdict, Verdict] | None = None, *,
              names: tuple[str, str] = ("A", "B"), brief: bool = False) -> RenderableType:
    """`vmig diff`: the changes (a tree, or a line a section when brief), then with `verdicts`
    (diff --compat) A judged where B was made and B where A was made."""
    shown = diff_brief(result) if brief else diff_tree(result)
    if verdicts is None:
        return shown
    a, b = names
    return Group(shown, Text(""), verdict_view(verdicts[0], title=f"A ({a}) where B was made", brief=brief),
                 verdict_view(verdicts[1], title=f"B ({b}) where A was made", brief=brief))


def finding_node(parent: Tree, finding: Finding) -> None:
    mark, style = SEVERITY_MARK.get(finding.severity, ("?", "vmig.dim"))
    label = Text.assemble((f"{mark} ", style), (finding.rule_id, style), "  ")
    if finding.path:
        label.append(printable(finding.path), style="vmig.path")
    where = []
    if finding.record is not None:
        where.append(f"record {finding.record}")
    if finding.offset is not None:
        where.append(f"@{finding.offset:#x}")
    if finding.pointer:
        where.append(finding.pointer)
    if where:
        label.append("  " + " ".join(where), style="vmig.offset")
    node = parent.add(label)
    node.add(Text(finding.summary))
    for line in finding.messages:
        node.add(Text.assemble(("QEMU: ", "vmig.dim"), (line, "vmig.value")))
    node.add(Text(f"source: {finding.source}", style="vmig.hint"))


def verdict_view(verdict: Verdict, *, title: str | None = None, brief: bool = False) -> RenderableType:
    """The verdict, what QEMU would print, and every finding (refusals, warnings, notes)."""
    dest = verdict.destination
    ok = verdict.loadable
    head = Text.assemble(("would load" if ok else "would be refused", "vmig.added" if ok else "vmig.error"),
                         ("  " + (title or printable(verdict.stream or "stream")), "vmig.name"),
                         (f"  →  {dest.describe()}", "vmig.dim"))
    if brief:
        first = verdict.first
        if first is None:
            return head
        return Group(head, Text.assemble(("  ", ""), (first.rule_id, "vmig.removed"), ": ",
                                         (verdict.qemu_output[0] if verdict.qemu_output else first.summary,
                                          "vmig.value")))
    root = Tree(head)
    if verdict.qemu_output:
        out = root.add(Text("QEMU would print:" if not ok else "QEMU would print (and still load):",
                            style="vmig.title"))
        for line in verdict.qemu_output:
            out.add(Text(line, style="vmig.value"))
    if verdict.findings:
        findings = root.add(Text(f"{len(verdict.refusals)} refusal{'s' if len(verdict.refusals) != 1 else ''}, "
                                 f"{len(verdict.findings) - len(verdict.refusals)} other finding"
                                 f"{'s' if len(verdict.findings) - len(verdict.refusals) != 1 else ''}"
                                 + (" (QEMU stops at the first refusal)" if len(verdict.refusals) > 1 else ""),
                                 style="vmig.dim"))
        for finding in verdict.findings:
            finding_node(findings, finding)
    for note in dest.notes:
        root.add(Text(f"note: {note}", style="vmig.hint"))
    return root


def rules_table(rules: list[tuple[str, str, str]]) -> Table:
    """(rule id, summary, QEMU source) rows, for `vmig check --rules`."""
    table = Table(title="load rules vmig checks, in QEMU's order")
    for column in ("rule", "what QEMU checks", "where QEMU does it"):
        table.add_column(column)
    for rule_id, summary, source in rules:
        table.add_row(rule_id, summary, source)
    return table
