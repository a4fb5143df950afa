"""libvirt save images (`virsh save`, `virsh managedsave`): the header, the domain XML, the payload.

`read_save_header` reads the header and the data region (XML, cookie, padding) forward from a
reader and leaves it at the payload; `LibvirtSave` keeps every byte of them, so `build` writes
the same prefix again (encode --from-json), and `summary` says what the domain is (vmig info).

Imports: errors, source.limits, source.reader, wire.libvirt (construct); xml.etree for the XML.
References: libvirt src/qemu/qemu_saveimage.[ch] (see wire/libvirt.py).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from construct import ConstructError

from ..errors import ContainerError, InputError
from ..wire import libvirt as wire
from .limits import Limits
from .reader import Reader, read_exactly


@dataclass(frozen=True)
class LibvirtSave:
    magic: bytes
    byte_order: str  # "little" or "big": the host that wrote it
    version: int
    data_len: int
    was_running: int
    compressed: int
    cookie_offset: int
    xml: str
    cookie: str | None
    unused: tuple[int, ...] = (0,) * 14
    #: the data region after the XML and cookie when it is not all zeros (libvirt writes zeros)
    padding: bytes | None = field(default=None, repr=False)
    #: NUL-terminated strings libvirt writes; False when the XML fills data_len without its NUL
    terminated: bool = True

    @property
    def complete(self) -> bool:
        return self.magic == wire.MAGIC

    @property
    def compression(self) -> str:
        if self.version < 2:  # version 1 images predate compression: the field means nothing
            return "raw"
        return wire.COMPRESSION.get(self.compressed, f"unknown ({self.compressed})")

    @property
    def payload_offset(self) -> int:
        return wire.HEADER_SIZE + self.data_len

    def summary(self) -> dict[str, Any]:
        """What `vmig info` says about the domain: name, machine type, devices in short."""
        return domain_summary(self.xml)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "libvirt-save", "magic": self.magic.decode("latin-1"), "byte_order": self.byte_order,
            "version": self.version, "data_len": self.data_len, "was_running": self.was_running,
            "compressed": self.compressed, "compression": self.compression, "cookie_offset": self.cookie_offset,
            "payload_offset": self.payload_offset, "xml": self.xml, "cookie": self.cookie,
        }
        if any(self.unused):
            doc["unused"] = list(self.unused)
        if self.padding is not None:
            doc["padding"] = base64.b64encode(self.padding).decode()
        if not self.terminated:
            doc["terminated"] = False
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LibvirtSave:
        """The `container` object of a decode --json document; every field is checked."""
        def need(key: str, kinds: type | tuple[type, ...]) -> Any:
            value = doc.get(key)
            if not isinstance(value, kinds) or isinstance(value, bool) and kinds is int:
                raise InputError(f"container.{key}: expected {getattr(kinds, '__name__', kinds)}, found {value!r}")
            return value

        def u32(key: str) -> int:
            value = need(key, int)
            if not 0 <= value < 1 << 32:
                raise InputError(f"container.{key}: {value} does not fit in 32 bits")
            return value

        magic = need("magic", str).encode("latin-1")
        if magic not in (wire.MAGIC, wire.PARTIAL_MAGIC):
            raise InputError(f"container.magic: expected {wire.MAGIC.decode()!r} or {wire.PARTIAL_MAGIC.decode()!r}")
        byte_order = need("byte_order", str)
        if byte_order not in ("little", "big"):
            raise InputError("container.byte_order: expected 'little' or 'big'")
        compression = doc.get("compression")
        compressed = u32("compressed") if "compressed" in doc else wire.COMPRESSION_NUMBER.get(compression, -1)
        if compression is not None and wire.COMPRESSION_NUMBER.get(compression) not in (None, compressed):
            raise InputError(f"container.compression {compression!r} disagrees with container.compressed {compressed}")
        unused = doc.get("unused", [0] * 14)
        if not (isinstance(unused, list) and len(unused) == 14 and all(isinstance(u, int) and 0 <= u < 1 << 32
                                                                       for u in unused)):
            raise InputError("container.unused: expected 14 unsigned 32-bit numbers")
        padding = doc.get("padding")
        try:
            pad = base64.b64decode(padding, validate=True) if padding is not None else None
        except (ValueError, TypeError) as exc:
            raise InputError("container.padding: expected base64") from exc
        cookie = doc.get("cookie")
        if cookie is not None and not isinstance(cookie, str):
            raise InputError("container.cookie: expected a string or null")
        return cls(magic=magic, byte_order=byte_order, version=u32("version"), data_len=u32("data_len"),
                   was_running=u32("was_running"), compressed=compressed, cookie_offset=u32("cookie_offset"),
                   xml=need("xml", str), cookie=cookie, unused=tuple(unused), padding=pad,
                   terminated=doc.get("terminated", True) is not False)

    def build(self) -> bytes:
        """The header and data region, byte for byte as read (or as libvirt lays them out)."""
        xml = self.xml.encode() + (b"\0" if self.terminated else b"")
        cookie = (self.cookie.encode() + b"\0") if self.cookie is not None else b""
        used = len(xml) + len(cookie)
        data_len, cookie_offset = self.data_len, self.cookie_offset
        if self.cookie is not None and cookie_offset != len(xml):
            cookie_offset = len(xml)
        if used > data_len:  # the XML grew: lay it out as libvirt would for a new image
            data_len = used + wire.XML_ROOM
        padding = self.padding if self.padding is not None and len(self.padding) == data_len - used \
            else b"\0" * (data_len - used)
        schema = wire.SaveHeaderLE if self.byte_order == "little" else wire.SaveHeaderBE
        header = schema.build(dict(magic=self.magic, version=self.version, data_len=data_len,
                                   was_running=self.was_running, compressed=self.compressed,
                                   cookie_offset=cookie_offset, unused=list(self.unused)))
        return header + xml + cookie + padding


def read_save_header(reader: Reader, limits: Limits, name: str, total: int | None = None) -> LibvirtSave:
    """Read the header and data region; the reader is left at the payload. `total` is the file's
    size when known (an XML length past it is refused before anything is read)."""
    raw = reader.read(wire.HEADER_SIZE)
    if len(raw) < wire.HEADER_SIZE:
        raise ContainerError(f"{name}: the input ends inside the libvirt save header: expected {wire.HEADER_SIZE} "
                             f"bytes, found {len(raw)}", offset=len(raw), path=("container", "header"))
    header, byte_order = _parse(raw)
    if header.version > wire.SAVE_VERSION or header.version == 0:
        raise ContainerError(f"{name}: unsupported libvirt save header version {header.version}; expected 1 or "
                             f"{wire.SAVE_VERSION} (in either byte order)", offset=16,
                             path=("container", "header", "version"))
    if header.data_len == 0:
        raise ContainerError(f"{name}: libvirt save header has an XML length of 0; expected the domain XML",
                             offset=20, path=("container", "header", "data_len"))
    compression = wire.COMPRESSION.get(header.compressed) if header.version >= 2 else "raw"
    if compression is None:
        raise ContainerError(f"{name}: unknown libvirt save compression number {header.compressed}; expected "
                             + ", ".join(f"{n} ({c})" for n, c in wire.COMPRESSION.items()),
                             offset=28, path=("container", "header", "compressed"))
    if header.cookie_offset > header.data_len:
        raise ContainerError(f"{name}: libvirt cookie offset {header.cookie_offset} lies past the XML data "
                             f"({header.data_len} bytes)", offset=32, path=("container", "header", "cookie_offset"))
    past_end = f"{name}: the libvirt header's XML length {header.data_len} runs past the end of the file ({{}} bytes " \
        "follow the header)"
    if total is not None and wire.HEADER_SIZE + header.data_len > total:
        raise ContainerError(past_end.format(total - wire.HEADER_SIZE), offset=20,
                             path=("container", "header", "data_len"))
    try:
        data = read_exactly(reader, header.data_len, "the libvirt domain XML", limits)
    except ContainerError as exc:
        raise ContainerError(past_end.format(reader.position - wire.HEADER_SIZE), offset=20,
                             path=("container", "header", "data_len")) from exc
    xml_len = header.cookie_offset or header.data_len
    xml_bytes, terminated = _string(data[:xml_len])
    cookie = None
    used = len(xml_bytes) + terminated
    if header.cookie_offset:
        cookie_bytes, cookie_terminated = _string(data[xml_len:])
        if not terminated or not cookie_terminated:
            raise ContainerError(f"{name}: the libvirt cookie is not NUL-terminated within the XML data",
                                 offset=wire.HEADER_SIZE + xml_len, path=("container", "cookie"))
        cookie = _text(cookie_bytes, name, wire.HEADER_SIZE + xml_len)
        used = xml_len + len(cookie_bytes) + 1
        if xml_len != len(xml_bytes) + 1:
            raise ContainerError(f"{name}: the libvirt cookie offset {xml_len} is not right after the XML "
                                 f"({len(xml_bytes) + 1} bytes with its NUL)", offset=32,
                                 path=("container", "header", "cookie_offset"))
    padding = data[used:]
    return LibvirtSave(magic=header.magic, byte_order=byte_order, version=header.version, data_len=header.data_len,
                       was_running=header.was_running, compressed=header.compressed,
                       cookie_offset=header.cookie_offset, xml=_text(xml_bytes, name, wire.HEADER_SIZE),
                       cookie=cookie, unused=tuple(header.unused),
                       padding=None if not padding.strip(b"\0") else padding, terminated=bool(terminated))


def _parse(raw: bytes) -> tuple[Any, str]:
    try:
        header = wire.SaveHeaderLE.parse(raw)
        if header.version > wire.SAVE_VERSION:  # written by a host of the other byte order
            swapped = wire.SaveHeaderBE.parse(raw)
            if swapped.version <= wire.SAVE_VERSION:
                return swapped, "big"
        return header, "little"
    except ConstructError as exc:  # cannot happen for 92 bytes; kept for the one parse point rule
        raise ContainerError(f"bad libvirt save header: {exc}", offset=0, path=("container", "header")) from exc


def _string(data: bytes) -> tuple[bytes, int]:
    end = data.find(b"\0")
    return (data, 0) if end < 0 else (data[:end], 1)


def _text(data: bytes, name: str, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContainerError(f"{name}: the libvirt domain XML is not UTF-8", offset=offset + exc.start,
                             path=("container", "xml")) from exc


def domain_summary(xml: str) -> dict[str, Any]:
    """Name, type, machine, memory, vCPUs and a short device list from a domain XML."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        return {"error": f"the domain XML does not parse: {exc}"}
    os_type = root.find("os/type")
    memory = root.find("memory")
    devices: list[str] = []
    for dev in list(root.find("devices") or []):
        devices.append(_device_words(dev))
    return {
        "name": root.findtext("name"),
        "uuid": root.findtext("uuid"),
        "domain_type": root.get("type"),
        "arch": os_type.get("arch") if os_type is not None else None,
        "machine": os_type.get("machine") if os_type is not None else None,
        "memory_kib": _kib(memory) if memory is not None else None,
        "vcpus": _int(root.findtext("vcpu")),
        "devices": devices,
    }


def _device_words(dev: ElementTree.Element) -> str:
    tag = dev.tag
    if tag == "emulator":
        return f"emulator {dev.text}"
    model = dev.find("model")
    kind = dev.get("type") or (model.get("type") if model is not None else None)
    words = [tag]
    if tag == "video" and model is not None:
        words.append(model.get("type") or "?")
    elif tag == "controller":
        words.append(" ".join(w for w in (dev.get("type"), dev.get("model")) if w))
    elif tag == "disk":
        target = dev.find("target")
        words.append(" ".join(w for w in (dev.get("device"), target.get("dev") if target is not None else None) if w))
    elif tag == "hostdev":
        address = dev.find("source/address")
        if address is not None:
            words.append("{}:{}:{}.{}".format(*(address.get(k, "?").removeprefix("0x")
                                                for k in ("domain", "bus", "slot", "function"))))
    elif kind:
        words.append(kind)
    return " ".join(w for w in words if w)


def _kib(el: ElementTree.Element) -> int | None:
    value = _int(el.text)
    if value is None:
        return None
    unit = (el.get("unit") or "KiB").lower()
    factor = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024, "m": 1024, "mib": 1024,
              "mb": 1000 ** 2 / 1024, "g": 1 << 20, "gib": 1 << 20, "gb": 1000 ** 3 / 1024, "t": 1 << 30,
              "tib": 1 << 30}.get(unit, 1)
    return int(value * factor)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
