"""qcow2 images (version 2 and 3) and the VM state of their internal snapshots.

`Qcow2Image.read(buf, size)` reads the header and the snapshot table from a random-access
buffer (the mapped file); `select` picks a snapshot by id or name; `extents` walks that
snapshot's own L1/L2 mapping over its VM state and yields where each piece of the stream lies:
a host range of the file, zeros (unallocated or zero clusters), or a compressed cluster.

Every offset read from the image is checked before it is used: tables and clusters must lie
inside the file, be cluster-aligned where the format says so, and never be the image's own
metadata (header, snapshot table, refcount table, L1 tables, an L2 table already used): an
entry pointing back into the mapping is a loop, refused. The walk reads each L2 table once, so
its time and memory are bounded by the file.

Imports: errors, wire.qcow2 (construct).
References: QEMU docs/interop/qcow2.txt; block/qcow2.h (qcow2_vm_state_offset, size_to_l1,
QCOW_MAX_SNAPSHOTS, QCOW_MAX_SNAPSHOT_EXTRA_DATA), block/qcow2-snapshot.c (qcow2_read_snapshots,
find_snapshot_by_id_and_name), block/snapshot.c (bdrv_snapshot_find: an id or a name).
"""

from __future__ import annotations

import datetime
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from construct import ConstructError

from ..errors import ContainerError
from ..wire import qcow2 as wire

MAX_SNAPSHOTS = 65536
MAX_EXTRA_DATA = 1024
MAX_CLUSTER_BITS = 21

_BE64 = struct.Struct(">Q")


class SnapshotChoiceError(ContainerError):
    """No snapshot (or no single one) can be read; `image` says which there are (vmig info shows them)."""

    def __init__(self, message: str, image: Qcow2Image, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.image = image


def _fail(message: str, offset: int, *path: str | int) -> ContainerError:
    return ContainerError(message, offset=offset, path=("container",) + path)


@dataclass(frozen=True)
class Snapshot:
    index: int
    id: str
    name: str
    l1_table_offset: int
    l1_size: int
    date_sec: int
    date_nsec: int
    vm_clock_nsec: int
    vm_state_size: int
    disk_size: int | None
    icount: int | None
    extra_data_size: int
    entry_offset: int

    @property
    def label(self) -> str:
        return f"'{self.name}' (id {self.id})"

    def to_json(self) -> dict[str, Any]:
        date = datetime.datetime.fromtimestamp(self.date_sec, datetime.timezone.utc)
        return {"id": self.id, "name": self.name, "vm_state_size": self.vm_state_size,
                "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"), "date_sec": self.date_sec, "date_nsec": self.date_nsec,
                "vm_clock_nsec": self.vm_clock_nsec, "vm_clock": vm_clock_text(self.vm_clock_nsec),
                "disk_size": self.disk_size, "icount": self.icount, "l1_table_offset": self.l1_table_offset,
                "l1_size": self.l1_size}


def vm_clock_text(nsec: int) -> str:
    """The guest clock as `qemu-img snapshot -l` shows it: HHHH:MM:SS.mmm."""
    secs, ms = divmod(nsec // 1_000_000, 1000)
    return f"{secs // 3600:04d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{ms:03d}"


@dataclass(frozen=True)
class Extent:
    """One piece of a VM state: `length` bytes at `host` in the file, zeros (`host` None), or
    a compressed cluster (`compressed`: its host offset and byte count, `skip` bytes into it)."""

    length: int
    host: int | None = None
    compressed: tuple[int, int] | None = None
    skip: int = 0


@dataclass(frozen=True)
class Qcow2Image:
    version: int
    cluster_bits: int
    size: int
    crypt_method: int
    l1_size: int
    l1_table_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    snapshots_offset: int
    incompatible_features: int
    compression_type: str
    extended_l2: bool
    backing_file: str | None
    snapshots: tuple[Snapshot, ...]
    file_size: int
    snapshot_table_length: int
    #: the mapped file the tables and clusters are read from
    buf: Any = field(default=None, repr=False, compare=False)

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def l2_bits(self) -> int:
        return self.cluster_bits - (4 if self.extended_l2 else 3)

    # ------------------------------------------------------------ reading

    @classmethod
    def read(cls, buf: Any, size: int) -> Qcow2Image:
        header = _parse(wire.Header, buf, 0, size, "the qcow2 header", "header")
        if header.magic != wire.MAGIC:
            raise _fail(f"not a qcow2 image: expected magic 51 46 49 fb, found {header.magic.hex(' ')}", 0, "header")
        if header.version not in (2, 3):
            raise _fail(f"unsupported qcow2 version {header.version}; expected 2 or 3", 4, "header", "version")
        if not 9 <= header.cluster_bits <= MAX_CLUSTER_BITS:
            raise _fail(f"qcow2 cluster_bits {header.cluster_bits} out of range 9..{MAX_CLUSTER_BITS}", 20,
                        "header", "cluster_bits")
        incompatible, compression, header_length = 0, "deflate", wire.V2_HEADER_SIZE
        if header.version >= 3:
            extra = _parse(wire.HeaderV3Extra, buf, wire.V2_HEADER_SIZE, size, "the qcow2 v3 header", "header")
            incompatible, header_length = extra.incompatible_features, extra.header_length
            if header_length < wire.V3_HEADER_SIZE or header_length % 8 or header_length > 1 << header.cluster_bits:
                raise _fail(f"qcow2 header_length {header_length}; expected a multiple of 8 from 104 to the "
                            f"cluster size", 100, "header", "header_length")
            unknown = incompatible & ~wire.INCOMPAT_KNOWN
            if unknown:
                raise _fail(f"qcow2 image uses incompatible features vmig does not know (bits {unknown:#x})", 72,
                            "header", "incompatible_features")
            if incompatible & wire.INCOMPAT_DATA_FILE:
                raise _fail("qcow2 image keeps its data in an external file, which cannot hold internal snapshots",
                            72, "header", "incompatible_features")
            if header_length > wire.V3_HEADER_SIZE:
                if size <= wire.V3_HEADER_SIZE:
                    raise _fail("the file ends inside the qcow2 header", size, "header")
                kind = buf[wire.V3_HEADER_SIZE]
                if kind not in wire.COMPRESSION_TYPES:
                    raise _fail(f"unknown qcow2 compression type {kind}; expected 0 (deflate) or 1 (zstd)",
                                wire.V3_HEADER_SIZE, "header", "compression_type")
                compression = wire.COMPRESSION_TYPES[kind]
        if header.crypt_method:
            raise _fail(f"encrypted qcow2 image (crypt_method {header.crypt_method}): its VM state is encrypted too, "
                        f"and vmig does not decrypt", 32, "header", "crypt_method")
        backing = None
        if header.backing_file_offset:
            end = header.backing_file_offset + header.backing_file_size
            if header.backing_file_size > 1023 or end > size:
                raise _fail("qcow2 backing file name lies outside the file or is over 1023 bytes", 8,
                            "header", "backing_file_offset")
            backing = bytes(buf[header.backing_file_offset:end]).decode("utf-8", "replace")
        image = cls(version=header.version, cluster_bits=header.cluster_bits, size=header.size,
                    crypt_method=header.crypt_method, l1_size=header.l1_size, l1_table_offset=header.l1_table_offset,
                    refcount_table_offset=header.refcount_table_offset,
                    refcount_table_clusters=header.refcount_table_clusters, snapshots_offset=header.snapshots_offset,
                    incompatible_features=incompatible, compression_type=compression,
                    extended_l2=bool(incompatible & wire.INCOMPAT_EXTL2), backing_file=backing, snapshots=(),
                    file_size=size, snapshot_table_length=0, buf=buf)
        snapshots, length = image._read_snapshots(buf, header.nb_snapshots)
        return cls(**{**image.__dict__, "snapshots": snapshots, "snapshot_table_length": length})

    def _read_snapshots(self, buf: Any, count: int) -> tuple[tuple[Snapshot, ...], int]:
        if count > MAX_SNAPSHOTS:
            raise _fail(f"qcow2 header claims {count} snapshots; QEMU allows at most {MAX_SNAPSHOTS}", 60,
                        "header", "nb_snapshots")
        if not count:
            return (), 0
        if self.snapshots_offset % self.cluster_size or self.snapshots_offset >= self.file_size:
            raise _fail(f"qcow2 snapshot table offset {self.snapshots_offset:#x} is not a cluster inside the file "
                        f"({self.file_size} bytes)", 64, "header", "snapshots_offset")
        snapshots, pos, ids = [], self.snapshots_offset, set()
        for index in range(count):
            entry = _parse(wire.SnapshotEntry, buf, pos, self.file_size, f"qcow2 snapshot table entry {index}",
                           "snapshots", index)
            extra = _extra(entry.extra_data)
            vm_state = extra.get("vm_state_size_large", entry.vm_state_size)
            snap = Snapshot(index=index, id=entry.id_str.decode("utf-8", "replace"),
                            name=entry.name.decode("utf-8", "replace"), l1_table_offset=entry.l1_table_offset,
                            l1_size=entry.l1_size, date_sec=entry.date_sec, date_nsec=entry.date_nsec,
                            vm_clock_nsec=entry.vm_clock_nsec, vm_state_size=vm_state,
                            disk_size=extra.get("disk_size"), icount=extra.get("icount"),
                            extra_data_size=entry.extra_data_size, entry_offset=pos)
            if snap.id in ids:
                raise _fail(f"two qcow2 snapshots have the id {snap.id!r}", pos, "snapshots", index, "id")
            ids.add(snap.id)
            snapshots.append(snap)
            length = wire.SNAPSHOT_FIXED_SIZE + entry.extra_data_size + entry.id_str_size + entry.name_size
            pos += length + (-length % 8)
        return tuple(snapshots), pos - self.snapshots_offset

    # ------------------------------------------------------------ choosing

    def select(self, wanted: str | None, name: str) -> Snapshot:
        """The snapshot `wanted` names (its id, else its name); without one, the only snapshot
        that holds a VM state. Anything else is a ContainerError saying what there is."""
        listing = "; ".join(f"id {s.id} '{s.name}' ({'VM state ' + str(s.vm_state_size) + ' bytes' if s.vm_state_size else 'no VM state'})"
                            for s in self.snapshots)
        if not self.snapshots:
            raise self._choice(f"{name}: this qcow2 image has no internal snapshots, so it holds no VM state "
                        f"(`savevm` or `virsh snapshot-create` makes one)", 60, "header", "nb_snapshots")
        if wanted is None:
            with_state = [s for s in self.snapshots if s.vm_state_size]
            if len(with_state) == 1:
                return with_state[0]
            if not with_state:
                raise self._choice(f"{name}: no snapshot of this qcow2 image holds a VM state: {listing}",
                            self.snapshots_offset, "snapshots")
            raise self._choice(f"{name}: this qcow2 image has {len(with_state)} snapshots with a VM state; choose one with "
                        f"--snapshot NAME|ID: {listing}", self.snapshots_offset, "snapshots")
        found = next((s for s in self.snapshots if s.id == wanted), None) or \
            next((s for s in self.snapshots if s.name == wanted), None)
        if found is None:
            raise self._choice(f"{name}: no snapshot with the id or name {wanted!r}; the image has: {listing}",
                        self.snapshots_offset, "snapshots")
        if not found.vm_state_size:
            raise self._choice(f"{name}: snapshot {found.label} has no VM state (a disk-only snapshot); the image has: "
                        f"{listing}", found.entry_offset + 32, "snapshots", found.index, "vm_state_size")
        return found

    def _choice(self, message: str, offset: int, *path: str | int) -> SnapshotChoiceError:
        return SnapshotChoiceError(message, self, offset=offset, path=("container",) + path)

    # ------------------------------------------------------------ mapping

    def vm_state_offset(self, snap: Snapshot) -> int:
        """Guest offset of the VM state in the snapshot's mapping: the disk size rounded up to the
        span of one L2 table (qcow2_vm_state_offset)."""
        disk = snap.disk_size if snap.disk_size is not None else self.size
        span = self.cluster_bits + self.l2_bits
        return -(-disk >> span) << span

    def _metadata(self, snap: Snapshot) -> list[tuple[int, int, str]]:
        cs = self.cluster_size
        ranges = [(0, cs, "the qcow2 header"),
                  (self.snapshots_offset, self.snapshots_offset + max(self.snapshot_table_length, 1), "the snapshot table"),
                  (self.refcount_table_offset, self.refcount_table_offset + self.refcount_table_clusters * cs,
                   "the refcount table"),
                  (self.l1_table_offset, self.l1_table_offset + self.l1_size * 8, "the active L1 table"),
                  (snap.l1_table_offset, snap.l1_table_offset + snap.l1_size * 8, f"the L1 table of snapshot {snap.label}")]
        return sorted(r for r in ranges if r[1] > r[0])

    def extents(self, snap: Snapshot) -> Iterator[Extent]:
        """The VM state of `snap`, in order, as pieces of the file, zeros or compressed clusters."""
        cs, cbits, l2_bits = self.cluster_size, self.cluster_bits, self.l2_bits
        span_bits = cbits + l2_bits
        entry_size = 16 if self.extended_l2 else 8
        start = self.vm_state_offset(snap)
        end = start + snap.vm_state_size
        first, last = start >> span_bits, (end - 1) >> span_bits
        where = ("snapshots", snap.index)
        if last >= snap.l1_size:
            raise _fail(f"the VM state of snapshot {snap.label} ({snap.vm_state_size} bytes at guest offset "
                        f"{start:#x}) runs past its L1 table ({snap.l1_size} entries)", snap.entry_offset + 8,
                        *where, "l1_size")
        if snap.l1_table_offset % cs or snap.l1_table_offset + snap.l1_size * 8 > self.file_size:
            raise _fail(f"the L1 table of snapshot {snap.label} ({snap.l1_size} entries at {snap.l1_table_offset:#x}) "
                        f"is not a cluster-aligned table inside the file ({self.file_size} bytes)", snap.entry_offset,
                        *where, "l1_table_offset")
        metadata = self._metadata(snap)
        l2_seen: dict[int, int] = {}
        buf = self.buf
        for l1_index in range(first, last + 1):
            entry_at = snap.l1_table_offset + 8 * l1_index
            l2_offset = _BE64.unpack_from(buf, entry_at)[0] & wire.OFFSET_MASK
            lo = max(start, l1_index << span_bits)
            hi = min(end, (l1_index + 1) << span_bits)
            if not l2_offset:
                yield Extent(hi - lo)
                continue
            path = (*where, "l1", l1_index)
            self._check_cluster(l2_offset, entry_at, metadata, "an L2 table", path)
            if l2_offset in l2_seen:
                raise _fail(f"L1 entries {l2_seen[l2_offset]} and {l1_index} of snapshot {snap.label} share the L2 "
                            f"table at {l2_offset:#x}: a loop in the cluster mapping", entry_at, *path)
            l2_seen[l2_offset] = l1_index
            pos = lo
            while pos < hi:
                l2_index = (pos >> cbits) & ((1 << l2_bits) - 1)
                at = l2_offset + entry_size * l2_index
                (entry,) = _BE64.unpack_from(buf, at)
                in_cluster = pos & (cs - 1)
                piece = min(hi - pos, cs - in_cluster)
                yield from self._cluster(entry, at, pos, in_cluster, piece, metadata, l2_seen,
                                         (*where, "l1", l1_index, "l2", l2_index))
                pos += piece

    def _cluster(self, entry: int, at: int, pos: int, in_cluster: int, piece: int, metadata: list[tuple[int, int, str]],
                 l2_seen: dict[int, int], path: tuple[str | int, ...]) -> Iterator[Extent]:
        cs, cbits = self.cluster_size, self.cluster_bits
        if entry & wire.L2_COMPRESSED:
            x = 62 - (cbits - 8)
            host = entry & ((1 << x) - 1)
            sectors = ((entry >> x) & ((1 << (cbits - 8)) - 1)) + 1
            length = sectors * 512 - (host & 511)
            if host + min(length, 1) > self.file_size or host < cs:
                raise _fail(f"compressed cluster at {host:#x} lies outside the file", at, *path)
            yield Extent(piece, compressed=(host, min(length, self.file_size - host)), skip=in_cluster)
            return
        host = entry & wire.OFFSET_MASK
        if self.extended_l2:
            (bitmap,) = _BE64.unpack_from(self.buf, at + 8)
            sub = cs // 32
            while piece:
                index = in_cluster // sub
                take = min(piece, sub - in_cluster % sub)
                if bitmap >> index & 1:
                    self._check_cluster(host, at, metadata, "a data cluster", path, l2_seen)
                    yield Extent(take, host=host + in_cluster)
                else:
                    yield Extent(take)
                piece -= take
                in_cluster += take
            return
        zero = self.version >= 3 and entry & wire.L2_ZERO
        if not host or zero:
            yield Extent(piece)
            return
        self._check_cluster(host, at, metadata, "a data cluster", path, l2_seen)
        yield Extent(piece, host=host + in_cluster)

    def _check_cluster(self, host: int, at: int, metadata: list[tuple[int, int, str]], what: str,
                       path: tuple[str | int, ...], l2_seen: dict[int, int] | None = None) -> None:
        cs = self.cluster_size
        if host % cs:
            raise _fail(f"{what} at {host:#x} is not cluster-aligned ({cs} bytes)", at, *path)
        if host + cs > self.file_size:
            # the last cluster of an image may be short; what is past the end reads as nothing
            if host >= self.file_size:
                raise _fail(f"{what} at {host:#x} lies outside the file ({self.file_size} bytes)", at, *path)
        for lo, hi, name in metadata:
            if hi > host and lo < host + cs:
                raise _fail(f"{what} at {host:#x} is {name}: a loop in the cluster mapping", at, *path)
        if l2_seen is not None and host in l2_seen:
            raise _fail(f"{what} at {host:#x} is the L2 table of L1 entry {l2_seen[host]}: a loop in the cluster "
                        f"mapping", at, *path)

    def read_compressed(self, extent: Extent) -> bytes:
        """The cluster a compressed extent lies in, decompressed, and the extent's part of it."""
        assert extent.compressed is not None
        host, length = extent.compressed
        data = bytes(self.buf[host:host + length])
        cs = self.cluster_size
        try:
            if self.compression_type == "zstd":
                from .reader import _zstd_module

                out = _zstd_module().ZstdDecompressor().decompress(data, cs)
            else:
                d = zlib.decompressobj(-15)
                out = d.decompress(data, cs)
        except Exception as exc:  # zlib.error or ZstdError: corrupt cluster data
            raise _fail(f"compressed cluster at {host:#x} does not decompress ({self.compression_type}): {exc}",
                        host, "compressed") from exc
        if len(out) < extent.skip + extent.length:
            raise _fail(f"compressed cluster at {host:#x} gives {len(out)} bytes, expected {cs}", host, "compressed")
        return out[extent.skip:extent.skip + extent.length]

    def to_json(self, chosen: Snapshot | None = None) -> dict[str, Any]:
        return {"type": "qcow2", "version": self.version, "cluster_size": self.cluster_size, "disk_size": self.size,
                "backing_file": self.backing_file, "compression_type": self.compression_type,
                "extended_l2": self.extended_l2,
                "snapshots": [s.to_json() for s in self.snapshots],
                "snapshot": None if chosen is None else {"id": chosen.id, "name": chosen.name,
                                                          "vm_state_offset": self.vm_state_offset(chosen)}}


def _extra(data: bytes) -> dict[str, int]:
    values: dict[str, int] = {}
    for name, end in wire.EXTRA_FIELDS:
        if len(data) >= end:
            values[name] = _BE64.unpack_from(data, end - 8)[0]
    return values


def _parse(schema: Any, buf: Any, offset: int, size: int, what: str, *path: str | int) -> Any:
    need = schema.sizeof() if schema is not wire.SnapshotEntry else wire.SNAPSHOT_FIXED_SIZE
    if offset + need > size:
        raise _fail(f"the file ends inside {what} (at {offset:#x}, {need} bytes expected, {max(size - offset, 0)} "
                    f"left)", min(offset, size), *path)
    try:
        if schema is wire.SnapshotEntry:
            fixed = bytes(buf[offset:offset + wire.SNAPSHOT_FIXED_SIZE])
            id_size, name_size = struct.unpack_from(">HH", fixed, 12)
            (extra,) = struct.unpack_from(">I", fixed, 36)
            if extra > MAX_EXTRA_DATA:
                raise _fail(f"{what} has {extra} bytes of extra data; QEMU allows at most {MAX_EXTRA_DATA}",
                            offset + 36, *path, "extra_data_size")
            total = wire.SNAPSHOT_FIXED_SIZE + extra + id_size + name_size
            if offset + total > size:
                raise _fail(f"the file ends inside {what} (at {offset:#x}, {total} bytes expected)", size, *path)
            return schema.parse(bytes(buf[offset:offset + total]))
        return schema.parse(bytes(buf[offset:offset + need]))
    except ConstructError as exc:
        raise _fail(f"bad {what}: {str(exc).splitlines()[-1]}", offset, *path) from exc
