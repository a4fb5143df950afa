"""One rich style name per concept, so output can be re-themed in one place."""

from __future__ import annotations

from rich.theme import Theme

THEME = Theme({
    "vmig.title": "bold",
    "vmig.offset": "cyan",
    "vmig.length": "dim cyan",
    "vmig.kind": "bold magenta",
    "vmig.name": "bold",
    "vmig.field": "green",
    "vmig.value": "",
    "vmig.dim": "dim",
    "vmig.warn": "yellow",
    "vmig.error": "bold red",
    "vmig.hint": "dim",
    "vmig.added": "green",
    "vmig.removed": "red",
    "vmig.changed": "yellow",
    "vmig.path": "cyan",
})
