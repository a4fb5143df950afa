"""`vmig encode --from-json`: a `vmig decode --json` document back into its stream, in its container.

The document names its source (source.path, source.size): RAM pages and big buffers it does not
embed are copied from there, after checking that the source has the size the document was
decoded from. The container the stream came in (libvirt save image, compression; a qcow2
snapshot's stream is written bare) is rebuilt around it unless `bare`.

Imports: errors, source (Source, writer), outfile, textin, codec.jsonform, codec.encode.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import InputError
from ..outfile import output_file
from ..source import Source
from ..source.writer import plan, wrapped
from ..textin import read_bytes
from . import jsonform
from .encode import encode


def encode_document(path: str, output: str, *, source_path: str | None = None, bare: bool = False,
                    note: Callable[[str], None] = lambda text: None,
                    check_output: Callable[[tuple[str, ...]], None] = lambda inputs: None) -> None:
    """Write the stream the JSON document at `path` describes to `output` (atomically).

    Args:
        source_path: the stream the document refers to (default: its source.path).
        bare: only the migration stream, not the container the document says it came in.
        note: told what the container rebuild cannot keep (source.writer.plan's notes).
        check_output: called with every input once the document names its source, so the caller
            can refuse an output that is one of them (outfile.check_output).
    """
    stream = jsonform.loads(read_bytes(path), path)
    source_path = source_path or stream.source
    check_output(tuple(p for p in (path, source_path) if p))
    container = None if bare else stream.container
    for text in plan(container)[1]:
        note(text)
    # a qcow2 source is read through the snapshot the JSON was decoded from
    snapshot = next((layer.get("snapshot", {}).get("id") for layer in (stream.container or {}).get("layers", [])
                     if isinstance(layer, dict) and layer.get("type") == "qcow2"), None)
    source = Source.open(source_path, snapshot=snapshot) \
        if source_path and source_path != "-" and os.path.exists(source_path) else None
    try:
        if source is not None and not stream.size:
            raise InputError(f"the JSON does not say the size of its source (source.size), so vmig cannot "
                             f"check that {source_path} is the stream it was decoded from",
                             hint="add \"size\" to the document's \"source\", or embed the bytes (decode --embed)")
        if source is not None and source.size != stream.size:
            raise InputError(f"source {source_path} has {source.size} bytes, but the JSON was decoded from "
                             f"{stream.size} bytes", hint="give the stream it was decoded from with --source")
        with output_file(output) as target, wrapped(target, container) as out:
            encode(stream, out, source)
    finally:
        if source is not None:
            source.close()
