"""Golden files: a canonical, reviewable text summary of a stream, and the comparison CI runs.

A golden file sits beside its stream (`out.bin` -> `out.golden.txt`) and holds
one `path = value` line per value, under `[group]` headers, one group per
section. It is what `vmig golden update` writes and `vmig golden check`
compares with a fresh decode: a difference is reported by field path, old ->
new, grouped by section, and fails the check. The format (docs/golden.md):

    # vmig golden file (format 1). `vmig golden update` writes it, `vmig golden check` compares it.
    # options: {"ignore": [], "offsets": false, "order": false}

    [stream]
    stream/version = 3
    ...
    [ramfb-dev]
    ramfb-dev/@version = 1
    ramfb-dev/state/cfg/width = 1024

- Sections are named by idstr, `#instance` when the instance id is not 0, and
  `:start` / `:part` / `:end` for iterative records (all PARTs of a section are
  one group); never by section id. The RAM sections of a stream are one group
  (how pages are split over START/PART/END depends on timing): per block its
  length, the count of zero and normal pages in the final state (the last
  record of a page wins) and a sha256 over that final state (ram.summary).
- Groups are sorted by name, so section order and section ids do not matter,
  and byte offsets are left out; `order` adds the record sequence with section
  ids, `offsets` adds it with offsets plus an `@offset` line per field.
- Ignore patterns (fnmatch on the path; a pattern matching a path's ancestor,
  such as `timer`, ignores the whole subtree) leave paths out of goldens and
  out of comparisons. Options come from the command line, from
  `vmig-golden.toml` next to the streams, and from the golden's own
  `# options:` line, so a golden keeps being checked the way it was written.

The package, by concern (imports point from the later to the earlier):

    options     GoldenOptions, vmig-golden.toml
    goldenfile  the golden text: Golden, Entry, parse and write, read_golden
    summary     a decoded stream -> its Golden (golden_of, golden_of_path)
    compare     two goldens -> Changes
    discovery   the streams under a path, the golden beside each, orphan goldens
    check       one stream: check_stream, update_stream
    report      results as plain text, JSON (--json) and JUnit XML (--junit)
    jobs        many streams in worker processes (-j N), in sorted order

Imports: errors, model, codec (decode), source, text, outfile, ram (state, summary); no rich, no click.
"""

from __future__ import annotations

from ..errors import GoldenError
from .check import CHECK_STATUSES, UPDATE_STATUSES, CheckResult, UpdateResult, check_stream, update_stream
from .compare import Change, change_line, compare
from .discovery import COMPRESSED_STREAM_SUFFIXES, GOLDEN_SUFFIX, Target, find_streams, golden_path, orphan_goldens
from .goldenfile import FORMAT, Entry, Golden, read_golden
from .jobs import Run, check_all, check_paths, default_jobs, update_all, update_paths
from .options import CONFIG_NAME, GoldenOptions, find_config, load_config
from .report import CHECK_JSON_FORMAT, check_document, junit_xml, report_lines
from .summary import golden_of, golden_of_path, record_path, section_group

__all__ = [
    "CHECK_JSON_FORMAT", "CHECK_STATUSES", "COMPRESSED_STREAM_SUFFIXES", "CONFIG_NAME", "FORMAT", "GOLDEN_SUFFIX",
    "UPDATE_STATUSES", "Change", "CheckResult", "Entry", "Golden", "GoldenError", "GoldenOptions", "Run", "Target",
    "UpdateResult",
    "change_line", "check_all", "check_document", "check_paths", "check_stream", "compare", "default_jobs", "find_config",
    "find_streams", "golden_of", "golden_of_path", "golden_path", "junit_xml", "load_config", "orphan_goldens",
    "read_golden", "record_path", "report_lines", "section_group", "update_all", "update_paths", "update_stream",
]
