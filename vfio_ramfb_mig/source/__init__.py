"""Where the bytes of a stream come from: a plain file, a pipe, a compressed file, a libvirt
save image, a qcow2 internal snapshot.

`Source` is the one view of an input every verb reads through: a buffer indexed by stream
offsets, and the single place construct parses report offsets and paths. `Source.open` finds
the stream in a file by its content (source.opener).

Imports: construct, errors, wire (container headers, the bounded stream construct parses read from).
"""

from __future__ import annotations

from ..wire.bounded import BoundedStream, empty_allowance
from .buffer import ForwardSource, Layer, Source
from .limits import Limits
from .opener import probe, vm_state_snapshots

__all__ = ["BoundedStream", "ForwardSource", "Layer", "Limits", "Source", "empty_allowance", "probe", "vm_state_snapshots"]
