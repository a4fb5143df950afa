"""Rules for the sections and commands after the configuration: savevm entries, versions,
subsections, footers, commands, RAM size, vmdesc.

Imports: text, model, compat.check.{findings, qemu_facts, stream_facts, destination}.
References: migration/savevm.c (qemu_loadvm_section_start_full, find_se, check_section_footer,
loadvm_process_command, qemu_loadvm_state), migration/vmstate.c (vmstate_load_state,
vmstate_subsection_load), migration/ram.c (parse_ramblock), hw/vfio/migration.c
(vfio_load_device_config_state).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ...model import Command, Field, OpaqueBody, Section, StructValue, Subsection, VfioBody, VmstateBody
from ...naming import element, level_names, section_name, subsection_name
from ...text import printable
from .destination import Entry, VmsdKnowledge
from .findings import EINVAL, ENOENT, Context, Finding, Rule, loading_error, report
from .qemu_facts import has_fact
from .stream_facts import records, section_vmsd_name

#: vbasedev->name of a vfio-pci device is the *host* device (e.g. 0000:01:00.0); vmig cannot know it
VFIO_HOST_NAME = "<host device>"


def match_entries(ctx: Context) -> dict[tuple[str, int], Entry | None]:
    """find_se for every (idstr, instance) of the stream, in stream order."""
    exact = {(e.idstr, e.instance_id): e for e in ctx.dest.entries if e.idstr is not None}
    loose = [e for e in ctx.dest.entries if e.idstr is None]
    out: dict[tuple[str, int], Entry | None] = {}
    for section in ctx.stream.sections:
        key = (section.idstr, section.instance_id or 0)
        if not section.long_header or key in out:
            continue
        entry = exact.get(key)
        if entry is None:
            vmsd = section_vmsd_name(section)
            entry = next((e for e in loose if e.vmsd_name == vmsd), None)
            if entry is not None:
                loose.remove(entry)
        out[key] = entry
    return out


def _first_long(ctx: Context) -> Iterator[tuple[int, Section]]:
    seen: set[tuple[str, int]] = set()
    for i, r in records(ctx.stream):
        if isinstance(r, Section) and r.long_header and (r.idstr, r.instance_id or 0) not in seen:
            seen.add((r.idstr, r.instance_id or 0))
            yield i, r


def _first_full(ctx: Context) -> Iterator[tuple[int, Section]]:
    for i, r in records(ctx.stream):
        if isinstance(r, Section) and r.type == "section_full":
            yield i, r


def rule_section_footer(ctx: Context, rule: Rule) -> Iterator[Finding]:
    for i, r in records(ctx.stream):
        if not isinstance(r, Section) or r.span is None:
            continue
        if not r.footer and ctx.dest.section_footers:
            yield report(rule, "refused", "the stream has no section footers; the destination expects them "
                         "(send-section-footer=on, the default)", [f"Missing section footer for {printable(r.idstr)}"],
                         record=i, offset=r.span.end, ptr=("records", i, "footer"),
                         path=section_name(r.idstr, r.instance_id))
        elif r.footer and not ctx.dest.section_footers:
            # the loader takes the footer byte 0x7e for the next record's type
            yield report(rule, "refused", "the stream has section footers; the destination does not read them "
                         "(send-section-footer=off)", ["Unknown savevm section type 126"], record=i,
                         offset=r.span.end - 5, ptr=("records", i, "footer"), path=section_name(r.idstr, r.instance_id))
        return


def rule_unknown_section(ctx: Context, rule: Rule) -> Iterator[Finding]:
    matched = match_entries(ctx)
    for i, r in _first_long(ctx):
        if matched.get((r.idstr, r.instance_id or 0)) is not None:
            continue
        vmsd = section_vmsd_name(r)
        why = _why_unknown(ctx, r, vmsd)
        yield report(rule, "refused", f"no savevm entry {printable(r.idstr)!r} instance {r.instance_id} at the "
                     f"destination: {why}",
                     [(f"Unknown savevm section or instance '{printable(r.idstr)}' {r.instance_id}. Make sure that "
                       "your current VM setup matches your saved VM setup, including any hotplugged devices")],
                     record=i, offset=r.span.offset if r.span else None, ptr=("records", i),
                     path=section_name(r.idstr, r.instance_id))


#: savevm entries that are no device's (SaveVMHandlers, no vmsd): what makes a QEMU have one
NOT_A_DEVICE = {
    "slirp": "it is the state of a -netdev user network backend (net/slirp.c registers one per backend), which "
             "vmig cannot be told of: a destination with the same -netdev user has it (profile such a destination: "
             "vmig profile)",
    "block": "it is block migration's (the block capability, migration/block.c), which QEMU removed in 9.1",
    "dbus-vmstate": "it is the state of a -object dbus-vmstate (backends/dbus-vmstate.c), which vmig cannot be "
                    "told of (profile such a destination: vmig profile)",
}


def _why_unknown(ctx: Context, section: Section, vmsd: str) -> str:
    dest = ctx.dest
    if section.idstr in NOT_A_DEVICE and dest.schema.vmsd(vmsd) is None:
        return NOT_A_DEVICE[section.idstr]
    if vmsd == "vfio":
        if any(d.startswith("vfio-pci") for d in dest.devices):
            return "its vfio-pci device registers no savevm entry (migration off, see the note)"
        return "it has no VFIO device (--device vfio-pci)"
    types = dest.schema.types_with_vmsd(vmsd)
    if dest.schema.vmsd(vmsd) is None and vmsd not in dest.extra:
        return f"QEMU {dest.qemu or ''} has no vmsd named {vmsd!r} (not in {dest.schema.origin})".replace("  ", " ")
    if any(e.vmsd_name == vmsd for e in dest.entries):
        return f"its {vmsd} entries are taken by other sections (give one more --device)"
    if types:
        return f"neither the {dest.machine} machine nor a --device creates it (vmsd {vmsd} belongs to " \
               f"{', '.join(types[:4])}{' …' if len(types) > 4 else ''})"
    return f"the {dest.machine} machine does not create it"


def _known_versions(ctx: Context) -> Iterator[tuple[int, Section, VmsdKnowledge]]:
    """Each first long-header section that found its savevm entry, with what vmig knows of that entry's versions."""
    matched = match_entries(ctx)
    for i, r in _first_long(ctx):
        entry = matched.get((r.idstr, r.instance_id or 0))
        if entry is None or r.version_id is None:
            continue
        know = ctx.dest.entry_knowledge(entry)
        if know is not None and know.version_id is not None:
            yield i, r, know


def rule_section_version(ctx: Context, rule: Rule) -> Iterator[Finding]:
    for i, r, know in _known_versions(ctx):
        if r.version_id > know.version_id:
            yield report(rule, "refused", f"section version {r.version_id} is newer than the destination's "
                         f"{know.version_id}",
                         [f"savevm: unsupported version {r.version_id} for '{printable(r.idstr)}' v{know.version_id}"],
                         record=i, offset=r.span.offset if r.span else None, ptr=("records", i, "version_id"),
                         path=section_name(r.idstr, r.instance_id))


def rule_section_minimum_version(ctx: Context, rule: Rule) -> Iterator[Finding]:
    for i, r, know in _known_versions(ctx):
        if know.minimum_version_id is None:
            continue
        if r.version_id < know.minimum_version_id and r.version_id <= know.version_id:
            yield report(rule, "refused", f"section version {r.version_id} is older than the destination's minimum "
                         f"{know.minimum_version_id}",
                         [(f"{know.name}: incoming version_id {r.version_id} is too old for local minimum version_id  "
                          f"{know.minimum_version_id}"), loading_error(printable(r.idstr), r.instance_id or 0)],
                         record=i, offset=r.span.offset if r.span else None, ptr=("records", i, "version_id"),
                         path=section_name(r.idstr, r.instance_id))


#: commands every QEMU vmig judges knows (1 OPEN_RETURN_PATH ... 10 RECV_BITMAP, all older than 7.2)
_OLD_COMMANDS = range(1, 11)


def rule_command_unknown(ctx: Context, rule: Rule) -> Iterator[Finding]:
    version = ctx.dest.version
    if version is None:
        return
    for i, r in records(ctx.stream):
        if not isinstance(r, Command) or r.cmd in _OLD_COMMANDS:
            continue
        if r.name == "SWITCHOVER_START" and has_fact(version, "command:SWITCHOVER_START"):
            continue
        yield report(rule, "refused", f"COMMAND {r.name} (cmd {r.cmd}) does not exist in QEMU {ctx.dest.qemu}",
                     [f"MIG_CMD {r.cmd:#x} unknown (len {len(r.data):#x})"], record=i,
                     offset=r.span.offset if r.span else None, ptr=("records", i), path=f"stream/commands/{r.name}")
        return


def rule_subsections(ctx: Context, rule: Rule) -> Iterator[Finding]:
    """Unknown subsections and subsection versions, at every level of every decoded section."""
    matched = match_entries(ctx)
    for i, r in _first_full(ctx):
        key = (r.idstr, r.instance_id or 0)
        if key in matched and matched[key] is None:
            continue  # refused earlier: unknown section
        body = r.body
        if isinstance(body, VmstateBody):
            entry = matched.get(key)
            top = ctx.dest.entry_knowledge(entry) if entry is not None else None
            yield from _walk(ctx, rule, r, i, body.vmsd_name, body.fields, body.subsections, ("records", i),
                             section_name(r.idstr, r.instance_id), vfio=False, top=top)
        elif isinstance(body, VfioBody):
            for k, item in enumerate(body.items):
                if item.kind == "config" and item.config is not None:
                    yield from _walk(ctx, rule, r, i, item.config.vmsd_name, item.config.fields,
                                     item.config.subsections, ("records", i, "vfio", "items", k, "config"),
                                     section_name(r.idstr, r.instance_id) + "/config", vfio=True)


def _walk(ctx: Context, rule: Rule, section: Section, index: int, vmsd: str, fields: Sequence[Field],
          subsections: Sequence[Subsection], ptr: tuple[Any, ...], path: str, vfio: bool,
          top: VmsdKnowledge | None = None) -> Iterator[Finding]:
    names = level_names([f.name for f in fields] + [subsection_name(vmsd, s.name) for s in subsections],
                        arrays={i for i, f in enumerate(fields) if isinstance(f.value, list)})
    for n, f in enumerate(fields):
        values = f.value if isinstance(f.value, list) else [f.value]
        for m, v in enumerate(values):
            if isinstance(v, StructValue):
                sub_ptr = ptr + ("fields", n) + ((m,) if isinstance(f.value, list) else ())
                field_path = f"{path}/{names[n]}"
                yield from _walk(ctx, rule, section, index, v.vmsd_name, v.fields, v.subsections, sub_ptr,
                                 element(field_path, m) if isinstance(f.value, list) else field_path, vfio)
    know = top if top is not None else ctx.dest.knowledge(vmsd)
    idstr, instance = printable(section.idstr), section.instance_id or 0
    tail = (([f"{VFIO_HOST_NAME}: Failed to load device config space"] if vfio else [])
            + [loading_error(idstr, instance)])
    for j, sub in enumerate(subsections):
        sub_path = f"{path}/{names[len(fields) + j]}"
        sub_ptr = ptr + ("subsections", j)
        offset = sub.span.offset if sub.span else None
        if know is not None and know.subsections is not None and sub.name not in know.subsections:
            where = f"QEMU {ctx.dest.qemu}" if ctx.dest.qemu else ctx.dest.schema.origin
            yield report(rule, "refused", f"subsection {printable(sub.name)} does not exist in {vmsd} of {where} "
                         f"(it has {', '.join(know.subsections) or 'no subsections'})", tail, record=index,
                         offset=offset, ptr=sub_ptr, path=sub_path, errno=ENOENT)
            continue
        if know is not None and know.subsections is None and sub.name not in know.seen:
            yield report(rule, "note", f"subsection {printable(sub.name)} of {vmsd} not verified: {vmsd} is not in the "
                         f"-dump-vmstate and no capture of this QEMU showed it", (), record=index, offset=offset,
                         ptr=sub_ptr, path=sub_path)
        sub_know = ctx.dest.knowledge(sub.name)
        version = sub.version & 0xFF  # vmstate_subsection_load reads the be32 into a uint8_t
        if sub_know is not None and sub_know.version_id is not None and version > sub_know.version_id:
            yield report(rule, "refused", f"subsection {printable(sub.name)} version {sub.version} is newer than the "
                         f"destination's {sub_know.version_id}",
                         [(f"{sub.name}: incoming version_id {version} is too new for local version_id "
                          f"{sub_know.version_id}")] + tail, record=index, offset=offset, ptr=sub_ptr, path=sub_path)
        elif sub_know is not None and sub_know.minimum_version_id is not None and \
                version < sub_know.minimum_version_id:
            yield report(rule, "refused", f"subsection {printable(sub.name)} version {sub.version} is older than the "
                         f"destination's minimum {sub_know.minimum_version_id}",
                         [(f"{sub.name}: incoming version_id {version} is too old for local minimum version_id  "
                          f"{sub_know.minimum_version_id}")] + tail, record=index, offset=offset, ptr=sub_ptr,
                         path=sub_path)
        yield from _walk(ctx, rule, section, index, sub.name, sub.fields, sub.subsections, sub_ptr, sub_path, vfio)


def rule_opaque_sections(ctx: Context, rule: Rule) -> Iterator[Finding]:
    opaque = [(i, r) for i, r in _first_full(ctx) if isinstance(r.body, OpaqueBody)]
    if opaque:
        i, r = opaque[0]
        names = ", ".join(printable(s.idstr) for _, s in opaque[:6]) + (" …" if len(opaque) > 6 else "")
        yield report(rule, "note", f"{len(opaque)} section{'s' if len(opaque) > 1 else ''} not decoded "
                     f"({r.body.reason}): {names}; their subsections and nested versions were not checked", (),
                     record=i, offset=r.span.offset if r.span else None, ptr=("records", i),
                     path=section_name(r.idstr, r.instance_id))


def rule_vmdesc(ctx: Context, rule: Rule) -> Iterator[Finding]:
    if ctx.stream.vmdesc is None and ctx.stream.error is None:
        eof = next(((i, r) for i, r in records(ctx.stream) if r.type == "eof"), None)
        if eof is not None:
            i, r = eof
            yield report(rule, "warning", "no vmdesc after EOF (suppress-vmdesc=on at the source): QEMU prints an "
                         "error line but the load succeeds", ["Expected vmdescription section, but got 0"], record=i,
                         offset=r.span.end if r.span else None, ptr=("records", i), path="stream/vmdesc")
