"""Views parse, call one service and render: no view writes the audit trail or ends a transaction.

The verbs that change state, record them and commit live in each feature's `services.py`
(docs/STYLE: "Views that do the work"); this walks the source of every module that declares a
blueprint, and of `portal/web.py`, and fails on a call to `audit.record`, `….commit()` or
`….rollback()`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import portal

PORTAL = Path(portal.__file__).parent
FORBIDDEN_METHODS = {"commit", "rollback"}


def view_modules() -> list[Path]:
    """Every module that declares a Flask blueprint, and the request-side helpers."""
    found = [
        path
        for path in sorted(PORTAL.rglob("*.py"))
        if any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Blueprint"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    return [*found, PORTAL / "web.py"]


def _is_error_handler(function: ast.FunctionDef) -> bool:
    # An error handler discards the failed request's unfinished work before it answers: that
    # is the request's plumbing (like the teardown), not a view deciding a transaction.
    return any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Attribute)
        and d.func.attr == "errorhandler"
        for d in function.decorator_list
    )


def forbidden_calls(source: str) -> list[str]:
    """`line: call` for each audit row written or transaction ended in *source*."""
    tree = ast.parse(source)
    exempt: set[int] = set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and _is_error_handler(function):
            exempt.update(id(node) for node in ast.walk(function))
    found = []
    for node in ast.walk(tree):
        if id(node) in exempt or not isinstance(node, ast.Call):
            continue
        func = node.func
        if not isinstance(func, ast.Attribute):
            continue
        is_record = func.attr == "record" and ast.unparse(func.value) == "audit"
        if is_record or func.attr in FORBIDDEN_METHODS:
            found.append(f"{node.lineno}: {ast.unparse(func)}()")
    return sorted(found, key=lambda s: int(s.split(":")[0]))


def test_the_walk_finds_every_blueprint_module_and_web_helpers() -> None:
    names = {str(p.relative_to(PORTAL)) for p in view_modules()}
    assert {
        "accounts/views.py",
        "auth/views.py",
        "deposits/views.py",
        "flows/views.py",
        "securite/views.py",
        "api/views.py",
        "api/token_views.py",
        "web.py",
    } <= names


def test_no_view_records_audit_rows_commits_or_rolls_back() -> None:
    # Given every views module of the portal
    offences = {
        str(path.relative_to(PORTAL)): calls
        for path in view_modules()
        if (calls := forbidden_calls(path.read_text(encoding="utf-8")))
    }
    # Then none writes the trail or ends a transaction: its service does
    assert offences == {}


def test_the_walk_catches_what_views_used_to_do() -> None:
    # Given a view written the old way (the trail, a commit and a rollback in the view)
    source = """
@bp.route("/deconnexion", methods=["POST"])
def logout():
    audit.record(db.session, AuditAction.AUTH_LOGOUT, actor=actor_of(user))
    db.session.commit()
    try:
        deposits.take_in_charge(db.session, user, deposit, ctx)
    except deposits.DepositError:
        session.rollback()

@bp.errorhandler(ApiProblem)
def _api_problem(e):
    db.session.rollback()
    return e.response()
"""
    # Then each call is named, but not an error handler's rollback
    assert forbidden_calls(source) == [
        "4: audit.record()",
        "5: db.session.commit()",
        "9: session.rollback()",
    ]
