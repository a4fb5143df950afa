"""Where a stream's ramfb config is, and whether QEMU would show a screen from it.

A stream carries the ramfb config (guest address, DRM fourcc, width, height,
stride) in one of two places, and the decoder reads both as the leaf type
"ramfb cfg" (vmstate/builtin.py):

* the standalone display, `-device ramfb`: section `ramfb-dev`, field state -> cfg;
* a VFIO device with `ramfb=on`: its config state's subsection
  `VFIOPCIDevice/VFIODisplay`, field dpy -> ramfb -> cfg.

`find_displays` lists every such config with its device, stream offset and JSON
pointer; `choose_display` picks the one asked for; `RamfbConfig.check` applies
QEMU's own checks (ramfb_create_display_surface) and vmig's bounds, in the order
QEMU applies them, so a config it would refuse is named by field and value.

Imports: errors, model, vmstate.model (the leaf type name), wire.ramfb.
References: hw/display/ramfb.c (RAMFBCfg, ramfb_fw_cfg_write, ramfb_create_display_surface),
hw/display/ramfb-standalone.c, hw/vfio/display.c, ui/console.c
(qemu_create_displaysurface_from: pixman_image_create_bits must succeed, or QEMU aborts).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import FieldPath, RamfbConfigError, ScreenError
from ..model import Field, MigrationStream, Section, StructValue, Subsection, VfioBody, VmstateBody
from ..vmstate.model import RAMFB_CFG_TYPE
from ..wire.ramfb import (
    HEIGHT_RANGE,
    RAMFB_CFG_OFFSETS,
    RAMFB_CFG_SIZE,
    RAMFB_FORMATS,
    WIDTH_RANGE,
    RamfbFormat,
    fourcc_text,
)

#: A framebuffer of more than this many bytes is refused before any guest RAM is read: QEMU's
#: largest (16000 x 12000 at 4 bytes) is 768 MB, and a bigger one only comes from a stride no
#: firmware would set.
MAX_FRAMEBUFFER = 1 << 32
#: offsets of the RAMFBCfg fields in its 28 big-endian bytes (wire/ramfb.py, hw/display/ramfb.c)
CFG_OFFSETS = RAMFB_CFG_OFFSETS


@dataclass(frozen=True, slots=True)
class RamfbConfig:
    """The six RAMFBCfg values, as numbers (the wire's big-endian order already undone)."""

    addr: int
    fourcc: int
    flags: int
    width: int
    height: int
    stride: int

    @classmethod
    def from_value(cls, value: dict[str, int]) -> RamfbConfig:
        return cls(**{key: int(value.get(key, 0)) for key in CFG_OFFSETS})

    @property
    def configured(self) -> bool:
        """False while the config is 28 zero bytes: the firmware has set no mode yet."""
        return any((self.addr, self.fourcc, self.flags, self.width, self.height, self.stride))

    @property
    def fourcc_text(self) -> str:
        return fourcc_text(self.fourcc)

    @property
    def format(self) -> RamfbFormat | None:
        return RAMFB_FORMATS.get(self.fourcc_text)

    @property
    def row_bytes(self) -> int:
        """Bytes of pixels in one row (QEMU's linesize)."""
        fmt = self.format
        return self.width * (fmt.bytes_per_pixel if fmt else 0)

    @property
    def line_stride(self) -> int:
        """Bytes from one row to the next: a stride of 0 means rows are packed (as in QEMU)."""
        return self.stride or self.row_bytes

    @property
    def size(self) -> int:
        """Bytes of guest memory the framebuffer spans: every row but the last at the stride, then
        one row of pixels (QEMU maps exactly this much)."""
        return self.line_stride * (self.height - 1) + self.row_bytes if self.height else 0

    def words(self) -> str:
        if not self.configured:
            return "not configured by the guest (28 zero bytes)"
        fmt = self.format
        name = fmt.drm_name if fmt else "a format ramfb does not accept"
        stride = f"stride {self.stride}" if self.stride else f"stride 0 (packed rows of {self.row_bytes})"
        return f"{self.width}x{self.height} {self.fourcc_text} ({name}) at {self.addr:#x}, {stride}"

    def check(self, display: Display | None = None) -> None:
        """Raise RamfbConfigError, naming the field and its value, for a config QEMU would not
        show or that cannot describe a framebuffer; ScreenError while nothing is configured.

        QEMU's checks (ramfb_create_display_surface): width 16..16000, height 16..12000, a
        fourcc qemu_drm_format_to_pixman knows; a stride of 0 means packed rows. Then what
        QEMU leaves to pixman and the memory map: pixman wants a stride that is a multiple of
        4 (QEMU 10.0 asserts on a surface it cannot make, so it would abort on load); a stride
        shorter than a row makes rows overlap, which no firmware sets and vmig refuses; the
        whole framebuffer must fit in 4 GiB (MAX_FRAMEBUFFER) before guest RAM is looked at.
        """
        if not self.configured:
            where = f" of {display.device}" if display else ""
            raise ScreenError(f"the ramfb config{where} is all zero: the guest firmware has not set a "
                              "display mode yet, so there is no screen", **_at(display, None))
        fmt = self.format
        if fmt is None:
            accepted = ", ".join(f"{f.fourcc} ({f.drm_name})" for f in RAMFB_FORMATS.values())
            raise RamfbConfigError(f"ramfb cfg fourcc {self.fourcc:#010x} ({self.fourcc_text}) is not a format "
                                   f"QEMU's ramfb accepts; expected one of {accepted}", **_at(display, "fourcc"))
        for key, (low, high) in (("width", WIDTH_RANGE), ("height", HEIGHT_RANGE)):
            value = getattr(self, key)
            if not low <= value <= high:
                raise RamfbConfigError(f"ramfb cfg {key} {value} is outside what QEMU shows ({low}..{high})",
                                       **_at(display, key))
        if self.stride and self.stride < self.row_bytes:
            raise RamfbConfigError(f"ramfb cfg stride {self.stride} is shorter than a row of {self.width} "
                                   f"{fmt.fourcc} pixels ({self.row_bytes} bytes)", **_at(display, "stride"))
        if self.line_stride % 4:
            given = f"stride {self.stride}" if self.stride else f"stride 0 (rows of {self.row_bytes} bytes)"
            raise RamfbConfigError(f"ramfb cfg {given} is not a multiple of 4: pixman refuses such a surface "
                                   "and QEMU 10.0 aborts on loading it", **_at(display, "stride"))
        if self.size > MAX_FRAMEBUFFER:
            raise RamfbConfigError(f"ramfb cfg stride {self.stride} x height {self.height} spans {self.size} bytes, "
                                   f"past 4 GiB", **_at(display, "stride"))
        if self.addr + self.size > 1 << 64:
            raise RamfbConfigError(f"ramfb cfg addr {self.addr:#x} + {self.size} bytes wraps past 2^64",
                                   **_at(display, "addr"))


@dataclass(frozen=True, slots=True)
class Display:
    """One ramfb config found in a stream."""

    device: str  # the section's idstr: "ramfb-dev" or "0000:00:02.0/vfio"
    instance_id: int | None
    kind: str  # "ramfb-dev" (the standalone device) | "vfio" (VFIOPCIDevice/VFIODisplay)
    cfg: RamfbConfig
    record: int  # index of the record in the stream
    offset: int | None  # stream offset of the 28 cfg bytes
    path: FieldPath  # JSON Pointer components to the cfg's value in `vmig decode --json`

    @property
    def name(self) -> str:
        return self.device if not self.instance_id else f"{self.device}#{self.instance_id}"

    def field_offset(self, key: str) -> int | None:
        return None if self.offset is None else self.offset + CFG_OFFSETS[key]


def _at(display: Display | None, key: str | None) -> dict[str, Any]:
    """offset= and path= for an error about one cfg field (or the whole cfg)."""
    if display is None:
        return {}
    if key is None:
        return {"offset": display.offset, "path": display.path}
    return {"offset": display.field_offset(key), "path": (*display.path, key)}


def _cfg_fields(fields: Sequence[Field], subsections: Sequence[Subsection], path: FieldPath
                ) -> Iterator[tuple[Field, FieldPath]]:
    """Every ramfb cfg field below these, with the JSON Pointer of its value."""
    for i, f in enumerate(fields):
        here = (*path, "fields", i, "value")
        if f.type == RAMFB_CFG_TYPE and isinstance(f.value, dict):
            yield f, here
        values = list(enumerate(f.value)) if isinstance(f.value, list) else [(None, f.value)]
        for k, value in values:
            if isinstance(value, StructValue):
                inner = here if k is None else (*here, k)
                yield from _cfg_fields(value.fields, value.subsections, inner)
    for j, sub in enumerate(subsections):
        yield from _cfg_fields(sub.fields, sub.subsections, (*path, "subsections", j))


def _section_cfgs(section: Section, path: FieldPath) -> Iterator[tuple[str, Field, FieldPath]]:
    body = section.body
    if isinstance(body, VmstateBody):
        for f, where in _cfg_fields(body.fields, body.subsections, path):
            yield "ramfb-dev" if section.idstr == "ramfb-dev" else "device", f, where
    elif isinstance(body, VfioBody):
        for k, item in enumerate(body.items):
            if item.config is not None:
                config = item.config
                for f, where in _cfg_fields(config.fields, config.subsections, (*path, "vfio", "items", k)):
                    yield "vfio", f, where


def find_displays(stream: MigrationStream) -> list[Display]:
    """Every ramfb config in the stream, one per device (the last one sent wins, as on load)."""
    found: dict[tuple[str, int | None], Display] = {}
    for index, record in enumerate(stream.records):
        if not isinstance(record, Section):
            continue
        for kind, f, where in _section_cfgs(record, ("records", index)):
            key = (record.idstr, record.instance_id)
            found.pop(key, None)
            found[key] = Display(record.idstr, record.instance_id, kind, RamfbConfig.from_value(f.value), index,
                                 f.span.offset if f.span else None, where)
    return list(found.values())


def _machine(stream: MigrationStream) -> str:
    config = stream.configuration
    return f" (machine type {config.machine})" if config is not None and config.machine else ""


def choose_display(stream: MigrationStream, device: str | None = None) -> Display:
    """The display to draw: the one `device` names (idstr, glob or substring), else the only one,
    else the only one the guest configured. ScreenError when there is none or the choice is open."""
    displays = find_displays(stream)
    if not displays:
        raise ScreenError(f"no ramfb state in this stream{_machine(stream)}: QEMU migrates it only from machine "
                          "types 8.2 on (ramfb-dev with x-migrate, vfio-pci with x-ramfb-migrate) and QEMU 7.2 "
                          "not at all", hint="the destination keeps whatever its own firmware sets up")
    if device is not None:
        chosen = [d for d in displays if d.name == device or d.device == device]
        if not chosen:
            chosen = [d for d in displays if fnmatch.fnmatchcase(d.name, device) or device in d.name]
        if not chosen:
            raise ScreenError(f"no display '{device}' in this stream; it has {_names(displays)}")
        if len(chosen) > 1:
            raise ScreenError(f"'{device}' matches {len(chosen)} displays: {_names(chosen)}; give a whole name")
        return chosen[0]
    if len(displays) == 1:
        return displays[0]
    configured = [d for d in displays if d.cfg.configured]
    if len(configured) == 1:
        return configured[0]
    raise ScreenError(f"this stream has {len(displays)} displays: {_names(displays)}",
                      hint="choose one with --device NAME")


def _names(displays: Sequence[Display]) -> str:
    return ", ".join(d.name for d in displays)


__all__ = ["CFG_OFFSETS", "MAX_FRAMEBUFFER", "RAMFB_CFG_SIZE", "Display", "RamfbConfig", "choose_display",
           "find_displays"]
