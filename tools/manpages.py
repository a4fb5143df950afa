"""Man pages from vmig's own --help (`make man`): vmig(1) and one vmig-VERB(1) per command.

    python tools/manpages.py build/man        # then: man -l build/man/vmig-decode.1

Everything comes from the click commands (usage, help text, options with their help),
so the pages say what `vmig VERB --help` says; nothing is fetched. Pages carry no date,
so the same vmig gives the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vfio_ramfb_mig.cli.main import cli
from vfio_ramfb_mig.version import __version__

EXIT_STATUS = [
    ("0", "success; for diff, golden check and check: same, matching, would load"),
    ("1", "diff: different; golden check: a difference or a missing golden; check: would be refused; "
          "decode --section: no section matches"),
    ("2", "trouble: bad input or usage, one line on stderr naming the place"),
    ("70", "a bug in vmig (rerun with --debug and report it)"),
    ("130", "interrupted (Ctrl-C); 143: stopped by SIGTERM"),
]
ENVIRONMENT = [
    ("NO_COLOR", "no colour (any non-empty value); --color overrides it"),
    ("FORCE_COLOR", "colour even when piped (any non-empty value); NO_COLOR and --no-color win"),
    ("_VMIG_COMPLETE", "shell completion: see the README (bash_source, zsh_source, fish_source)"),
]


def roff(text: str) -> str:
    """Text as roff: backslashes escaped, a line starting with . or ' made literal."""
    out = []
    for line in text.replace("\\", "\\e").split("\n"):
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def options(ctx: click.Context, command: click.Command) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        record = None if isinstance(param, click.Argument) else param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{roff(names).replace('-', chr(92) + '-')}\\fR", roff(help_text)]
    return lines


def page(name: str, command: click.Command, parent: click.Context | None) -> str:
    ctx = click.Context(command, info_name=name.replace("-", " ") if parent is None else name.split("-")[-1],
                        parent=parent)
    title = name.upper()
    summary = command.get_short_help_str(limit=200).rstrip(".")
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f'.TH "{title}" 1 "" "vmig {__version__}" "User Commands"', ".SH NAME",
             f"{roff(name)} \\- {roff(summary)}", ".SH SYNOPSIS", f"\\fB{roff(ctx.command_path)}\\fR {roff(usage)}"]
    help_text = click.unstyle(command.help or "")
    if help_text:
        lines += [".SH DESCRIPTION"]
        for para in help_text.split("\n\n"):
            para = para.strip("\n")
            if para.startswith("\b"):
                lines += [".nf", roff(para.removeprefix("\b").strip("\n")), ".fi"]
            else:
                lines += [".PP", roff(" ".join(para.split()))]
    lines += [".SH OPTIONS", *options(ctx, command)]
    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                lines += [".TP", f"\\fB{sub_name}\\fR", roff(sub.get_short_help_str(limit=200)),
                          f"See \\fB{name}-{sub_name}\\fR(1)."]
    if parent is None:
        lines.append(".SH EXIT STATUS")
        for code, text in EXIT_STATUS:
            lines += [".TP", f"\\fB{code}\\fR", roff(text)]
        lines.append(".SH ENVIRONMENT")
        for var, text in ENVIRONMENT:
            lines += [".TP", f"\\fB{var}\\fR", roff(text)]
    lines += [".SH SEE ALSO", "\\fBqemu-system-x86_64\\fR(1)" if parent is not None else
              ", ".join(f"\\fBvmig-{n}\\fR(1)" for n in cli.list_commands(click.Context(cli)))]
    return "\n".join(lines) + "\n"


def write_pages(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def walk(name: str, command: click.Command, parent: click.Context | None) -> None:
        path = out / f"{name}.1"
        path.write_text(page(name, command, parent), encoding="utf-8")
        written.append(path)
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name.split("-")[-1], parent=parent)
            for sub_name in command.list_commands(ctx):
                sub = command.get_command(ctx, sub_name)
                if sub is not None and not sub.hidden:
                    walk(f"{name}-{sub_name}", sub, ctx)

    walk("vmig", cli, None)
    return written


if __name__ == "__main__":
    for written in write_pages(Path(sys.argv[1] if len(sys.argv) > 1 else "build/man")):
        print(written)
