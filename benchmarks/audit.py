"""The audit trail's costs on PostgreSQL: one row in a request, verification, filtered search.

One run creates a throwaway PostgreSQL database (migrated to head, dropped at the end) and
measures:

  a. the cost of one audit row in a request's transaction: the same small transaction (one
     row updated, as an action does, then COMMIT) with and without `audit.record()` (typical
     context and details), interleaved, 2,000 of each, one writer; then 4 concurrent writers
     (the chain head is one row lock: writers queue on it). Target: the row adds <= 2 ms at p95
     (p95 with minus p95 without, one writer);
  b. `audit.verify_chain` over 1,000,000 rows forming an honest chain: every hash computed with
     the trail's own digest, rows loaded with COPY, the head set; target <= 15 s;
  c. `audit.query.search` over 10,000,000 rows bulk-generated in SQL (generate_series: twelve
     months, 101 départements, 600 organisations, 30,000 users, a dozen actions, deposits of
     about seven events each), indexes of migration 0005, ANALYZE; 200 searches as the security
     officer's workspace issues them (national and regional scopes; no filter, action family,
     user, IP, deposit timeline, outcome, periods; next pages); p50/p95/max; target p95 <= 200
     ms. --explain prints EXPLAIN (ANALYZE, BUFFERS) of one query of each kind.

    .venv/bin/python benchmarks/audit.py            # full sizes (10 to 20 minutes on 2 cores)
    .venv/bin/python benchmarks/audit.py --quick    # smoke run: 50,000 / 200,000 rows
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import audit  # noqa: E402 - after the path set-up, so the script runs from anywhere
from audit import AuditAction, AuditEvent  # noqa: E402
from audit.query import AuditFilter, Scope, search  # noqa: E402
from audit.trail import GENESIS_HASH, _row_digest  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.migrate import upgrade  # noqa: E402
from portal.orgs.departements import DEPARTEMENTS  # noqa: E402
from tests.support.services import postgres_database  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --- a. one audit row in a request ---------------------------------------------------------


def _transaction(engine: sa.Engine, with_audit: bool, i: int) -> float:
    started = time.perf_counter()
    with Session(engine) as session:
        # The action itself: one row updated (a status change, a counter).
        session.execute(sa.text("UPDATE departement SET name = name WHERE code = '62'"))
        if with_audit:
            audit.record(
                session,
                AuditAction.DEPOSIT_DOWNLOADED,
                actor=audit.Actor("a" * 32, "b" * 32),
                target=audit.Target("file", f"{i:032x}", "62"),
                context=audit.Context("203.0.113.10", "Mozilla/5.0 (X11; Linux x86_64)", "r" * 16),
                details={"deposit_id": "c" * 32, "size": 123456},
            )
        session.commit()
    return time.perf_counter() - started


def bench_record(url: str, n: int) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        for i in range(50):  # warm-up: connections, statement caches
            _transaction(engine, True, i)
            _transaction(engine, False, i)
        without: list[float] = []
        with_row: list[float] = []
        for i in range(n):
            without.append(_transaction(engine, False, i))
            with_row.append(_transaction(engine, True, i))
        concurrent: dict[bool, list[float]] = {True: [], False: []}
        lock = threading.Lock()

        def writer(flag: bool, k: int) -> None:
            local = [_transaction(engine, flag, k * 100_000 + j) for j in range(n // 4)]
            with lock:
                concurrent[flag].extend(local)

        for flag in (False, True):
            threads = [threading.Thread(target=writer, args=(flag, k)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        engine.dispose()
    added_p95 = percentile(with_row, 0.95) - percentile(without, 0.95)
    return {
        "without_p50": percentile(without, 0.5),
        "without_p95": percentile(without, 0.95),
        "with_p50": percentile(with_row, 0.5),
        "with_p95": percentile(with_row, 0.95),
        "added_p50": statistics.median(with_row) - statistics.median(without),
        "added_p95": added_p95,
        "concurrent_without_p95": percentile(concurrent[False], 0.95),
        "concurrent_with_p95": percentile(concurrent[True], 0.95),
        "ok": added_p95 <= 0.002,
    }


# --- b. verification of an honest chain ---------------------------------------------------

COLUMNS = (
    "seq", "occurred_at", "action", "outcome", "actor_id", "actor_org_id", "target_type",
    "target_id", "target_departement", "source_ip", "user_agent", "request_id", "details",
    "prev_hash", "hash",
)  # fmt: skip


def load_honest_chain(url: str, rows: int) -> float:
    """COPY *rows* chained rows (hashes computed like `audit.record`); returns the load time."""
    engine = make_engine(url)
    started = time.perf_counter()
    actions = [a.value for a in AuditAction]
    start = datetime.now(UTC) - timedelta(days=365)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("TRUNCATE audit_event, audit_checkpoint RESTART IDENTITY")
        prev = GENESIS_HASH
        with cursor.copy(f"COPY audit_event ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for seq in range(1, rows + 1):
                at = start + timedelta(microseconds=seq * 31_536_000)
                fields = {
                    "seq": seq,
                    "occurred_at": at.isoformat(timespec="microseconds"),
                    "action": actions[seq % len(actions)],
                    "outcome": "success",
                    "actor_id": f"{seq % 30000:032x}",
                    "actor_org_id": f"{seq % 600:032x}",
                    "target_type": "deposit",
                    "target_id": f"{seq // 7:032x}",
                    "target_departement": "62",
                    "source_ip": f"10.0.{seq % 256}.{seq % 250}",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                    "request_id": f"{seq:016x}",
                    "details": '{"size":123456}',
                }
                digest = _row_digest(prev, fields)
                copy.write_row([*(fields[c] if c != "occurred_at" else at for c in COLUMNS[:13]),
                                prev, digest])  # fmt: skip
                prev = digest
        cursor.execute("UPDATE audit_chain_head SET seq = %s, hash = %s WHERE id = 1", (rows, prev))
        cursor.execute("ANALYZE audit_event")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return time.perf_counter() - started


def bench_verify(url: str, rows: int) -> dict[str, Any]:
    load = load_honest_chain(url, rows)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            started = time.perf_counter()
            result = audit.verify_chain(session)
            elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
    return {
        "rows": rows,
        "load_s": load,
        "verify_s": elapsed,
        "valid": result.is_valid and result.checked == rows,
        "ok": result.is_valid and elapsed <= 15 * rows / 1_000_000,
    }


# --- c. filtered search over millions of rows ------------------------------------------------

SEARCH_INDEXES = ("action", "actor_id", "actor_org_id", "target_departement", "target_id",
                  "source_ip")  # fmt: skip

GENERATE = """
INSERT INTO audit_event (id, seq, occurred_at, action, outcome, actor_id, actor_org_id,
    target_type, target_id, target_departement, source_ip, user_agent, request_id, details,
    prev_hash, hash)
SELECT i, i,
    now() - interval '365 days' + (i::float8 / :n) * interval '365 days',
    a.action, a.outcome,
    'u' || lpad((u % 30000)::text, 31, '0'),
    'o' || lpad((u % 600)::text, 31, '0'),
    a.target_type,
    CASE a.target_type
        WHEN 'deposit' THEN md5('d' || (i / 7)::text)
        WHEN 'file' THEN md5('f' || (i / 7)::text)
        WHEN 'user' THEN 'u' || lpad(((u * 7) % 30000)::text, 31, '0')
    END,
    CASE WHEN a.target_type IS NULL THEN NULL ELSE (:codes)[1 + (u % 600) % 101] END,
    '10.' || ((u % 600) % 101)::text || '.' || ((u / 600) % 50)::text || '.' || (h % 250)::text,
    'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
    substr(md5(i::text), 1, 16),
    '{"deposit_id":"' || md5('d' || (i / 7)::text) || '","size": 123456}',
    md5(i::text) || md5((i - 1)::text),
    md5((i + 1)::text) || md5(i::text)
FROM (
    SELECT i, (hashint8(i) & 2147483647) AS h, (hashint8(i * 31) & 2147483647) % 30000 AS u
    FROM generate_series(:low, :high) AS i
) AS g
CROSS JOIN LATERAL (
    SELECT * FROM (VALUES
        (0, 'auth:login:success', 'success', NULL),
        (1, 'auth:mfa:success', 'success', NULL),
        (2, 'auth:login:failure', 'failure', NULL),
        (3, 'deposit:created', 'success', 'deposit'),
        (4, 'deposit:file-uploaded', 'success', 'file'),
        (5, 'deposit:published', 'success', 'deposit'),
        (6, 'deposit:notification-sent', 'success', 'deposit'),
        (7, 'deposit:link-issued', 'success', 'file'),
        (8, 'deposit:downloaded', 'success', 'file'),
        (9, 'access:denied', 'denied', 'deposit'),
        (10, 'deposit:expired', 'success', 'deposit'),
        (11, 'deposit:destroyed', 'success', 'deposit'),
        (12, 'auth:logout', 'success', NULL),
        (13, 'account:suspended', 'success', 'user')
    ) AS v(k, action, outcome, target_type)
    WHERE v.k = CASE
        WHEN g.h % 100 < 22 THEN 0 WHEN g.h % 100 < 44 THEN 1 WHEN g.h % 100 < 48 THEN 2
        WHEN g.h % 100 < 54 THEN 3 WHEN g.h % 100 < 60 THEN 4 WHEN g.h % 100 < 66 THEN 5
        WHEN g.h % 100 < 70 THEN 6 WHEN g.h % 100 < 79 THEN 7 WHEN g.h % 100 < 88 THEN 8
        WHEN g.h % 100 < 89 THEN 9 WHEN g.h % 100 < 92 THEN 10 WHEN g.h % 100 < 95 THEN 11
        WHEN g.h % 100 < 99 THEN 12 ELSE 13 END
) AS a
"""


def load_search_rows(url: str, rows: int) -> float:
    engine = make_engine(url)
    started = time.perf_counter()
    codes = sorted(DEPARTEMENTS)[:101]
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE audit_event, audit_checkpoint RESTART IDENTITY")
            for column in SEARCH_INDEXES:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS ix_audit_event_{column}_seq")
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_audit_event_occurred_at")
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_audit_event_outcome_seq")
        step = 1_000_000
        for low in range(1, rows + 1, step):
            with engine.begin() as conn:
                conn.execute(
                    sa.text(GENERATE).bindparams(sa.bindparam("codes", type_=sa.ARRAY(sa.String))),
                    {"n": rows, "low": low, "high": min(rows, low + step - 1), "codes": codes},
                )
            print(f"   {min(rows, low + step - 1):>10,} rows", flush=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
            for column in SEARCH_INDEXES:
                conn.exec_driver_sql(
                    f"CREATE INDEX ix_audit_event_{column}_seq ON audit_event ({column}, seq)"
                )
            conn.exec_driver_sql(
                "CREATE INDEX ix_audit_event_occurred_at ON audit_event (occurred_at)"
            )
            conn.exec_driver_sql(
                "CREATE INDEX ix_audit_event_outcome_seq ON audit_event (outcome, seq) "
                "WHERE outcome <> 'success'"
            )
            conn.exec_driver_sql("VACUUM ANALYZE audit_event")
    finally:
        engine.dispose()
    return time.perf_counter() - started


@dataclass(frozen=True)
class Query:
    kind: str
    flt: AuditFilter
    scope: Scope
    pages: int = 1


def _org(k: int) -> str:
    return "o" + str(k).rjust(31, "0")


def _user(k: int) -> str:
    return "u" + str(k).rjust(31, "0")


def workload(session: Session, rows: int, rng: random.Random) -> list[Query]:
    """Searches as the workspace issues them, with values that exist in the data."""
    codes = sorted(DEPARTEMENTS)[:101]
    now = datetime.now(UTC)
    sample = session.execute(
        sa.select(AuditEvent.source_ip, AuditEvent.target_id, AuditEvent.actor_id)
        .where(AuditEvent.seq.in_([rng.randint(1, rows) for _ in range(200)]))
        .where(AuditEvent.target_type == "deposit")
    ).all()
    queries: list[Query] = []
    for _ in range(10):
        code = rng.choice(codes)
        index = codes.index(code)
        orgs = frozenset(_org(k) for k in range(600) if k % 101 == index)
        regional = Scope(frozenset({code}), orgs)
        national = Scope(None)
        ip, deposit, actor = rng.choice(sample)
        week_end = now - timedelta(days=rng.randint(0, 300))
        month_end = now - timedelta(days=rng.randint(0, 300))
        queries += [
            Query("national, no filter", AuditFilter(), national, pages=3),
            Query("national, auth: family", AuditFilter(action="auth:"), national),
            Query("national, log-in failures, last 7 days",
                  AuditFilter(action="auth:login:failure", start=now - timedelta(days=7)),
                  national),
            Query("national, one user", AuditFilter(actor_id=actor), national),
            Query("national, one IP", AuditFilter(source_ip=ip), national),
            Query("national, deposit timeline", AuditFilter(target_type="deposit",
                  target_id=deposit), national),
            Query("regional, no filter", AuditFilter(), regional, pages=3),
            Query("regional, one week", AuditFilter(start=week_end - timedelta(days=7),
                  end=week_end), regional),
            Query("regional, refusals", AuditFilter(outcome="denied"), regional),
            Query("regional, one user", AuditFilter(actor_id=_user(rng.randrange(30000))),
                  regional),
            Query("regional, downloads of a month", AuditFilter(action="deposit:downloaded",
                  start=month_end - timedelta(days=30), end=month_end), regional),
            Query("regional, deposit: family, département filter",
                  AuditFilter(action="deposit:", departement=code), regional),
            Query("national, organisation, one month",
                  AuditFilter(actor_org_id=_org(rng.randrange(600)),
                              start=month_end - timedelta(days=30), end=month_end), national),
            Query("national, account actions", AuditFilter(action="account:"), national),
            Query("regional, one IP", AuditFilter(source_ip=ip), regional),
            Query("national, one month, failures",
                  AuditFilter(outcome="failure", start=month_end - timedelta(days=30),
                              end=month_end), national),
            Query("regional, IP and period", AuditFilter(source_ip=ip,
                  start=now - timedelta(days=90)), regional),
            Query("national, département 75", AuditFilter(departement="75"), national),
            Query("regional, auth: family", AuditFilter(action="auth:"), regional),
            Query("national, last 24 hours", AuditFilter(start=now - timedelta(days=1)),
                  national),
        ]  # fmt: skip
    return queries


def explain(session: Session, query: Query) -> str:
    stmt = (
        sa.select(AuditEvent)
        .where(*audit.query.conditions(session, query.flt, query.scope))
        .order_by(AuditEvent.seq.desc())
        .limit(50)
    )
    compiled = stmt.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    rows = session.connection().exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params
    )
    return "\n".join(str(r[0]) for r in rows)


def bench_search(url: str, rows: int, show_plans: bool, reuse: bool = False) -> dict[str, Any]:
    load = 0.0 if reuse else load_search_rows(url, rows)
    engine = make_engine(url)
    timings: dict[str, list[float]] = {}
    rng = random.Random(5)
    try:
        with Session(engine) as session:
            queries = workload(session, rows, rng)
            for query in queries[:20]:  # warm-up round: one of each kind
                search(session, query.flt, query.scope)
            all_times: list[float] = []
            for query in queries:
                before: int | None = None
                for _ in range(query.pages):
                    started = time.perf_counter()
                    page = search(session, query.flt, query.scope, limit=50, before_seq=before)
                    elapsed = time.perf_counter() - started
                    all_times.append(elapsed)
                    timings.setdefault(query.kind, []).append(elapsed)
                    if len(page) < 50:
                        break
                    before = page[-1].seq
                session.expunge_all()
            if show_plans:
                seen: set[str] = set()
                for query in queries:
                    if query.kind not in seen:
                        seen.add(query.kind)
                        try:
                            print(f"\n--- {query.kind}\n{explain(session, query)}")
                        except sa.exc.DBAPIError as e:  # a plan is a bonus: keep the figures
                            print(f"\n--- {query.kind}: no plan ({e.orig})")
                            session.rollback()
    finally:
        engine.dispose()
    p95 = percentile(all_times, 0.95)
    return {
        "rows": rows,
        "load_s": load,
        "searches": len(all_times),
        "p50": percentile(all_times, 0.5),
        "p95": p95,
        "max": max(all_times),
        "by_kind_p95": {k: percentile(v, 0.95) for k, v in timings.items()},
        "ok": p95 <= 0.2,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--verify-rows", type=int, default=None)
    parser.add_argument("--search-rows", type=int, default=None)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--only", choices=["a", "b", "c"], action="append", help="run only these parts"
    )
    parser.add_argument(
        "--database-url", help="use this (kept) database instead of a throwaway one"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="c: keep the rows already loaded (with --database-url)"
    )
    args = parser.parse_args()
    verify_rows = args.verify_rows or (50_000 if args.quick else 1_000_000)
    search_rows = args.search_rows or (200_000 if args.quick else 10_000_000)
    record_n = 300 if args.quick else 2000
    results: dict[str, Any] = {}
    parts = set(args.only or ["a", "b", "c"])
    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(postgres_database("filr_bench_audit"))
        upgrade(url)
        if "a" in parts:
            print("a. one audit row in a request's transaction (PostgreSQL)", flush=True)
            a = results["record"] = bench_record(url, record_n)
            print(f"   without: p50 {ms(a['without_p50'])}, p95 {ms(a['without_p95'])}")
            print(f"   with:    p50 {ms(a['with_p50'])}, p95 {ms(a['with_p95'])}")
            print(f"   added:   p50 {ms(a['added_p50'])}, p95 {ms(a['added_p95'])} "
                  f"(target <= 2 ms) {'OK' if a['ok'] else 'MISSED'}")  # fmt: skip
            print(f"   4 concurrent writers, p95: without {ms(a['concurrent_without_p95'])}, "
                  f"with {ms(a['concurrent_with_p95'])}")  # fmt: skip
        if "b" in parts:
            print(f"b. verify_chain over {verify_rows:,} chained rows", flush=True)
            b = results["verify"] = bench_verify(url, verify_rows)
            print(f"   load (hashing + COPY) {b['load_s']:.1f} s; verification "
                  f"{b['verify_s']:.2f} s (target <= 15 s per million) "
                  f"{'OK' if b['ok'] else 'MISSED'}")  # fmt: skip
        if "c" in parts:
            print(f"c. filtered search over {search_rows:,} rows", flush=True)
            c = results["search"] = bench_search(url, search_rows, args.explain, args.reuse)
            print(f"   load (generate_series + indexes) {c['load_s']:.0f} s")
            verdict = "OK" if c["ok"] else "MISSED"
            print(f"   {c['searches']} searches: p50 {ms(c['p50'])}, p95 {ms(c['p95'])}, "
                  f"max {ms(c['max'])} (target p95 <= 200 ms) {verdict}")  # fmt: skip
            for kind, value in sorted(c["by_kind_p95"].items(), key=lambda kv: -kv[1]):
                print(f"     {ms(value):>10}  {kind}")
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
