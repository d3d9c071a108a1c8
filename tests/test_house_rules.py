"""Guards of the layout: the import contracts bite, and every suppression says why."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("portal", "storage", "audit")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages and pyproject.toml of *tree* (its own copy, not ours)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the Python sources and of pyproject.toml, to plant imports in."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=lambda folder, names: (
                [n for n in names if not n.endswith(".py") and not Path(folder, n).is_dir()]
                + ["__pycache__"]
            ),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_contracts_hold_on_the_tree(tree: Path) -> None:
    done = _lint_imports(tree)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "chain"),
    [
        ("storage/planted.py", "import flask\n", "storage.planted -> flask"),
        ("audit/planted.py", "from portal.db import db\n", "audit.planted -> portal.db"),
        ("portal/flows/core/planted.py", "import sqlalchemy\n", None),
        (
            "portal/flows/core/validator.py",
            "from portal.flows import services\n",
            "portal.flows.core.validator -> portal.flows.services",
        ),
        (
            "portal/flows/core/versions/v001_0.py",
            "import flask\n",
            "portal.flows.core.versions.v001_0 -> flask",
        ),
        ("portal/cli/lazy.py", "from portal.app import create_app\n", "portal.app"),
    ],
)
def test_an_import_of_the_framework_where_none_may_be_breaks_a_contract(
    tree: Path, module: str, planted: str, chain: str | None
) -> None:
    # Given an import of Flask or of the portal planted where the layout forbids it
    path = tree / module
    path.write_text((path.read_text() if path.exists() else "") + planted)
    if module == "portal/flows/core/planted.py":  # a core module that imports the new one
        codes = tree / "portal/flows/core/codes.py"
        codes.write_text(codes.read_text() + "from portal.flows.core import planted\n")
        chain = "portal.flows.core.planted -> sqlalchemy"

    # When the import rules are checked, Then they fail and name the import
    done = _lint_imports(tree)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout and chain in done.stdout, done.stdout


# A suppression (a `noqa` or `type: ignore` comment), then its reason after " - " or "# ".
SUPPRESSION = re.compile(
    r"#\s*(?:type:\s*ignore(?:\[[^\]]*\])?|noqa(?::\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?)"
    r"(?P<rest>.*)$"
)
REASON = re.compile(r"^\s*(?:#|-|—)\s*\w")
ANOTHER = re.compile(r"^\s*#\s*(?:type:|noqa)")


def unexplained_suppressions(roots: list[Path]) -> list[str]:
    """Every `# type: ignore` and `# noqa` under *roots* not followed by a reason."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for match in SUPPRESSION.finditer(line):
                    rest = match.group("rest")
                    if not REASON.match(rest) and not ANOTHER.match(rest):
                        found.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    return found


def test_every_suppression_in_portal_storage_and_audit_says_why() -> None:
    assert unexplained_suppressions([ROOT / p for p in PACKAGES]) == []


def test_a_suppression_without_a_reason_is_found(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "x = f()  # type: ignore[misc]\n"
        "y = g()  # type: ignore[misc] # g has no hints\n"
        "assert x  # noqa: S101\n"
        "assert y  # noqa: S101 - checked above\n"
        "import z  # noqa: E402,F401 - registers routes\n"
    )

    assert unexplained_suppressions([tmp_path / "pkg"]) == [
        "pkg/m.py:1: x = f()  # type: ignore[misc]",
        "pkg/m.py:3: assert x  # noqa: S101",
    ]
