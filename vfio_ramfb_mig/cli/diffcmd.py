"""`vmig diff A B` and `vmig check STREAM`: differences in words, and the load verdict.

Exit status, as diff(1): `diff` 0 same, 1 different; `diff --compat` 0 when each stream
would load where the other was made, 1 when one would be refused; `check` 0 would load,
1 would be refused; 2 trouble (bad input, unknown destination), from the group's error boundary.

Imports: click at start-up; diff (diff_sources, compat), codec and compat (check), render (rich) when a verb runs.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from .inputs import SNAPSHOT_HELP, open_stream, snapshot_option, snapshots_for
from .main import FILE, QUIET_HELP, complete_machine

if TYPE_CHECKING:
    from .main import App

OK, DIFFERENT = 0, 1


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


@click.command("diff")
@click.argument("a", metavar="A", type=FILE)
@click.argument("b", metavar="B", type=FILE)
@click.option("--brief", is_flag=True, help="one line per section instead of every change")
@click.option("--json", "as_json", is_flag=True, help="print the changes as JSON")
@click.option("--ignore", "ignore", multiple=True, metavar="PATTERN",
              help="ignore changes whose path (or an ancestor of it) matches this fnmatch pattern, e.g. ram, timer, "
                   "'cpu/env.tsc*'; repeatable")
@click.option("--compat", is_flag=True,
              help="also judge both directions: would A load where B was made (B's machine, QEMU, capabilities, "
                   "RAM size and devices), and B where A was made; the exit status then reports compatibility")
@click.option("--qemu", "qemu", metavar="VERSION", help="--compat: the QEMU that made both streams (10.0, 7.2, ...)")
@click.option("--qemu-a", metavar="VERSION", help="--compat: the QEMU that made A (default: its .meta.json sidecar)")
@click.option("--qemu-b", metavar="VERSION", help="--compat: the QEMU that made B (default: its .meta.json sidecar)")
@click.option("--schema-a", metavar="FILE", type=FILE, help="--compat: -dump-vmstate of A's QEMU (for other QEMU versions)")
@click.option("--schema-b", metavar="FILE", type=FILE, help="--compat: -dump-vmstate of B's QEMU (for other QEMU versions)")
@click.option("--device", "devices", multiple=True, metavar="DEV",
              help="--compat: a device both VMs have whose state their streams do not carry; repeatable")
@click.option("--profile-a", metavar="PROFILE",
              help="--compat: where A was made is the destination this `vmig profile` describes (B is judged there)")
@click.option("--profile-b", metavar="PROFILE",
              help="--compat: where B was made is the destination this `vmig profile` describes (A is judged there)")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@click.option("--snapshot", "snapshots", multiple=True, metavar="NAME|ID",
              help=SNAPSHOT_HELP + "; once for both inputs, or twice: A's then B's")
@click.pass_obj
def diff_cmd(app: App, a: str, b: str, brief: bool, as_json: bool, ignore: tuple[str, ...], compat: bool,
             qemu: str | None, qemu_a: str | None, qemu_b: str | None, schema_a: str | None, schema_b: str | None,
             devices: tuple[str, ...], profile_a: str | None, profile_b: str | None, quiet: bool,
             snapshots: tuple[str, ...]) -> None:
    """Show what differs between two migration streams A (old) and B (new).

    Sections are matched by idstr and instance, never by position or id. Shown per
    section: sections only on one side, version changes, subsections on one side,
    field values (path, old → new, offsets in A and B), RAM per block (differing
    pages by final content), and the machine/configuration. A and B may be any input
    `vmig decode` reads: a libvirt save image against the stream inside it is the same.
    """
    from ..diff import diff_json  # start-up: see main's docstring
    from ..diff.compat import Origin, judge_both
    from ..diff.sources import diff_sources
    from .main import refuse_terminal_stdin

    refuse_terminal_stdin(a, b)
    snap_a, snap_b = snapshots_for((a, b), snapshots)
    if a == "-" and b == "-":
        raise click.UsageError("only one of A and B can be '-' (stdin)")
    origins = (Origin.of(a, qemu=qemu_a or qemu, schema=schema_a, profile=profile_a),
               Origin.of(b, qemu=qemu_b or qemu, schema=schema_b, profile=profile_b)) if compat else None
    with open_stream(app, a, snapshot=snap_a, quiet=quiet) as sa, \
            open_stream(app, b, snapshot=snap_b, quiet=quiet) as sb:
        found = diff_sources(sa, sb, ignore=ignore, bar=lambda what, total: app.progress(what, total, quiet=quiet))
    verdicts = judge_both(found.a, found.b, *origins, devices=devices) if origins else None
    if as_json:
        _emit_json(diff_json(found.diff, verdicts))
    else:
        from ..render.diffview import diff_view

        app.out.print(diff_view(found.diff, verdicts, names=(a, b), brief=brief), soft_wrap=False)
    if verdicts is not None:
        sys.exit(OK if all(v.loadable for v in verdicts) else DIFFERENT)
    sys.exit(OK if found.diff.same else DIFFERENT)


@click.command("check")
@click.argument("stream", metavar="STREAM", required=False, type=FILE)
@click.option("--target", "-M", "target", metavar="MACHINE", shell_complete=complete_machine,
              help="the destination machine type, e.g. pc-q35-8.1 (default: the --schema file's, else the stream's)")
@click.option("--qemu", metavar="VERSION", help="the destination QEMU: 10.0 or 7.2 (bundled schemas), or any "
                                                "version together with --schema")
@click.option("--schema", metavar="FILE", type=FILE, help="the destination's `qemu-system-x86_64 -dump-vmstate FILE` (.gz ok)")
@click.option("--device", "devices", multiple=True, metavar="DEV",
              help="a -device the destination has beyond the machine's own (ramfb, e1000e, vfio-pci, ...); repeatable")
@click.option("--cap", "capabilities", multiple=True, metavar="NAME",
              help="a migration capability set at the destination (x-ignore-shared, mapped-ram); repeatable")
@click.option("--memory", "-m", metavar="SIZE",
              help="the destination's -m (e.g. 16M); the main RAM block (pc.ram, mach-virt.ram) must match")
@click.option("--against", "profile", metavar="PROFILE",
              help="judge against exactly the destination a `vmig profile` describes (instead of --target/--qemu)")
@click.option("--arch", metavar="ARCH", help="the destination's target: x86_64 or aarch64 (default: the machine's)")
@click.option("--no-section-footer", "no_footer", is_flag=True,
              help="the destination runs with -global migration.send-section-footer=off")
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON")
@click.option("--brief", is_flag=True, help="one line: the verdict and the first message")
@click.option("--rules", "list_rules", is_flag=True, help="list the rules vmig checks and exit")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@snapshot_option
@click.pass_obj
def check_cmd(app: App, stream: str | None, target: str | None, qemu: str | None, schema: str | None,
              devices: tuple[str, ...], capabilities: tuple[str, ...], memory: str | None, profile: str | None,
              arch: str | None, no_footer: bool, as_json: bool, brief: bool, list_rules: bool, quiet: bool,
              snapshot: str | None) -> None:
    """Would a destination QEMU load STREAM? If not, which rule fails and what QEMU prints.

    The destination is a machine type (--target), a QEMU version (--qemu, or its
    -dump-vmstate with --schema), the devices it has beyond the machine's own
    (--device), its capabilities (--cap) and optionally its RAM size (--memory).
    """
    from ..codec.decode import decode  # start-up: see main's docstring
    from ..compat.check import RULES, check_stream, destination_for, verdict_json
    from ..render.diffview import rules_table, verdict_view

    if list_rules:
        app.out.print(rules_table([(r.rule_id, r.summary, r.source) for r in RULES]), soft_wrap=False)
        return
    if stream is None:
        raise click.UsageError("missing argument STREAM")
    from ..ram.state import IllegalOffsetScan

    if profile is not None:
        given = [name for name, value in (("--target", target), ("--qemu", qemu), ("--schema", schema),
                                          ("--memory", memory), ("--arch", arch)) if value]
        if given:
            raise click.UsageError(f"--against describes the whole destination; it does not take {', '.join(given)}")
    from .main import refuse_terminal_stdin

    refuse_terminal_stdin(stream)
    scan = IllegalOffsetScan()
    with open_stream(app, stream, snapshot=snapshot, quiet=quiet, seek=False) as src, \
            app.progress(f"decode {stream}", src.size if src.complete else None, quiet=quiet) as progress:
        # the rules need no page runs: only the block lengths, to find page records past a block's end
        decoded = decode(src, ram_runs=False, on_ram_item=scan.feed, progress=progress)
    dest = destination_for(decoded, profile=profile, machine=target, qemu=qemu, schema=schema, devices=devices,
                           capabilities=capabilities, memory=memory, section_footers=not no_footer, arch=arch)
    verdict = check_stream(decoded, dest, illegal=scan.found, compressed=scan.compressed)
    if as_json:
        _emit_json(verdict_json(verdict))
    else:
        app.out.print(verdict_view(verdict, brief=brief), soft_wrap=False)
    sys.exit(OK if verdict.loadable else DIFFERENT)
