"""Rebuild the bundled destinations data: python -m vfio_ramfb_mig.compat.check OUT.json.gz CAPTURE.bin..."""

from __future__ import annotations

import sys

from .destination_data import write_destinations_data

if __name__ == "__main__":
    write_destinations_data(sys.argv[2:], sys.argv[1])
