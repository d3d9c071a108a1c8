"""A click group whose commands are imported only when one of them runs (Indico's `LazyGroup`).

`filr flows validate` is run by technicians' scripts on every file: it must not pay for Flask,
SQLAlchemy and every blueprint that the other groups import. `filr --help` lists the groups
from the short help kept beside each import path, so it imports none of them either.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import click

from portal.cli.french import french_click, in_french


class Lazy(NamedTuple):
    """Where a command lives (`"module:attribute"`) and its short help, for `--help`."""

    target: str
    short_help: str


class LazyGroup(click.Group):
    """A group whose *lazy* commands are imported by name, on first use."""

    def __init__(self, *args: Any, lazy: Mapping[str, Lazy], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)
        in_french(self)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Click's own strings in French, like the rest of the command (portal/cli/french.py).
        with french_click():
            return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def load(self, cmd_name: str) -> click.Command:
        """Import the command registered as *cmd_name*."""
        module_name, _, attribute = self.lazy[cmd_name].target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name].target} is not a click command")
        return in_french(command)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click.Group's, a command not imported yet standing in as a bare command that
        # carries the short help of the map.
        rows = [
            (name, self.commands.get(name) or click.Command(name, help=self.lazy[name].short_help))
            for name in self.list_commands(ctx)
        ]
        rows = [(name, command) for name, command in rows if not command.hidden]
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commandes"):
            formatter.write_dl(
                [(name, command.get_short_help_str(limit)) for name, command in rows]
            )
