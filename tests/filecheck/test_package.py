"""The package stays framework-free."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import portal.filecheck as filecheck

# --- framework-free --------------------------------------------------------------------


def test_filecheck_imports_only_the_standard_library_pypdf_and_itself() -> None:
    modules = sorted(Path(filecheck.__file__).parent.glob("*.py"))
    imported: set[str] = set()
    for module in modules:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported |= {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
    outside = {
        name
        for name in imported
        # pypdf parses PDFs for active content (pdf_content): pure Python, no framework.
        if name.split(".")[0] not in set(sys.stdlib_module_names) | {"__future__", "pypdf"}
        and name != "portal.filecheck"
        and not name.startswith("portal.filecheck.")
    }

    assert len(modules) > 1 and "portal.filecheck.verdict" in imported
    assert outside == set()
