"""`vmig profile -- QEMU ARGS...`: describe a real destination by running it.

QEMU has no command that lists the savevm entries it would accept, so vmig asks the
destination three ways, each with the user's own arguments (and ``-display none`` when
they choose no display: QEMU's default window cannot open on a server, and QEMU then exits):

1. as an incoming destination (``-incoming defer -S`` and a private QMP socket): its
   version, target architecture, machine (QOM type of ``/machine``), migration
   capabilities, RAM blocks with used and maximum sizes (HMP ``info ramblock``, which
   both 7.2 and 10.0 have), the devices given with ``-device`` (QOM
   ``/machine/peripheral*``), and the machine's compat properties when QEMU reports them
   (``query-machines`` with ``compat-props``, QEMU 9.1 and later);
2. paused (``-S``), saving its own state with ``migrate exec:cat > FILE``: the sections
   it writes are its savevm entries (same idstr, instance and version it accepts), the
   RAM block list is what it migrates, the configuration says its TARGET_PAGE_BITS,
   and an arm CPU's cpreg index list is the register list it accepts;
3. ``-dump-vmstate FILE``: the vmstate schema (versions, minimum versions and
   subsections of every device class).

The result is one JSON document (format `PROFILE_FORMAT`, JSON Schema in
vfio_ramfb_mig/schemas/profile.schema.json) with a sha256 digest over its content,
so a truncated, edited or foreign file is refused by `read_profile` with one line.
Every QEMU started is killed on every path (qemurun).

Imports: errors, model, codec.decode, vmstate.dump, qemurun.
References: migration/savevm.c (qemu_savevm_state_setup, qemu_savevm_state_complete_precopy_non_iterable:
    a section is written for every savevm entry except vmsds whose .needed says no),
    migration/ram.c (ram_save_setup: the block list), system/physmem.c (info ramblock: used_length,
    max_length), target/arm/machine.c (cpreg_vmstate_indexes), hw/core/machine-qmp-cmds.c (query-machines).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..version import __version__
from ..errors import InputError, QemuError
from ..model import Configuration, MigrationStream, RamBody, RamMemSize, Section, VmstateBody
from ..qemurun import QemuRun, killed_on_signals, run_once

PROFILE_FORMAT = "vmig-profile/1"
DEFAULT_TIMEOUT = 60.0
#: a -dump-vmstate larger than this is not one (QEMU 10.0's is about 2 MiB)
MAX_DUMP = 64 << 20
#: a profile larger than this is not one vmig wrote
MAX_PROFILE = 128 << 20
#: QEMU options vmig sets itself (value-taking ones first); the user's are dropped
_OWN_WITH_VALUE = ("incoming", "dump-vmstate", "qmp", "qmp-pretty")
_OWN_FLAGS = ("S",)
_REFUSED = ("daemonize",)
#: options that choose how QEMU shows the guest; without any, QEMU opens its default window (GTK
#: or SDL) and exits when there is no desktop ("gtk initialization failed"): vmig adds -display none
_DISPLAY_OPTIONS = ("display", "nographic", "vnc", "spice", "curses", "sdl")
_RAMBLOCK_LINE = re.compile(
    r"^\s*(?P<name>\S+)\s+(?P<psize>\d+)\s+(?P<unit>[KMGT]?i?B)\s+0x(?P<offset>[0-9a-fA-F]+)"
    r"\s+0x(?P<used>[0-9a-fA-F]+)\s+0x(?P<max>[0-9a-fA-F]+)")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
#: query-machines reports compat-props from this QEMU on
COMPAT_PROPS_SINCE = (9, 1)


# ================================================================ running the destination


def split_command(command: Sequence[str]) -> tuple[list[str], list[str]]:
    """The user's QEMU command without the options vmig sets itself; and what was dropped.

    Raises:
        InputError: no command, or an option vmig cannot profile with (``-daemonize``).
    """
    if not command:
        raise InputError("give the destination's QEMU command after --, e.g. "
                         "vmig profile -o dest.json -- qemu-system-aarch64 -M virt-8.2 ...")
    kept, dropped = [command[0]], []
    args = list(command[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.lstrip("-") if arg.startswith("-") else None
        if name is not None and "=" in name and arg.startswith("--"):
            name = name.split("=", 1)[0]
        if name in _REFUSED:
            raise InputError(f"{arg}: vmig cannot profile a QEMU that detaches; leave it out")
        if name in _OWN_WITH_VALUE:
            takes_next = "=" not in arg
            dropped += args[i:i + 2] if takes_next else [arg]
            i += 2 if takes_next else 1
            continue
        if name in _OWN_FLAGS:
            dropped.append(arg)
            i += 1
            continue
        kept.append(arg)
        i += 1
    return kept, dropped


def without_window(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`argv` made to open no window, and what that added: ``-display none`` unless the command
    chooses a display itself. What QEMU shows the guest on is no part of its migration state."""
    for arg in argv[1:]:
        name = arg.lstrip("-").split("=", 1)[0] if arg.startswith("-") else None
        if name in _DISPLAY_OPTIONS:
            return list(argv), []
    return [*argv, "-display", "none"], ["-display", "none"]


def _size(number: str, unit: str) -> int:
    return int(number) * _UNITS.get(unit, 1)


def parse_info_ramblock(text: str) -> list[dict[str, Any]]:
    """HMP ``info ramblock`` -> [{name, page_size, used, max}] (the table is the same in 7.2 and 10.0)."""
    blocks = []
    for line in text.splitlines():
        m = _RAMBLOCK_LINE.match(line)
        if m:
            blocks.append({"name": m["name"], "page_size": _size(m["psize"], m["unit"]),
                           "used": int(m["used"], 16), "max": int(m["max"], 16)})
    return blocks


def _version(greeting: Mapping[str, Any]) -> tuple[str, str]:
    ver = greeting.get("version", {})
    q = ver.get("qemu", {}) if isinstance(ver, Mapping) else {}
    try:
        text = f"{int(q['major'])}.{int(q['minor'])}.{int(q['micro'])}"
    except (KeyError, TypeError, ValueError):
        raise QemuError("the QMP greeting carries no QEMU version") from None
    return text, str(ver.get("package", "")).strip()


def _query_destination(argv: list[str], timeout: float) -> dict[str, Any]:
    """Phase 1: the destination as it waits for an incoming migration."""
    with QemuRun([*argv, "-incoming", "defer", "-S"], timeout=timeout, what="QEMU (as destination)") as run:
        greeting = run.connect()
        version, package = _version(greeting)
        vtuple = tuple(int(p) for p in version.split("."))
        target = run.cmd("query-target")
        qom_type = run.cmd("qom-get", {"path": "/machine", "property": "type"})
        machine = qom_type.removesuffix("-machine") if isinstance(qom_type, str) else None
        args = {"compat-props": True} if vtuple[:2] >= COMPAT_PROPS_SINCE else None
        machines = run.cmd("query-machines", args) or []
        info = next((m for m in machines if isinstance(m, Mapping) and m.get("name") == machine), {})
        caps = run.cmd("query-migrate-capabilities") or []
        blocks = parse_info_ramblock(run.hmp("info ramblock"))
        devices = []
        for parent in ("/machine/peripheral", "/machine/peripheral-anon"):
            ok, children = run.try_cmd("qom-list", {"path": parent})
            for child in children if ok and isinstance(children, list) else []:
                kind = str(child.get("type", ""))
                if kind.startswith("child<"):
                    devices.append({"path": f"{parent}/{child.get('name')}", "type": kind[6:-1]})
        observed = None if "compat-props" in info else _observed_compat(run, version, machine, devices)
        run.quit()
    compat: dict[str, Any]
    if "compat-props" in info:
        compat = {"source": "query-machines", "props": [
            {"driver": p.get("qom-type"), "property": p.get("property"), "value": p.get("value")}
            for p in info["compat-props"] if isinstance(p, Mapping)]}
    elif observed is not None:
        compat = {"source": "qom-get", "props": observed,
                  "note": f"QEMU {version} does not report compat properties (query-machines has them from "
                          f"{COMPAT_PROPS_SINCE[0]}.{COMPAT_PROPS_SINCE[1]} on): these are the values its devices "
                          f"have for the properties QEMU {version}'s source sets on {machine} (vmig's table from "
                          "the source, read back with qom-get)"}
    else:
        compat = {"source": None, "props": [],
                  "note": f"QEMU {version} does not report compat properties (query-machines has them from "
                          f"{COMPAT_PROPS_SINCE[0]}.{COMPAT_PROPS_SINCE[1]} on) and vmig has no source table "
                          f"for {machine}"}
    return {
        "qemu": {"version": version, "package": package, "arch": str(target.get("arch", ""))},
        "machine": {"name": machine, "qom_type": qom_type, "alias": info.get("alias"),
                    "default_ram_id": info.get("default-ram-id"), "deprecated": bool(info.get("deprecated", False)),
                    "default_cpu_type": info.get("default-cpu-type")},
        "capabilities": {"known": [str(c.get("capability")) for c in caps],
                         "set": [str(c.get("capability")) for c in caps if c.get("state")]},
        "ram_blocks": blocks,
        "devices": devices,
        "compat_props": compat,
    }


def _observed_compat(run: QemuRun, version: str, machine: str | None,
                     devices: list[dict[str, str]]) -> list[dict[str, Any]] | None:
    """For QEMUs that do not report compat properties: the machine's entries from vmig's table of
    that QEMU's source (compat.catalog.source_tree), read back from each -device they reach
    (the device's type or a parent type is the entry's driver) with qom-get."""
    from .catalog import source_tree
    from ..errors import CompatError

    try:
        tree = source_tree(version)
    except CompatError:
        return None
    row = tree["machines"].get(machine or "")
    if row is None:
        return None
    ok, types = run.try_cmd("qom-list-types", {"abstract": True})
    parents = {t.get("name"): t.get("parent") for t in types} if ok and isinstance(types, list) else {}
    found = []
    objects = list(devices)
    for dev in devices:  # and the objects a device makes of its own (a virtio proxy's virtio-backend)
        ok, children = run.try_cmd("qom-list", {"path": dev["path"]})
        for child in children if ok and isinstance(children, list) else []:
            kind = str(child.get("type", ""))
            if kind.startswith("child<"):
                objects.append({"path": f"{dev['path']}/{child.get('name')}", "type": kind[6:-1]})
    for dev in objects:
        ancestry, kind = [], dev["type"]
        while kind and kind not in ancestry and len(ancestry) < 64:
            ancestry.append(kind)
            kind = parents.get(kind)
        for array in row["arrays"]:
            for driver, prop, value, _ in tree["arrays"][array]["entries"]:
                if driver not in ancestry:
                    continue
                ok, got = run.try_cmd("qom-get", {"path": dev["path"], "property": prop})
                found.append({"driver": driver, "property": prop, "value": _qom_text(got) if ok else None,
                              "compat_value": value, "array": array, "path": dev["path"]})
    return found


def _qom_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def save_own_state(argv: list[str], timeout: float, out: Path) -> None:
    """Phase 2: the destination, paused, migrates its own state into `out`."""
    with QemuRun([*argv, "-S"], timeout=timeout, what="QEMU (saving its own state)") as run:
        run.connect()
        run.cmd("migrate-set-parameters", {"max-bandwidth": 8 << 30})
        run.cmd("migrate", {"uri": f"exec:cat > {shlex.quote(str(out))}"})
        while True:
            status = run.cmd("query-migrate") or {}
            state = status.get("status")
            if state == "completed":
                break
            if state in ("failed", "cancelled"):
                raise QemuError(f"QEMU could not save its own state ({status.get('error-desc', state)}); "
                                   "vmig learns a destination's sections by letting it save itself")
            if run.left() <= 0:
                raise QemuError(f"QEMU did not finish saving its own state within {timeout:g} s")
            time.sleep(0.05)
        run.quit()
        run.wait_group_gone()


def _dump_vmstate(argv: list[str], timeout: float, out: Path) -> dict[str, Any]:
    """Phase 3: ``-dump-vmstate``."""
    _, _, err = run_once([*argv, "-dump-vmstate", str(out)], timeout=timeout, what="QEMU -dump-vmstate", check=True)
    if not out.exists():
        raise QemuError("QEMU -dump-vmstate wrote no file", stderr=err, returncode=0)
    raw = out.read_bytes()
    if len(raw) > MAX_DUMP:
        raise QemuError(f"QEMU -dump-vmstate wrote {len(raw)} bytes; vmig reads at most {MAX_DUMP}")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise QemuError(f"QEMU -dump-vmstate wrote no JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise QemuError("QEMU -dump-vmstate wrote JSON that is not an object")
    return doc


def profile_destination(command: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Run the destination QEMU `command` and return its profile document (see the module doc).

    Raises:
        InputError: the command cannot be profiled.
        QemuError: QEMU exited early, hung (`timeout` seconds per run) or refused.
        Interrupted: SIGTERM/SIGHUP arrived; every QEMU started has been killed.
    """
    import tempfile

    from ..codec.decode import decode

    argv, dropped = split_command(command)
    argv, display = without_window(argv)
    with killed_on_signals(), tempfile.TemporaryDirectory(prefix="vmig-profile-") as tmp:
        facts = _query_destination(argv, timeout)
        stream_path = Path(tmp) / "own-state.bin"
        save_own_state(argv, timeout, stream_path)
        try:
            stream = decode(str(stream_path), ram_runs=False)
        except Exception as exc:  # a VmigError: vmig cannot read what this QEMU wrote
            raise QemuError(f"vmig cannot decode the state this QEMU saved: {exc}") from exc
        finally:
            stream_path.unlink(missing_ok=True)
        schema = _dump_vmstate(argv, timeout, Path(tmp) / "vmstate.json")
    own = stream_facts(stream)
    migrated = {b["name"]: b for b in own.pop("ram")}
    blocks = []
    for block in facts.pop("ram_blocks"):
        sent = migrated.pop(block["name"], None)
        blocks.append({**block, "migrated": sent is not None})
    for name, sent in migrated.items():  # in the stream but not in `info ramblock`: keep what the stream says
        blocks.append({"name": name, "page_size": None, "used": sent["used"], "max": None, "migrated": True})
    doc: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "vmig": __version__,
        "command": list(command),
        "dropped": dropped,
        "added": {"query": [*display, "-incoming", "defer", "-S", "-qmp", "unix:…"],
                  "save": [*display, "-S", "-qmp", "unix:…"], "schema": [*display, "-dump-vmstate", "…"]},
        **facts,
        "ram_blocks": blocks,
        **own,
        "schema": schema,
    }
    doc["machine"]["name"] = doc["machine"]["name"] or own["configuration_machine"]
    doc["digest"] = digest(doc)
    return doc


def stream_facts(stream: MigrationStream) -> dict[str, Any]:
    """What a destination's own saved state says about it (see the module doc, phase 2)."""
    config = next((r for r in stream.records if isinstance(r, Configuration)), None)
    page_bits = None
    caps: list[str] = []
    if config is not None:
        for sub in config.subsections:
            if sub.name == "configuration/target-page-bits" and sub.fields:
                page_bits = int(sub.fields[0].value)
            if sub.name == "configuration/capabilities":
                caps = [str(c) for f in sub.fields if f.name == "capabilities" for c in f.value]
    sections: list[dict[str, Any]] = []
    cpus: list[dict[str, Any]] = []
    ram: list[dict[str, Any]] = []
    for s in stream.sections:
        if isinstance(s.body, RamBody):
            for item in s.body.items:
                if isinstance(item, RamMemSize):
                    ram += [{"name": b.idstr, "used": b.used_length} for b in item.blocks]
        if not s.long_header:
            continue
        entry: dict[str, Any] = {"idstr": s.idstr, "instance_id": s.instance_id, "version_id": s.version_id,
                                 "vmsd": _vmsd_name(s), "subsections": sorted(_subsection_names(s))}
        sections.append(entry)
        indexes = _field(s, "cpreg_vmstate_indexes")
        if isinstance(indexes, list):
            cpus.append({"idstr": s.idstr, "instance_id": s.instance_id, "cpreg_indexes": indexes})
    return {
        "configuration_machine": config.machine if config else None,
        "target_page_bits": page_bits,
        "stream_capabilities": caps,
        "section_footers": next((s.footer for s in stream.sections), True),
        "vmdesc": stream.vmdesc is not None,
        "sections": sections,
        "cpus": cpus,
        "ram": ram,
    }


def _vmsd_name(section: Section) -> str:
    if isinstance(section.body, VmstateBody):
        return section.body.vmsd_name
    return section.idstr.rsplit("/", 1)[-1]


def _subsection_names(section: Section) -> set[str]:
    from ..model import StructValue, Subsection, walk_fields

    names: set[str] = set()
    body = section.body
    if not isinstance(body, VmstateBody):
        return names

    def visit(subs: Sequence[Subsection]) -> None:
        for sub in subs:
            names.add(sub.name)
            visit(sub.subsections)

    visit(body.subsections)
    for f in walk_fields(body.fields, body.subsections):
        for v in f.value if isinstance(f.value, list) else [f.value]:
            if isinstance(v, StructValue):
                visit(v.subsections)
    return names


def _field(section: Section, name: str) -> Any:
    if isinstance(section.body, VmstateBody):
        for f in section.body.fields:
            if f.name == name:
                return f.value
    return None


# ================================================================ reading a profile back


def digest(doc: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of everything but the digest itself."""
    body = {k: v for k, v in doc.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Profile:
    """A destination profile as `read_profile` checked it; `doc` is the document."""

    doc: Mapping[str, Any]
    origin: str

    @property
    def qemu_version(self) -> str:
        return str(self.doc["qemu"]["version"])

    @property
    def arch(self) -> str:
        return str(self.doc["qemu"]["arch"])

    @property
    def machine(self) -> str:
        return str(self.doc["machine"]["name"])

    def describe(self) -> str:
        return f"QEMU {self.qemu_version} {self.arch}, {self.machine} (profile {self.origin})"


def _need(doc: Any, path: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc
    for part in path.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            raise InputError(f"{where} is not a vmig profile: /{path} is missing")
        value = value[part]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(f"{where} is not a vmig profile: /{path} has the wrong type")
    return value


def read_profile(path: str | Path) -> Profile:
    """Read and check a profile `vmig profile` wrote.

    Raises:
        InputError: unreadable, not JSON, not a vmig profile, another format version, or its
            content does not match its digest (truncated or edited by hand).
    """
    where = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROFILE + 1)
    except OSError as exc:
        raise InputError(f"cannot read {where}: {exc.strerror}") from exc
    if len(raw) > MAX_PROFILE:
        raise InputError(f"{where} is larger than {MAX_PROFILE} bytes: not a vmig profile")
    try:
        doc = json.loads(raw)
    except UnicodeDecodeError:
        raise InputError(f"{where} is not a vmig profile: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{where} is not a vmig profile: not JSON ({exc}); truncated?") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where} is not a vmig profile: the JSON is not an object")
    fmt = doc.get("format")
    if fmt != PROFILE_FORMAT:
        if isinstance(fmt, str) and fmt.startswith("vmig-profile/"):
            raise InputError(f"{where} is a {fmt} profile; this vmig reads {PROFILE_FORMAT}",
                             hint="profile the destination again with this vmig")
        raise InputError(f"{where} is not a vmig profile (no \"format\": \"{PROFILE_FORMAT}\"); "
                         "make one with vmig profile -o FILE -- QEMU ARGS...")
    stored = doc.get("digest")
    if not isinstance(stored, str) or stored != digest(doc):
        raise InputError(f"{where}: the profile's content does not match its digest (edited or damaged); "
                         "profile the destination again")
    _need(doc, "qemu/version", str, where)
    _need(doc, "qemu/arch", str, where)
    _need(doc, "machine/name", str, where)
    for key in ("sections", "ram_blocks", "cpus"):
        _need(doc, key, list, where)
    _need(doc, "schema", dict, where)
    _need(doc, "capabilities/known", list, where)
    return Profile(doc, where)
