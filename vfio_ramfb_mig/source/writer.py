"""Write a stream back into the container it was read from (`vmig encode --from-json`).

The `container` object of a decode --json document lists the layers around the stream,
outermost first. `wrapped(out, container)` yields a file object the stream is written to; the
layers are rebuilt around it:

- compression (gzip, xz, bzip2, zstd, lzop): the same format, made by vmig's libraries (the
  uncompressed content is identical; the compressed bytes may differ from the tool's);
- a libvirt save image: its header and data region byte for byte as read (XML, cookie,
  padding, unused fields), then the payload raw or compressed as the header says (libvirt
  runs `xz -c -3`: preset 3 here too) — a raw image comes out byte-identical;
- a qcow2 snapshot: not rebuilt. A VM state lives inside a disk image among its clusters,
  refcounts and snapshot table, which vmig does not write; the bare stream is written instead
  (QEMU loads it with `-incoming file:PATH`), and `notes` says so.

Imports: errors, source.libvirt/lzop/reader, the standard library's compressors.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..errors import EncodeError, InputError
from .libvirt import LibvirtSave

COMPRESSIONS = ("gzip", "xz", "bzip2", "zstd", "lzop")


def compressor(fmt: str, out: BinaryIO) -> Any:
    """A write-only file object compressing into `out` (closing it finishes the data, not `out`)."""
    if fmt == "gzip":
        return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0)
    if fmt == "xz":
        return lzma.LZMAFile(out, "wb", format=lzma.FORMAT_XZ, preset=3)
    if fmt == "bzip2":
        return bz2.BZ2File(out, "wb", compresslevel=9)
    if fmt == "zstd":
        from .reader import _zstd_module

        return _zstd_module().ZstdFile(out, "wb", level=3)
    if fmt == "lzop":
        from .lzop import LzopWriter

        return LzopWriter(out)
    raise EncodeError(f"cannot write {fmt!r} data; vmig writes {', '.join(COMPRESSIONS)}")


def plan(container: dict[str, Any] | None) -> tuple[list[tuple[str, Any]], list[str]]:
    """The layers to write, outermost first ((kind, detail)), and notes for the user."""
    notes: list[str] = []
    steps: list[tuple[str, Any]] = []
    for i, layer in enumerate((container or {}).get("layers") or []):
        kind = layer.get("type") if isinstance(layer, dict) else None
        if kind == "libvirt-save":
            try:
                save = LibvirtSave.from_json(layer)
            except InputError as exc:
                raise EncodeError(f"container.layers[{i}]: {exc.message}") from exc
            if save.compression not in ("raw", *COMPRESSIONS):
                raise EncodeError(f"container.layers[{i}]: cannot write a libvirt payload compressed as "
                                  f"{save.compression}")
            steps.append((kind, save))
        elif kind == "qcow2":
            snap = (layer.get("snapshot") or {}).get("name")
            notes.append(f"the stream came from snapshot {snap!r} of a qcow2 image; vmig writes the bare stream "
                         f"(qcow2 images are not rebuilt: load it with -incoming file:PATH)")
            break  # what was around the qcow2 image is not rebuilt either
        elif kind in COMPRESSIONS:
            steps.append((kind, None))
        else:
            raise EncodeError(f"container.layers[{i}]: unknown layer type {kind!r}; expected libvirt-save, qcow2 or "
                              f"one of {', '.join(COMPRESSIONS)}")
    return steps, notes


@contextlib.contextmanager
def wrapped(out: BinaryIO, container: dict[str, Any] | None) -> Iterator[BinaryIO]:
    """Yield the file object to write the bare stream to; the container is written around it."""
    steps, _ = plan(container)
    with contextlib.ExitStack() as stack:
        target: Any = out
        for kind, detail in steps:
            if kind == "libvirt-save":
                target.write(detail.build())
                if detail.compression != "raw":
                    target = stack.enter_context(contextlib.closing(compressor(detail.compression, target)))
            else:
                target = stack.enter_context(contextlib.closing(compressor(kind, target)))
        yield target
