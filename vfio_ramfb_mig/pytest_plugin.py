"""pytest plugin (entry point ``vmig``): assert a migration stream against its golden file.

Installing vmig makes the ``vmig_golden`` fixture available to every project::

    def test_migration_stream(tmp_path, vmig_golden):
        out = tmp_path / "out.bin"
        save_vm(out)                                             # the project's own code
        vmig_golden.check(out, golden=Path(__file__).parent / "golden" / "out.golden.txt",
                          ignore=["timer/*", "ram/*"])

    def test_checked_in_stream(vmig_golden):
        vmig_golden(Path("streams/q35.bin"))                     # golden beside it: q35.golden.txt

A difference fails the test with the differences by path (old -> new), a
missing golden fails it too; ``pytest --vmig-update-golden`` writes the
goldens instead (only those whose text changes; never a stream), and the
terminal summary lists them. Review and commit them; CI never passes it.
vmig-golden.toml is read from the golden's directory and its parents up to
pytest's rootdir.

pytest loads this module in every run of every project where vmig is installed, so it
imports only pytest and the standard library; golden (and the decoder under it) is
imported when a test first uses the fixture (tests/test_cli_extras.py holds it to that).

Imports: pytest; golden when the fixture is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pytest

if TYPE_CHECKING:
    from .golden import CheckResult

_UPDATED = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vmig")
    group.addoption("--vmig-update-golden", action="store_true", default=False,
                    help="rewrite vmig golden files instead of comparing with them")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_UPDATED] = []


class VmigGolden:
    """The ``vmig_golden`` fixture: ``vmig_golden(stream)`` or ``vmig_golden.check(stream, golden=..., ...)``."""

    def __init__(self, update: bool, rootdir: Path, updated: list[str] | None = None) -> None:
        self.update, self.rootdir = update, rootdir
        self._updated = updated if updated is not None else []

    def check(self, stream: str | os.PathLike[str], golden: str | os.PathLike[str] | None = None, *,
              ignore: Iterable[str] = (), offsets: bool = False, order: bool = False) -> CheckResult | None:
        """Fail the test unless `stream` matches `golden` (default: `<stem>.golden.txt` beside it).

        Args:
            stream: the migration stream file (relative paths are relative to the working directory).
            golden: the golden file; point it into your repository when the stream is written to tmp_path.
            ignore: fnmatch patterns of paths to leave out (``timer/*``, ``ram/*``, ``cpu/*/tsc*``).
            offsets: byte offsets (and the record order) are part of the golden.
            order: the record order and section ids are part of the golden.

        Returns:
            The CheckResult of a passing check; None when ``--vmig-update-golden`` wrote the golden.
        """
        __tracebackhide__ = True
        from .errors import VmigError
        from .golden import GoldenOptions, check_stream, report_lines, update_stream

        options = GoldenOptions(offsets=offsets, order=order, ignore=tuple(ignore))
        golden_file = Path(golden) if golden is not None else None
        root = self.rootdir
        try:
            if self.update:
                result = update_stream(stream, golden_file, options=options, config_root=root)
                if result.status != "unchanged":
                    self._updated.append(f"{result.status} {result.golden}")
                return None
            checked = check_stream(stream, golden_file, options=options, config_root=root)
        except VmigError as err:
            pytest.fail(f"vmig golden: {stream}: {err}", pytrace=False)
        if checked.failed:
            hint = ("run `pytest --vmig-update-golden` to write it, then review and commit it"
                    if checked.status == "missing" else
                    "if the change is intended, run `pytest --vmig-update-golden` and review the golden's diff")
            pytest.fail("\n".join(report_lines(checked) + [f"hint: {hint}"]), pytrace=False)
        return checked

    __call__ = check


@pytest.fixture
def vmig_golden(request: pytest.FixtureRequest) -> VmigGolden:
    """Check migration streams against golden files (``--vmig-update-golden`` rewrites them)."""
    config = request.config
    return VmigGolden(bool(config.getoption("--vmig-update-golden")), Path(str(config.rootpath)),
                      config.stash.get(_UPDATED, None))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    updated = config.stash.get(_UPDATED, [])
    if updated:
        terminalreporter.section("vmig golden files written (review and commit them)")
        for line in updated:
            terminalreporter.write_line(line)
