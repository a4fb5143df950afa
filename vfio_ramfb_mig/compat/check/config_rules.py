"""Rules for the configuration record: machine type, page size, capabilities, UUID.

Imports: text, model, compat.check.{findings, stream_facts}.
References: migration/savevm.c (vmstate_configuration, configuration_post_load,
configuration_validate_capabilities, get_capability, vmstate_uuid_post_load).
"""

from __future__ import annotations

from collections.abc import Iterator

from ...model import Subsection
from ...text import printable
from .destination import PAGE_BITS_MIN
from .findings import Context, Finding, Rule, report
from .stream_facts import configuration_record, records, stream_capabilities



def rule_configuration_missing(ctx: Context, rule: Rule) -> Iterator[Finding]:
    if ctx.stream.configuration is None:
        first = next((i for i, r in records(ctx.stream) if i > 0), None)
        offset = ctx.stream.records[first].span.offset if first is not None else 8
        yield report(rule, "refused", "the stream has no configuration record; QEMU expects one right after the header",
                     ["Configuration section missing"], record=first, offset=offset, ptr=("records", first or 1))


def rule_machine_type(ctx: Context, rule: Rule) -> Iterator[Finding]:
    found = configuration_record(ctx.stream)
    if found is None:
        return
    index, config = found
    received, local = config.machine, ctx.dest.machine
    # QEMU compares with strncmp over the *received* length: a received prefix of the local name passes
    if local.encode()[:len(received.encode("utf-8", "surrogateescape"))] != received.encode("utf-8",
                                                                                             "surrogateescape"):
        yield report(rule, "refused", f"machine type {printable(received)} in the stream, {local} at the destination",
                     [f"Machine type received is '{printable(received)}' and local is '{local}'"], record=index,
                     offset=config.span.offset if config.span else None, ptr=("records", index, "machine"),
                     path="configuration/machine")


def _subsection(ctx: Context, name: str) -> tuple[int, int, Subsection] | None:
    """(record index, subsection index, subsection) of the configuration's subsection `name`, if it has one."""
    found = configuration_record(ctx.stream)
    if found is None:
        return None
    index, config = found
    return next(((index, j, sub) for j, sub in enumerate(config.subsections) if sub.name == name), None)


def rule_target_page_bits(ctx: Context, rule: Rule) -> Iterator[Finding]:
    """configuration_pre_load assumes the destination's TARGET_PAGE_BITS_MIN; a target-page-bits
    subsection replaces it; post_load compares with the destination's own bits."""
    local = ctx.dest.target_page_bits
    found_config = configuration_record(ctx.stream)
    if local is None or found_config is None:
        return
    found = _subsection(ctx, "configuration/target-page-bits")
    if found is not None:
        index, j, sub = found
        received = sub.fields[0].value if sub.fields else None
        where = {"offset": sub.span.offset if sub.span else None, "ptr": ("records", index, "subsections", j)}
        said = "the stream says"
    else:
        index, config = found_config
        received = PAGE_BITS_MIN.get(ctx.dest.arch or "")
        if received is None:
            return
        where = {"offset": config.span.offset if config.span else None, "ptr": ("records", index)}
        said = f"no target-page-bits subsection, so the destination assumes its minimum, {received}; the stream has"
    if received != local:
        yield report(rule, "refused", f"{said} target page bits {received}; the destination ({ctx.dest.arch or '?'}, "
                     f"{ctx.dest.machine}) has {local}",
                     [f"Received TARGET_PAGE_BITS is {received} but local is {local}"], record=index,
                     path="configuration/target-page-bits", **where)


def rule_architecture(ctx: Context, rule: Rule) -> Iterator[Finding]:
    """QEMU has no architecture check of its own (the machine type or the page bits refuse such a
    stream); vmig says where the stream comes from when it is not the destination's target."""
    from ..catalog import guess_arch

    if ctx.dest.arch is None:
        return
    arch, why = guess_arch(ctx.stream)
    found = configuration_record(ctx.stream)
    if arch is not None and arch != ctx.dest.arch:
        index = found[0] if found else None
        yield report(rule, "note", f"the stream comes from an {arch} VM ({why}); the destination is "
                     f"{ctx.dest.arch}", (), record=index, ptr=("records", index) if index is not None else (),
                     path="configuration")


def rule_capability_unknown(ctx: Context, rule: Rule) -> Iterator[Finding]:
    found = _subsection(ctx, "configuration/capabilities")
    known = ctx.dest.known_capabilities
    if found is None or known is None:
        return
    index, j, sub = found
    for cap in stream_capabilities(ctx.stream.configuration):
        if cap not in known:
            yield report(rule, "refused", f"capability {printable(cap)} does not exist in QEMU {ctx.dest.qemu}",
                         [f"Received unknown capability {printable(cap)}",
                          "Failed to load configuration/capabilities:capabilities"], record=index,
                         offset=sub.span.offset if sub.span else None, ptr=("records", index, "subsections", j),
                         path=f"configuration/capabilities/{printable(cap)}")
            return  # get_capability fails the configuration load at the first one


def rule_capability_mismatch(ctx: Context, rule: Rule) -> Iterator[Finding]:
    found = configuration_record(ctx.stream)
    validated = ctx.dest.validated
    if found is None or validated is None:
        return
    index, config = found
    received = set(stream_capabilities(config))
    if ctx.dest.known_capabilities is not None and received - set(ctx.dest.known_capabilities):
        return  # the unknown-capability rule fails first
    sub_index = next((j for j, s in enumerate(config.subsections) if s.name == "configuration/capabilities"), None)
    offset = config.subsections[sub_index].span.offset if sub_index is not None and \
        config.subsections[sub_index].span else (config.span.offset if config.span else None)
    for cap in validated:  # QAPI enum order, every mismatch reported
        src, dst = cap in received, cap in ctx.dest.capabilities
        if src != dst:
            yield report(rule, "refused", f"capability {cap} is {'on' if src else 'off'} in the stream, "
                         f"{'on' if dst else 'off'} at the destination",
                         [(f"Capability {cap} is {'on' if dst else 'off'}, but received capability is "
                          f"{'on' if src else 'off'}")], record=index, offset=offset,
                         ptr=("records", index) + (("subsections", sub_index) if sub_index is not None else ()),
                         path=f"configuration/capabilities/{cap}", continues=True)


def rule_uuid(ctx: Context, rule: Rule) -> Iterator[Finding]:
    found = _subsection(ctx, "configuration/uuid")
    if found is None:
        return
    index, j, sub = found
    value = sub.fields[0].value if sub.fields else b""
    text = value.hex() if isinstance(value, bytes) else str(value)
    yield report(rule, "note", f"the stream carries the source's UUID ({text}); QEMU refuses the load unless "
                 "the destination was started with the same -uuid (vmig does not know it)",
                 ["UUID received is <stream uuid> and local is <destination uuid> (only if they differ)"],
                 record=index, offset=sub.span.offset if sub.span else None,
                 ptr=("records", index, "subsections", j), path="configuration/uuid")
