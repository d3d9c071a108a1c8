"""What a request asks of the database: equal work proved by statements, not by wall-clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa


@contextmanager
def recorded_statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL text of every statement *engine* runs inside the block, in order."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def without_session_upkeep(statements: list[str]) -> list[str]:
    """*statements* without the server-side session's: it refreshes its idle clock every 30
    seconds, whatever the request asked for (a SQLite BEGIN just before one goes with it)."""
    kept: list[str] = []
    for statement in statements:
        if "server_session" in statement:
            if kept and kept[-1].startswith("BEGIN"):
                kept.pop()
            continue
        kept.append(statement)
    return kept
