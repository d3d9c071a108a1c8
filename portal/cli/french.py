"""Click's own strings ("Usage:", "Options", "Error: Missing argument") in French.

The operators' documentation and every message of `filr` are French, so its help is too. Click
marks its strings for the standard `gettext` but ships no translation; `locale/fr` holds its
catalogue (`click.po`, compiled to `click.mo`), and `french_click()` selects it for the time of
one command: gettext's global domain becomes "click" bound to that folder, and `LANGUAGE=fr`
(read by gettext before `LC_ALL`/`LANG`) chooses French whatever the operator's locale.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "click"


@contextmanager
def french_click() -> Iterator[None]:
    """Click speaks French inside the block; the process's gettext settings come back after."""
    previous_domain = gettext.textdomain()
    previous_dir = gettext.bindtextdomain(DOMAIN)
    previous_language = os.environ.get("LANGUAGE")
    gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(DOMAIN)
    os.environ["LANGUAGE"] = "fr"
    try:
        yield
    finally:
        gettext.textdomain(previous_domain)
        gettext.bindtextdomain(DOMAIN, previous_dir)
        if previous_language is None:
            os.environ.pop("LANGUAGE", None)
        else:
            os.environ["LANGUAGE"] = previous_language


# Placeholders click derives from a parameter's type name ("INTEGER RANGE").
PATH_NOUNS = {"file": "fichier", "directory": "dossier", "path": "chemin"}
TYPE_METAVARS = {"integer": "ENTIER", "integer range": "ENTIER", "text": "TEXTE", "float": "NOMBRE"}


def in_french(command: click.Command) -> click.Command:
    """*command* and its subcommands with French placeholders in their usage line."""
    command.options_metavar = "[OPTIONS]"  # the same word in French
    for param in command.params:
        # A path's noun is translated when the type is made, which may precede french_click().
        if isinstance(param.type, click.Path):
            param.type.name = PATH_NOUNS.get(param.type.name, param.type.name)
        if param.metavar is None and param.type.name in TYPE_METAVARS:
            param.metavar = TYPE_METAVARS[param.type.name]
    if isinstance(command, click.Group):
        command.subcommand_metavar = "COMMANDE [ARGUMENTS]..."
        for sub in command.commands.values():
            in_french(sub)
    return command
