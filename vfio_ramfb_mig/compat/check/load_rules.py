"""Rules of QEMU's RAM and CPU loaders: RAM block names and sizes, postcopy advice, compressed
pages, page offsets inside their block, and an arm CPU's cpreg list.

Imports: text, model, ram.state (the IllegalOffset fact and its scan), compat.check.{findings, stream_facts,
destination}.
References: migration/ram.c (parse_ramblocks: "Unknown ramblock \\"%s\\", cannot accept migration";
parse_ramblock -> system/physmem.c qemu_ram_resize: "Size mismatch: %s: 0x%x != 0x%x",
"Size too large: %s: 0x%x > 0x%x"; ram_load_precopy -> host_from_ram_block_offset:
"Illegal RAM offset %x"; QEMU <= 9.0 with compress off: "Received an unexpected compressed page";
QEMU >= 9.1, which no longer knows COMPRESS_PAGE: "Unknown combination of migration flags: 0x%x"),
migration/savevm.c (loadvm_postcopy_handle_advise: "RAM postcopy is
disabled but have 16 byte advise", "RAM postcopy is enabled but have 0 byte advise";
qemu_loadvm_section_part_end: "error while loading state section id %d(%s)"),
target/arm/machine.c (vmstate_arm_cpu: VMSTATE_INT32_POSITIVE_LE(cpreg_vmstate_array_len),
cpu_post_load returns -1 for a register the destination does not have), migration/vmstate-types.c
(get_int32_le: "Invalid value %d expecting positive value <= %d").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ...model import Command, RamBody, RamMemSize, RamPages, Section, VmstateBody
from ...naming import section_name
from ...ram.state import illegal_offsets
from ...text import printable
from .findings import EINVAL, Context, Finding, Rule, loading_error, report
from .stream_facts import records

EPERM = "Operation not permitted"


def _mem_size(ctx: Context) -> tuple[int, Section, RamMemSize] | None:
    for i, r in records(ctx.stream):
        if isinstance(r, Section) and isinstance(r.body, RamBody):
            for item in r.body.items:
                if isinstance(item, RamMemSize):
                    return i, r, item
    return None


def rule_ram_blocks(ctx: Context, rule: Rule) -> Iterator[Finding]:
    """Every block of the stream's block list, in order, against the destination's blocks."""
    dest = ctx.dest
    found = _mem_size(ctx)
    if found is None:
        return
    index, section, item = found
    where = {"record": index, "offset": item.span.offset if item.span else None,
             "ptr": ("records", index, "ram")}
    if dest.ram_blocks is None:
        dest = replace(dest, ram_blocks=())  # sizes unknown (the notes say so); device blocks still judged
        ctx = replace(ctx, dest=dest)
    have = {b.name: b for b in dest.ram_blocks}
    tail = loading_error(section.idstr, section.instance_id or 0)
    for block in item.blocks:
        name = printable(block.idstr)
        fact = have.get(block.idstr)
        path = f"ram/{name}"
        if fact is None:
            if dest.ram_complete or _device_missing(ctx, block.idstr):
                yield report(rule, "refused", f"RAM block {name} is not at the destination",
                             [f"Unknown ramblock \"{name}\", cannot accept migration", tail], path=path, **where)
                return
            continue
        if fact.used is None or block.used_length == fact.used:
            continue
        if fact.max is None:
            yield report(rule, "note", f"RAM block {name} is {block.used_length:#x} bytes in the stream, "
                         f"{fact.used:#x} at the destination; whether the destination may resize it is not known "
                         "(profile the destination)", (), path=path, **where)
            continue
        if not fact.resizeable:
            yield report(rule, "refused", f"RAM block {name} is {block.used_length:#x} bytes in the stream, "
                         f"{fact.used:#x} at the destination ({fact.origin}), which cannot resize it",
                         [f"Size mismatch: {name}: {block.used_length:#x} != {fact.used:#x}: {EINVAL}", tail],
                         path=path, **where)
            return
        if fact.max is not None and block.used_length > fact.max:
            yield report(rule, "refused", f"RAM block {name} is {block.used_length:#x} bytes in the stream, more than "
                         f"the destination's maximum {fact.max:#x}",
                         [f"Size too large: {name}: {block.used_length:#x} > {fact.max:#x}: {EINVAL}", tail],
                         path=path, **where)
            return


def _device_missing(ctx: Context, block: str) -> bool:
    """A device's RAM block (``0000:00:01.0/vga.vram``: the device's qdev path, then the region) whose
    device the destination does not have: the stream's sections of that device all find no savevm
    entry there. QEMU meets the block list first, so it refuses the block before those sections."""
    from .section_rules import match_entries

    device, sep, _ = block.rpartition("/")
    if not sep or not device:
        return False
    matched = match_entries(ctx)
    mine = [entry for (idstr, _), entry in matched.items() if idstr.startswith(device + "/")]
    return bool(mine) and all(entry is None for entry in mine)


def rule_postcopy_advise(ctx: Context, rule: Rule) -> Iterator[Finding]:
    has_cap = "postcopy-ram" in ctx.dest.capabilities
    for i, r in records(ctx.stream):
        if not isinstance(r, Command) or r.name != "POSTCOPY_ADVISE":
            continue
        where = {"record": i, "offset": r.span.offset if r.span else None, "ptr": ("records", i),
                 "path": "stream/commands/POSTCOPY_ADVISE"}
        if len(r.data) == 16 and not has_cap:
            yield report(rule, "refused", "the source had postcopy-ram on (16-byte POSTCOPY_ADVISE); the "
                         "destination does not (--cap postcopy-ram)",
                         ["RAM postcopy is disabled but have 16 byte advise"], **where)
        elif len(r.data) == 0 and has_cap:
            yield report(rule, "refused", "the destination has postcopy-ram on, the source did not (empty "
                         "POSTCOPY_ADVISE)", ["RAM postcopy is enabled but have 0 byte advise"], **where)
        elif len(r.data) not in (0, 16):
            yield report(rule, "refused", f"POSTCOPY_ADVISE carries {len(r.data)} bytes (0 or 16 expected)",
                         [f"CMD_POSTCOPY_ADVISE invalid length ({len(r.data)})"], **where)
        elif len(r.data) == 16:
            tps = int.from_bytes(r.data[8:16], "big")
            bits = ctx.dest.target_page_bits
            if bits is not None and tps != 1 << bits:
                yield report(rule, "refused", f"the source's target page size {tps} is not the destination's "
                             f"{1 << bits}", [f"Postcopy needs matching target page sizes (s={tps} d={1 << bits})"],
                             **where)
            else:
                yield report(rule, "note", "postcopy-ram on both sides: whether the destination's host supports "
                             "userfaultfd and has the same RAM page sizes was not checked", (), **where)
        return


#: the first QEMU without COMPRESS_PAGE records (the compress capability was removed in 9.1)
COMPRESS_REMOVED = (9, 1)


def rule_compressed_pages(ctx: Context, rule: Rule) -> Iterator[Finding]:
    """COMPRESS_PAGE records (a source with QEMU <= 9.0's compress capability): a destination of
    9.1 or later has no such record kind; an older one takes them only with compress on."""
    found = _first_compressed(ctx)
    if found is None:
        return
    index, section, run = found
    if index is None or section is None:
        return
    where = {"record": index, "offset": run.span.offset if run.span else None, "ptr": ("records", index),
             "path": f"ram/{printable(run.block)}"}
    tail = f"error while loading state section id {section.section_id}({printable(section.idstr)})"
    version = ctx.dest.version
    if version is None:
        yield report(rule, "note", "the stream has compressed pages (QEMU <= 9.0's compress capability): a "
                     "destination of QEMU 9.1 or later refuses them, an older one needs --cap compress",
                     (), **where)
    elif version >= COMPRESS_REMOVED:
        flags = 0x100 | (0 if run.named else 0x20)  # COMPRESS_PAGE, and CONTINUE unless it names its block
        yield report(rule, "refused", f"compressed pages (COMPRESS_PAGE) from a source with the compress "
                     f"capability; QEMU {ctx.dest.qemu} has no such record (removed in 9.1)",
                     [f"Unknown combination of migration flags: {flags:#x}", tail], **where)
    elif "compress" not in ctx.dest.capabilities:
        yield report(rule, "refused", "compressed pages (COMPRESS_PAGE) from a source with the compress "
                     "capability; the destination does not have it on (--cap compress)",
                     ["Received an unexpected compressed page", tail], **where)


def _first_compressed(ctx: Context) -> tuple[int | None, Section | None, RamPages] | None:
    """The first compressed run and its record: the one decode gathered, or the first of the runs kept."""
    if ctx.compressed is not None:
        if not ctx.compressed:
            return None
        run = ctx.compressed[0]
        return (*_record_at(ctx, run.span.offset if run.span else None), run)
    for i, r in records(ctx.stream):
        if isinstance(r, Section) and isinstance(r.body, RamBody) \
                and any(per.get("compressed") for per in r.body.block_counts().values()):
            for item in r.body.every_item():
                if isinstance(item, RamPages) and item.kind == "compressed":
                    return i, r, item
    return None


def rule_illegal_ram_offset(ctx: Context, rule: Rule) -> Iterator[Finding]:
    found = ctx.illegal if ctx.illegal is not None else illegal_offsets(ctx.stream)
    if not found:
        return
    bad = found[0]
    index, section = _record_at(ctx, bad.record)
    yield report(rule, "refused", bad.message(),
                 [f"Illegal RAM offset {bad.page_offset:x}",
                  f"error while loading state section id {section.section_id}({printable(section.idstr)})"
                  if section is not None else loading_error("ram", 0)],
                 record=index, offset=bad.record, ptr=("records", index) if index is not None else (),
                 path=f"ram/{printable(bad.block)}")


def _record_at(ctx: Context, offset: int | None) -> tuple[int | None, Section | None]:
    if offset is None:
        return None, None
    for i, r in records(ctx.stream):
        if isinstance(r, Section) and r.span is not None and r.span.offset <= offset < r.span.end:
            return i, r
    return None, None


def _field(section: Section, name: str) -> tuple[int, Any] | None:
    if isinstance(section.body, VmstateBody):
        for n, f in enumerate(section.body.fields):
            if f.name == name:
                return n, f
    return None


def rule_cpregs(ctx: Context, rule: Rule) -> Iterator[Finding]:
    """arm: the incoming cpreg list may be no longer than the destination's and may name no register
    the destination lacks."""
    dest_regs = ctx.dest.cpregs
    for i, r in records(ctx.stream):
        if not isinstance(r, Section) or r.type != "section_full":
            continue
        length = _field(r, "cpreg_vmstate_array_len")
        indexes = _field(r, "cpreg_vmstate_indexes")
        if length is None or indexes is None:
            continue
        key = (r.idstr, r.instance_id or 0)
        path = section_name(r.idstr, r.instance_id)
        tail = loading_error(printable(r.idstr), r.instance_id or 0)
        if dest_regs is None or key not in dest_regs:
            yield report(rule, "note", f"{path}: the destination's CPU registers are unknown; the cpreg list was not "
                         "checked (profile the destination)", (), record=i, offset=r.span.offset if r.span else None,
                         ptr=("records", i), path=path)
            continue
        theirs = dest_regs[key]
        n, fld = length
        count = int(fld.value)
        if ctx.dest.cpregs_origin.startswith("a stock") and not _same_model(indexes[1].value, theirs):
            yield report(rule, "note", f"{path}: this CPU is not the model of {ctx.dest.cpregs_origin}; its cpreg "
                         "list was not checked (profile the destination)", (), record=i,
                         offset=r.span.offset if r.span else None, ptr=("records", i), path=path)
            continue
        if count > len(theirs) or count < 0:
            yield report(rule, "refused", f"{path}: {count} CPU registers in the stream, at most {len(theirs)} at the "
                         f"destination ({ctx.dest.cpregs_origin})",
                         [f"Invalid value {count} expecting positive value <= {len(theirs)}",
                          f"Failed to load {section_vmsd(r)}:cpreg_vmstate_array_len", tail],
                         record=i, offset=fld.span.offset if fld.span else None,
                         ptr=("records", i, "fields", n), path=f"{path}/cpreg_vmstate_array_len")
            return
        missing = sorted(set(indexes[1].value[:count]) - set(theirs))
        if missing:
            m, ifld = indexes
            yield report(rule, "refused", f"{path}: {len(missing)} CPU register(s) the destination does not have "
                         f"({ctx.dest.cpregs_origin}): {', '.join(cpreg_name(x) for x in missing[:6])}"
                         + (" …" if len(missing) > 6 else ""), [tail], record=i,
                         offset=ifld.span.offset if ifld.span else None, ptr=("records", i, "fields", m),
                         path=f"{path}/cpreg_vmstate_indexes", errno=EPERM)
            return


def section_vmsd(section: Section) -> str:
    return section.body.vmsd_name if isinstance(section.body, VmstateBody) else section.idstr


def _same_model(incoming: Sequence[int], theirs: Sequence[int]) -> bool:
    """A stock list stands for the destination only if the stream's CPU is that model: most of its
    registers are in the list (a different model shares few)."""
    if not incoming:
        return False
    return len(set(incoming) & set(theirs)) >= 0.9 * len(set(incoming))


def cpreg_name(index: int) -> str:
    """An arm cpreg list entry (the KVM register id target/arm/kvm-consts.h defines, which TCG uses too)
    as the assembler names a system register: ``S3_0_C1_C0_0`` (AArch64 op0_op1_CRn_CRm_op2) or
    ``p15,0,c1,c0,0`` (AArch32 coprocessor, opc1, CRn, CRm, opc2; 64-bit ones ``p15,0,c2``)."""
    arch, size, coproc = index >> 60, (index >> 52) & 0xF, (index >> 16) & 0xFFF
    if arch == 0x6 and coproc == 0x13:  # KVM_REG_ARM64 | KVM_REG_ARM64_SYSREG
        op0, op1, crn, crm, op2 = (index >> 14) & 3, (index >> 11) & 7, (index >> 7) & 15, (index >> 3) & 15, index & 7
        return f"S{op0}_{op1}_C{crn}_C{crm}_{op2}"
    if arch == 0x4 and size == 0x2:  # KVM_REG_ARM, 32-bit register
        crn, crm, opc1, opc2 = (index >> 11) & 15, (index >> 7) & 15, (index >> 3) & 7, index & 7
        return f"p{coproc},{opc1},c{crn},c{crm},{opc2}"
    if arch == 0x4 and size == 0x3:  # KVM_REG_ARM, 64-bit register
        crm, opc1 = (index >> 7) & 15, (index >> 3) & 15
        return f"p{coproc},{opc1},c{crm}"
    return f"{index:#x}"
