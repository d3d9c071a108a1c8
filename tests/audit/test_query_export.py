"""Scoped search of the trail and its streamed exports (CSV, JSON Lines, JSON array)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, AuditFilter, Outcome, Scope
from portal.db import make_engine

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def _seed(engine: sa.Engine) -> None:
    rows = [
        # (action, outcome, actor, org, departement, ip)
        (AuditAction.AUTH_LOGIN_FAILURE, Outcome.FAILURE, None, None, None, "198.51.100.7"),
        (AuditAction.AUTH_LOGIN_SUCCESS, Outcome.SUCCESS, "u62", "org62", None, "203.0.113.10"),
        (AuditAction.DEPOSIT_CREATED, Outcome.SUCCESS, "u62", "org62", "62", "203.0.113.10"),
        (AuditAction.DEPOSIT_DOWNLOADED, Outcome.SUCCESS, "uft", "orgft", "62", "203.0.113.11"),
        (AuditAction.DEPOSIT_CREATED, Outcome.SUCCESS, "u59", "org59", "59", "203.0.113.12"),
        (AuditAction.ACCESS_DENIED, Outcome.DENIED, "u62", "org62", "59", "203.0.113.10"),
        (AuditAction.JOB_RUN, Outcome.SUCCESS, None, None, None, None),
    ]
    with Session(engine) as session:
        for i, (action, outcome, actor, org, dep, ip) in enumerate(rows):
            audit.record(
                session,
                action,
                actor=audit.Actor(actor, org),
                target=audit.Target("deposit", f"d{i}", dep) if dep else None,
                context=audit.Context(source_ip=ip),
                outcome=outcome,
                at=T0 + timedelta(minutes=i),
            )
        session.commit()


def _seqs(events: list[audit.AuditEvent]) -> list[int]:
    return [e.seq for e in events]


def test_officer_of_62_sees_rows_of_62_and_of_own_organisation_but_nothing_of_59(
    engine: sa.Engine,
) -> None:
    # Given a trail with events of 62 and 59
    _seed(engine)
    scope = Scope(departements=frozenset({"62"}), organisation_ids=frozenset({"org62"}))
    with Session(engine) as session:
        # When the officer of 62 searches without criteria
        events = audit.search(session, AuditFilter(), scope)
        # Then they see rows about 62 and rows whose actor is of their organisation, newest first
        assert _seqs(events) == [6, 4, 3, 2]
        assert all(e.target_departement != "59" or e.actor_org_id == "org62" for e in events)
        # And filtering on 59 yields only their own member's refused attempt
        only59 = audit.search(session, AuditFilter(departement="59"), scope)
        assert _seqs(only59) == [6]


def test_national_scope_sees_every_row_and_empty_scope_sees_none(engine: sa.Engine) -> None:
    _seed(engine)
    with Session(engine) as session:
        assert len(audit.search(session, AuditFilter(), Scope(None))) == 7
        assert audit.search(session, AuditFilter(), Scope(frozenset())) == []


def test_filters_combine_and_action_prefix_matches_a_family(engine: sa.Engine) -> None:
    _seed(engine)
    national = Scope(None)
    with Session(engine) as session:

        def seqs(flt: AuditFilter) -> list[int]:
            return _seqs(audit.search(session, flt, national))

        assert seqs(AuditFilter(action="auth:")) == [2, 1]
        assert seqs(AuditFilter(action="auth")) == []  # no prefix without the colon
        assert seqs(AuditFilter(action="deposit:created")) == [5, 3]
        assert seqs(AuditFilter(outcome="denied")) == [6]
        assert seqs(AuditFilter(source_ip="203.0.113.10", actor_id="u62")) == [6, 3, 2]
        assert seqs(AuditFilter(actor_org_id="orgft", departement="62")) == [4]
        assert seqs(AuditFilter(target_type="deposit", target_id="d4")) == [5]
        window = AuditFilter(start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=4))
        assert seqs(window) == [4, 3]  # [start, end)
        # LIKE wildcards in the criterion are data, not patterns
        assert seqs(AuditFilter(action="%:")) == []


def test_search_pages_by_keyset_and_iter_matching_streams_oldest_first(
    engine: sa.Engine,
) -> None:
    _seed(engine)
    national = Scope(None)
    with Session(engine) as session:
        first = audit.search(session, AuditFilter(), national, limit=3)
        second = audit.search(session, AuditFilter(), national, limit=3, before_seq=first[-1].seq)
        assert _seqs(first) == [7, 6, 5] and _seqs(second) == [4, 3, 2]
        streamed = list(audit.iter_matching(session, AuditFilter(), national, batch=2))
        assert _seqs(streamed) == [1, 2, 3, 4, 5, 6, 7]
        scoped = Scope(frozenset({"59"}))
        assert _seqs(list(audit.iter_matching(session, AuditFilter(), scoped, batch=1))) == [5, 6]


NASTY = '=HYPERLINK("http://evil")\r\n\x1b[31m,"quoted";'


def _nasty_events(engine: sa.Engine) -> list[audit.AuditEvent]:
    with Session(engine) as session:
        audit.record(
            session,
            AuditAction.AUTH_LOGIN_FAILURE,
            outcome=Outcome.FAILURE,
            context=audit.Context(user_agent=NASTY, source_ip="-2+3"),
            details={"note": NASTY, "n": 3},
            at=T0,
        )
        audit.record(session, AuditAction.AUTH_LOGIN_SUCCESS, at=T0 + timedelta(seconds=1))
        session.commit()
        events = list(audit.iter_matching(session, AuditFilter(), Scope(None)))
    return events


def test_csv_export_is_spreadsheet_safe_and_keeps_values_literal(engine: sa.Engine) -> None:
    # Given an event whose user agent is a spreadsheet formula with CR/LF and quotes
    events = _nasty_events(engine)
    # When it is exported to CSV
    text = "".join(audit.iter_csv(events))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    # Then the header comes first, there is one CSV record per event
    assert tuple(rows[0]) == audit.CSV_COLUMNS
    assert len(rows) == 3
    row = dict(zip(audit.CSV_COLUMNS, rows[1], strict=True))
    # And formula-looking cells are neutralised by a leading quote, the rest kept literally
    assert row["user_agent"] == "'" + NASTY
    assert row["source_ip"] == "'-2+3"
    assert json.loads(row["details"]) == {"n": 3, "note": NASTY}
    assert row["action"] == "auth:login:failure" and row["seq"] == "1"


BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_csv_export_writes_bidi_controls_as_visible_escapes_in_every_cell(
    engine: sa.Engine,
) -> None:
    # Given an event whose user agent, IP and details carry every bidi control (U+202E first:
    # a spreadsheet would show the rest of the row reversed)
    with Session(engine) as session:
        audit.record(
            session,
            AuditAction.AUTH_LOGIN_FAILURE,
            outcome=Outcome.FAILURE,
            context=audit.Context(user_agent="\u202e=1+1 " + BIDI, source_ip="\u202e1.2.3.4"),
            details={"note": "fin" + BIDI},
            at=T0,
        )
        session.commit()
        events = list(audit.iter_matching(session, AuditFilter(), Scope(None)))
    # When it is exported to CSV
    text = "".join(audit.iter_csv(events))
    # Then no cell carries a raw bidi control: each is written as its visible escape
    assert not set(text) & set(BIDI)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    row = dict(zip(audit.CSV_COLUMNS, rows[1], strict=True))
    escaped = "".join(f"\\u{ord(c):04x}" for c in BIDI)
    assert row["user_agent"] == "\\u202e=1+1 " + escaped
    assert row["source_ip"] == "\\u202e1.2.3.4"
    # And the details cell stays JSON that means the same value (the escapes are JSON's own)
    assert f'"fin{escaped}"' in row["details"]
    assert json.loads(row["details"]) == {"note": "fin" + BIDI}


def test_jsonl_and_json_array_exports_parse_back_to_the_same_events(engine: sa.Engine) -> None:
    events = _nasty_events(engine)
    lines = list(audit.iter_jsonl(events))
    assert len(lines) == 2 and all(line.endswith("\n") and "\n" not in line[:-1] for line in lines)
    parsed = [json.loads(line) for line in lines]
    assert parsed[0]["user_agent"] == NASTY and parsed[0]["details"] == {"n": 3, "note": NASTY}
    assert parsed[0]["occurred_at"] == "2026-03-01T08:00:00.000000+00:00"
    assert parsed == [audit.event_as_dict(e) for e in events]
    assert json.loads("".join(audit.iter_json_array(events))) == parsed
    assert json.loads("".join(audit.iter_json_array([]))) == []


def test_a_period_far_from_both_ends_is_searched_through_a_seq_range(engine: sa.Engine) -> None:
    # Given rows two hours apart (seq follows time, as record() guarantees)
    with Session(engine) as session:
        for i in range(10):
            audit.record(session, AuditAction.AUTH_LOGIN_SUCCESS, at=T0 + timedelta(hours=2 * i))
        session.commit()
    window = AuditFilter(start=T0 + timedelta(hours=4), end=T0 + timedelta(hours=10))
    with Session(engine) as session:
        # Then the period becomes a seq range with an hour of margin on each side
        bounds = audit.query.seq_bounds(session, window)
        assert len(bounds) == 2
        # And the rows of the period, exactly, are found, both ways
        assert _seqs(audit.search(session, window, Scope(None))) == [5, 4, 3]
        assert _seqs(list(audit.iter_matching(session, window, Scope(None), batch=2))) == [3, 4, 5]


def test_a_period_at_the_ends_of_the_calendar_is_searched_without_overflow(
    engine: sa.Engine,
) -> None:
    _seed(engine)
    # Given a period from the first to the last moment a datetime can hold
    flt = AuditFilter(start=datetime.min.replace(tzinfo=UTC), end=datetime.max.replace(tzinfo=UTC))
    # When it is searched and streamed, Then every row comes back (no OverflowError)
    with Session(engine) as session:
        assert len(audit.search(session, flt, Scope(departements=None), limit=100)) == 7
        assert len(list(audit.iter_matching(session, flt, Scope(departements=None)))) == 7
