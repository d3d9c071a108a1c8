"""`filr` itself: its groups are imported only when one of their commands runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from portal.cli import main
from portal.cli.lazy import LazyGroup
from portal.flows.core import FlowType
from portal.flows.core.sample import write_sample

ROOT = Path(__file__).resolve().parents[2]

# Runs `filr ARGS` in a fresh interpreter and reports what it imported.
PROBE = """
import json, sys
from portal.cli import main
try:
    main(sys.argv[1:], prog_name="filr")
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

# What `filr flows validate` may import of the portal: the command and the validation core.
FLOWS_CORE = {
    "portal", "portal.cli", "portal.cli.french", "portal.cli.lazy", "portal.cli.flows",
    "portal.flows",
    "portal.flows.core", "portal.flows.core.codes", "portal.flows.core.encoding",
    "portal.flows.core.registry", "portal.flows.core.report", "portal.flows.core.rules",
    "portal.flows.core.sample", "portal.flows.core.spec", "portal.flows.core.types",
    "portal.flows.core.versions", "portal.flows.core.versions.v001_0",
    "portal.flows.core.validator", "portal.flows.core.xsd", "portal.flows.core.frame",
    "portal.flows.core.records", "portal.flows.core.tally", "portal.flows.core.walk",
    "portal.flows.core.spelling",
    # the one list of département codes (standard library only)
    "portal.orgs", "portal.orgs.departements",
}  # fmt: skip
FRAMEWORKS = ("flask", "werkzeug", "flask_login", "flask_wtf", "sqlalchemy", "alembic", "boto3")


def _probe(*args: str) -> tuple[object, str, set[str]]:
    """Exit code, standard output and imported modules of `filr ARGS` in a new process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], done.stdout, set(report["modules"])


def test_help_lists_every_group_without_importing_any() -> None:
    code, out, modules = _probe("--help")

    assert code == 0
    for name, entry in main.lazy.items():
        assert f"  {name} " in out
        assert not any(m == entry.target.split(":")[0] for m in modules), name
    assert {m for m in modules if m.startswith("portal")} == {
        "portal", "portal.cli", "portal.cli.french", "portal.cli.lazy"
    }  # fmt: skip
    assert not any(m.split(".")[0] in FRAMEWORKS for m in modules)


def test_flows_validate_imports_neither_flask_nor_sqlalchemy(tmp_path: Path) -> None:
    # Given a small valid flow
    path = tmp_path / "cgpem.xml"
    write_sample(path, FlowType.CGPEM, 10, "62", seed=1)

    # When a technician's script checks it
    code, out, modules = _probe("flows", "validate", str(path))

    # Then it is valid, and only the command and the validation core were imported
    assert code == 0 and "Résultat : VALIDE" in out
    assert {m for m in modules if m.startswith("portal")} <= FLOWS_CORE
    assert [m for m in modules if m.split(".")[0] in FRAMEWORKS] == []


def test_the_short_help_of_the_map_is_each_command_s_own() -> None:
    for name, entry in main.lazy.items():
        assert main.load(name).get_short_help_str(1000) == entry.short_help, name


def test_help_is_the_same_before_and_after_the_groups_are_imported() -> None:
    lazy = LazyGroup("filr", help=main.help, lazy=main.lazy)
    loaded = LazyGroup("filr", help=main.help, lazy=main.lazy)
    for name in loaded.lazy:
        loaded.get_command(click.Context(loaded), name)
    assert not lazy.commands and set(loaded.commands) == set(main.lazy)

    before = CliRunner().invoke(lazy, ["--help"], terminal_width=60).output
    after = CliRunner().invoke(loaded, ["--help"], terminal_width=60).output

    assert before == after
    assert "  jobs    Tâches planifiées (cron, minuteries systemd,...\n" in before


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["restaurer"])

    assert result.exit_code == 2 and "Commande inconnue : 'restaurer'" in result.output
