"""The version of vmig, at the bottom of the layers: JSON documents and manifests written by
lower layers carry it, and the package's public API re-exports it. Imports nothing."""

__version__ = "0.1.0"
