"""`filr` speaks French: its own help, and click's usage lines, headings and errors."""

from __future__ import annotations

import gettext
import json
import re
import subprocess
import sys
from pathlib import Path

import click
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from click.testing import CliRunner

from portal.cli import main
from portal.cli.french import DOMAIN, LOCALE_DIR

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = LOCALE_DIR / "fr" / "LC_MESSAGES"
# Words of English help and click's English strings that are not French words.
ENGLISH = re.compile(
    r"(?<![-\w])(Usage|Show this|the|and|of|an|with|Commands|Create|List|Run|Print|Delete|Send|"
    r"Error|Missing|Try|Invalid|does not|exist|default|trail|required)\b"
)


def _every_command(command: click.Command, path: list[str]) -> list[list[str]]:
    found = [path]
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            sub = command.get_command(click.Context(command), name)
            assert sub is not None
            found += _every_command(sub, [*path, name])
    return found


# Every help page, as an operator gets it: a fresh interpreter (click caches each command's
# help option once made, so a test that invoked a group directly would leave it in English).
WALK = """
import json
from click.testing import CliRunner
from portal.cli import main
from tests.cli.test_french import _every_command
pages = {}
for path in _every_command(main, []):
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="filr", terminal_width=200)
    pages[" ".join(path)] = [result.exit_code, result.output]
print(json.dumps(pages))
"""


def test_every_help_page_of_filr_is_french() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WALK], capture_output=True, text=True, check=True, cwd=ROOT
    )
    pages = json.loads(done.stdout)
    assert len(pages) > 30
    english = []
    for path, (code, output) in pages.items():
        assert code == 0, (path, output)
        assert "Utilisation : filr" in output
        assert "Afficher cette aide et quitter." in output
        english += [(path, m.group(0)) for m in ENGLISH.finditer(output)]
    assert not english, english


def test_click_usage_errors_are_french() -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["flows", "validate"], prog_name="filr")
    assert missing.exit_code == 2
    assert "Erreur : Argument manquant 'FICHIER'." in missing.output
    assert "Aide : « filr flows validate --help »." in missing.output
    unknown = runner.invoke(main, ["nope"], prog_name="filr")
    assert "Erreur : Commande inconnue : 'nope'." in unknown.output
    absent = runner.invoke(main, ["flows", "validate", "/nulle/part.xml"], prog_name="filr")
    assert "Fichier '/nulle/part.xml' n'existe pas." in absent.output
    assert not ENGLISH.search(missing.output + unknown.output + absent.output)


def test_the_command_leaves_the_process_gettext_settings_as_it_found_them() -> None:
    before = gettext.textdomain()
    CliRunner().invoke(main, ["--help"])
    assert gettext.textdomain() == before
    assert gettext.gettext("Usage:") == "Usage:"


def test_the_catalogue_translates_every_string_of_the_installed_click() -> None:
    # Given the strings click marks for translation in the version installed
    source = Path(click.__file__).parent
    wanted = {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(str(source))
    }
    with (CATALOGUE / f"{DOMAIN}.po").open("rb") as po:
        catalogue = read_po(po)
    # Then every one has a French translation in the catalogue
    missing = sorted(m for m in wanted if not (catalogue.get(m) and catalogue.get(m).string))
    assert not missing, missing


def test_the_compiled_catalogue_matches_its_source() -> None:
    with (CATALOGUE / f"{DOMAIN}.po").open("rb") as po:
        catalogue = read_po(po)
    compiled = gettext.translation(DOMAIN, str(LOCALE_DIR), languages=["fr"])
    for message in catalogue:
        if not message.id:
            continue
        if isinstance(message.id, tuple):
            assert compiled.ngettext(message.id[0], message.id[1], 2) == message.string[1]
        else:
            assert compiled.gettext(message.id) == message.string, message.id
