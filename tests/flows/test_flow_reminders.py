"""Calendar reminders of the flows, on fixed dates, through the real SMTP server."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from email.header import decode_header, make_header
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask

import audit
from portal.container import services
from portal.db import db
from portal.flows.core import FlowType
from portal.flows.models import FlowDeposit, FlowReminder
from portal.flows.reminders import FlowReminderReport, send_flow_reminders
from tests.conftest import audit_rows
from tests.deposits.test_reminders import cli_env  # noqa: F401 - fixture
from tests.factories import FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file
from tests.support.services import SmtpSink, body_of

PARIS = ZoneInfo("Europe/Paris")
NOVEMBER = date(2026, 11, 1)
# Tuesday 17 November 2026: 3 working days before the CGPEM deadline (Friday 20, 17:00), the
# day after the PECGM was due (Monday 16), four days after the PECDH of the week of the 9th.
TUESDAY = datetime(2026, 11, 17, 9, 0, tzinfo=PARIS)


def _run(app: Flask, now: datetime, dry_run: bool = False) -> FlowReminderReport:
    with app.app_context():
        return send_flow_reminders(db.session, services(), now, audit.NO_CONTEXT, dry_run)


def _subjects(smtp: SmtpSink, address: str) -> list[str]:
    return sorted(str(make_header(decode_header(m["Subject"]))) for m in smtp.to(address))


def test_reminders_before_and_after_deadlines_go_to_the_right_side_once(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    # Given 62 deposited its CGPEM and France Travail its PECGM for 62, nothing else
    deposit_file(client_for(fw.tech62), "62", sample(FlowType.CGPEM, 2, date_reference=NOVEMBER)[0])
    pecgm = sample(FlowType.PECGM, 2, date_reference=NOVEMBER)[0]
    assert deposit_file(client_for(fw.tech_ft), "62", pecgm).status_code == 201
    smtp.clear()
    # When the job runs on Tuesday 17, first as a dry run
    dry = _run(app, TUESDAY, dry_run=True)
    assert smtp.messages == []
    with app.app_context():
        assert db.session.query(FlowReminder).count() == 0
    report = _run(app, TUESDAY)
    # Then it reminds 59 of its CGPEM, and both sides of the flows whose date passed
    expected = sorted(
        [
            "59:CGPEM:2026-11-01:before_deadline",
            "59:PECGM:2026-11-01:deadline_passed",
            "59:PECDH:2026-11-09:deadline_passed",
            "62:PECDH:2026-11-09:deadline_passed",
        ]
    )
    assert sorted(report.keys) == sorted(dry.keys) == expected
    assert _subjects(smtp, "tech59@cd59.example.org") == [
        "Fil'R : flux CGPEM de novembre 2026 à déposer avant le 20/11/2026",
        "Fil'R : échéance dépassée pour le flux PECDH (semaine du 09/11/2026)",
        "Fil'R : échéance dépassée pour le flux PECGM (novembre 2026)",
    ]
    assert _subjects(smtp, "tech62@cd62.example.org") == [
        "Fil'R : échéance dépassée pour le flux PECDH (semaine du 09/11/2026)"
    ]
    # France Travail hears of the passed deadlines only (not of the département's CGPEM)
    assert len(smtp.to("tech@ft.example.org")) == 3
    assert smtp.to("tech@national.example.org") == [] and smtp.to("agent62@cd62.example.org") == []
    before = body_of(smtp.to("tech59@cd59.example.org")[0])
    assert "20/11/2026 à 17:00" in before
    assert "https://filr.test/flux/suivi?mois=2026-11" in before
    assert len(audit_rows(app, "flow:reminder-sent")) == 4
    # And a second run, or a run the next day, sends nothing again
    smtp.clear()
    again = _run(app, TUESDAY)
    assert (again.reminders, again.already_sent, smtp.messages) == (0, 4, [])
    # Once the CGPEM deadline passed, both sides hear of 59's missing CGPEM
    friday_evening = datetime(2026, 11, 20, 18, 0, tzinfo=PARIS)
    late = _run(app, friday_evening)
    assert "59:CGPEM:2026-11-01:deadline_passed" in late.keys
    assert "62:CGPEM:2026-11-01:deadline_passed" not in late.keys
    assert any("CGPEM" in s for s in _subjects(smtp, "tech@ft.example.org"))
    assert any("CGPEM" in s for s in _subjects(smtp, "tech59@cd59.example.org"))


def test_early_in_the_month_only_last_weeks_pecdh_is_due(
    app: Flask, fw: FlowWorld, smtp: SmtpSink
) -> None:
    # Monday 9 November: the CGPEM reminder starts on the 17th, the PECGM is due on the 16th;
    # the PECDH of the week of the 2nd was due on Friday 6; that of 26 October too long ago.
    report = _run(app, datetime(2026, 11, 9, 9, 0, tzinfo=PARIS))
    assert sorted(report.keys) == [
        "59:PECDH:2026-11-02:deadline_passed",
        "62:PECDH:2026-11-02:deadline_passed",
    ]
    # both sides: the département's technicians and France Travail's (once per département)
    assert len(smtp.to("tech@ft.example.org")) == 2 and len(smtp.messages) == 5


@pytest.mark.usefixtures("cli_env")
def test_the_command_is_idempotent(app: Flask, fw: FlowWorld, smtp: SmtpSink) -> None:
    from portal.cli import main

    def filr(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert filr("jobs", "flow-reminders", "--dry-run").startswith("[essai] Rappels de flux")
    assert smtp.messages == []
    first = filr("jobs", "flow-reminders")
    second = filr("jobs", "flow-reminders")
    assert "Rappels de flux : 0 rappel(s), 0 e-mails envoyés" in second
    sent = int(first.split("rappel(s), ")[1].split(" ")[0])
    assert len(smtp.messages) == sent
    jobs = [r.details for r in audit_rows(app, "job:run")]
    assert sum('"job":"flow-reminders"' in d for d in jobs) == 2


def test_sealed_reports_are_dropped_after_90_days(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    tech62 = client_for(fw.tech62)
    bad, _ = sample(FlowType.CGPEM, 2, errors=["fin.nb_dossier"], date_reference=NOVEMBER)
    refused = deposit_file(tech62, "62", bad).get_json()
    with app.app_context():
        flow = db.session.get(FlowDeposit, refused["id"])
        assert flow is not None and flow.report_sealed is not None
        flow.created_at = flow.created_at - timedelta(days=91)
        db.session.commit()
    now = datetime.now(PARIS)
    assert _run(app, now, dry_run=True).reports_forgotten == 1
    assert _run(app, now).reports_forgotten == 1
    with app.app_context():
        flow = db.session.get(FlowDeposit, refused["id"])
        assert flow is not None and flow.report_sealed is None and flow.error_count == 1
    page = tech62.get(refused["url"])
    assert page.status_code == 200 and "fin.nb_dossier" not in page.get_data(as_text=True)
    assert tech62.get(refused["url"] + "/rapport.csv").status_code == 404
