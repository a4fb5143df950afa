"""`python -m vfio_ramfb_mig` is the `vmig` command."""

from .cli.main import cli

cli(prog_name="vmig")
