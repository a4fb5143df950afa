"""vmig: decode, encode and diff QEMU migration streams, with first-class VFIO and ramfb knowledge.

Library use::

    from vfio_ramfb_mig import decode, encode_bytes, jsonform
    stream = decode("dump.bin")
    print(jsonform.dumps(stream))
"""

from __future__ import annotations

__version__ = "0.1.0"

from .codec import jsonform  # noqa: E402
from .compat.check import check_stream, destination  # noqa: E402
from .codec.decode import decode  # noqa: E402
from .codec.encode import encode, encode_bytes  # noqa: E402
from .codec.source import Source  # noqa: E402
from .diff import diff_streams  # noqa: E402
from .errors import VmigError  # noqa: E402

__all__ = ["Source", "VmigError", "__version__", "check_stream", "decode", "destination", "diff_streams", "encode",
           "encode_bytes", "jsonform"]
