"""VmigError -> one line of rich Text (plus a hint line where one helps)."""

from __future__ import annotations

from rich.text import Text

from ..errors import VmigError


def error_text(err: BaseException) -> Text:
    if isinstance(err, VmigError):
        text = Text.assemble(("vmig: error: ", "vmig.error"), str(err))
        if err.hint:
            text.append(f"\nhint: {err.hint}", style="vmig.hint")
        return text
    return Text.assemble(("vmig: internal error: ", "vmig.error"), f"{type(err).__name__}: {err}",
                         ("\nhint: this is a bug in vmig; rerun with --debug for the traceback and report it",
                          "vmig.hint"))
