"""vmig: decode, encode and diff QEMU migration streams, with first-class VFIO and ramfb knowledge.

Library use::

    from vfio_ramfb_mig import decode, encode_bytes, jsonform
    stream = decode("dump.bin")
    print(jsonform.dumps(stream))

The public names are imported on first use (PEP 562), so importing the package, or
one light module of it such as the CLI's entry point, does not pull in the codec,
construct, rich and the compat tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: public name -> (module relative to this package, attribute in it; None: the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Source": (".source", "Source"),
    "VmigError": (".errors", "VmigError"),
    "__version__": (".version", "__version__"),
    "check_stream": (".compat.check", "check_stream"),
    "decode": (".codec.decode", "decode"),
    "destination": (".compat.check", "destination"),
    "diff_streams": (".diff", "diff_streams"),
    "encode": (".codec.encode", "encode"),
    "encode_bytes": (".codec.encode", "encode_bytes"),
    "jsonform": (".codec.jsonform", None),
    "screenshot": (".screen", "screenshot"),
}

__all__ = ["Source", "VmigError", "__version__", "check_stream", "decode", "destination", "diff_streams", "encode",
           "encode_bytes", "jsonform", "screenshot"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ below does it
    from .codec import jsonform
    from .codec.decode import decode
    from .codec.encode import encode, encode_bytes
    from .source import Source
    from .compat.check import check_stream, destination
    from .diff import diff_streams
    from .errors import VmigError
    from .screen import screenshot
    from .version import __version__


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    # __import__, not importlib.import_module: `python -X importtime` then shows the import
    module = __import__(__name__ + module_name, fromlist=("__name__",))
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
